"""The WGAN-GP baseline on the one trainer: cost none, k_f critic steps, gradient penalty."""

import pytest
import torch
from conftest import tiny_experiment

from notpipe import toy
from notpipe.config import ConfigError, validate_config
from notpipe.core.costs import make_cost

WGAN = dict(cost={"name": "none"}, k_t=1, k_f=5, gradient_penalty=10.0,
            optim={"lr_t": 1e-4, "lr_f": 1e-4, "betas": [0.5, 0.9], "impl": "torch"})


def _f_steps(opt) -> int:
    state = next(iter(opt.state_dict()["state"].values()))
    return int(state["step"])


def test_k_f_critic_steps_per_step_and_k_t_map_steps():
    tr = toy.build(tiny_experiment(**WGAN)).trainer
    tr.run(2, progress=False)
    assert tr.step == 2
    assert _f_steps(tr.opt_f) == 2 * 5 and _f_steps(tr.opt_t) == 2 * 1
    assert tr.history[-1]["loss_f"] == pytest.approx(tr.history[-1]["loss_f"])  # a finite mean over k_f


def test_gradient_penalty_is_wgan_gp_s_term():
    tr = toy.build(tiny_experiment(**WGAN)).trainer
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0]]))  # |grad f| = 5 everywhere
    tr.f = lambda v: lin(v).squeeze(1)
    x, y = torch.randn(16, 2), torch.randn(16, 2)
    from notpipe.core.critic_terms import gradient_penalty

    assert float(gradient_penalty(tr.f, x, y, tr.generator).detach()) == pytest.approx((5 - 1) ** 2)


def test_the_penalty_changes_the_critic_and_no_cost_leaves_t_only_f():
    a = toy.build(tiny_experiment(**WGAN)).trainer
    b = toy.build(tiny_experiment(**{**WGAN, "gradient_penalty": 0.0})).trainer
    a.run(1, progress=False)
    b.run(1, progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(a.f.parameters(), b.f.parameters()))
    cost = make_cost({"name": "none"})
    x, ys = torch.randn(4, 2), torch.randn(4, 1, 2)
    assert float(cost.batch_mean(x, ys)) == 0.0
    assert torch.allclose(cost.ground(x, ys[:, 0]), 0.5 * (x - ys[:, 0]).pow(2).sum(1))  # evaluation cost


def test_wgan_resume_equals_uninterrupted(tmp_path):
    exp = tiny_experiment(**WGAN, steps=10, log_every=5, checkpoint_every=5)
    full = toy.train(exp, tmp_path / "a.pt", tmp_path / "a.csv", tmp_path / "ca", progress=False)
    half = toy.train({**exp, "steps": 5}, tmp_path / "b.pt", tmp_path / "b.csv", tmp_path / "cb", progress=False)
    assert half.trainer.step == 5
    rest = toy.train(exp, tmp_path / "b.pt", tmp_path / "b.csv", tmp_path / "cb", progress=False)
    for p, q in zip(full.trainer.T.parameters(), rest.trainer.T.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(full.trainer.f.parameters(), rest.trainer.f.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("over,key", [({"k_f": 0}, "toy.experiments.w.k_f"),
                                      ({"cost": {"name": "none", "gamma": 0.5}}, "toy.experiments.w.cost.gamma"),
                                      ({"gradient_penalty": -1}, "toy.experiments.w.gradient_penalty"),
                                      ({"cost": {"name": "strong"}, "k_f": 5}, "toy.experiments.w.k_f")])
def test_config_checks_of_the_baseline(over, key):
    bad = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "none"}, **over}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config({"toy": {"experiments": {"w": bad}}})
