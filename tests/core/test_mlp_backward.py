"""The hand-written T- and f-steps compute autograd's losses and gradients."""

import pytest
import torch
from conftest import tiny_experiment

from notpipe import toy
from notpipe.core.costs import make_cost
from notpipe.core.mlp_backward import ManualSteps, unsupported
from notpipe.core.trainer import NOTTrainer
from notpipe.toy.models import VectorMap, VectorPotential

F64 = torch.float64


class GradRecorder:
    """Optimiser stand-in: keeps a copy of every gradient it is stepped with (weights unchanged)."""

    def __init__(self, params):
        self.params = list(params)
        self.param_groups = [{"lr": 0.0, "params": self.params}]
        self.grads = []

    def zero_grad(self, set_to_none=False):
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()

    def step(self):
        self.grads.append([p.grad.clone() for p in self.params])


def _trainer(cost_spec, dim, hidden, backward, z_dim=3, seed=0):
    """A float64 trainer whose samplers and noise keep every draw in ``trainer.draws``."""
    torch.manual_seed(seed)
    cost = make_cost(cost_spec)
    zd = z_dim if cost.stochastic else 0
    T = VectorMap(dim, hidden, zd).to(F64)
    f = VectorPotential(dim, hidden).to(F64)
    opt_t, opt_f = GradRecorder(T.parameters()), GradRecorder(f.parameters())
    shift = torch.arange(dim, dtype=F64)
    draws = {"p": [], "q": [], "z": []}

    def sample_p(n, g):
        draws["p"].append(torch.randn(n, dim, generator=g, dtype=F64))
        return draws["p"][-1]

    def sample_q(n, g):
        draws["q"].append(2 * torch.randn(n, dim, generator=g, dtype=F64) + shift)
        return draws["q"][-1]

    def noise(n, g, device):
        draws["z"].append(0.3 * torch.randn(n, zd, generator=g, dtype=F64))
        return draws["z"][-1]

    tr = NOTTrainer(T, f, cost, sample_p, sample_q, opt_t, opt_f, noise=noise if zd else None,
                    k_t=3, batch=16, generator=torch.Generator().manual_seed(seed), log_every=1,
                    backward=backward)
    tr.draws = draws
    return tr


def _reference_grads(tr):
    """Gradients of one f-step by autograd on NOT's losses, in float64, from the trainer's draws."""
    T, f, cost, b, z = tr.T, tr.f, tr.cost, tr.batch, tr.cost.z_size
    gamma = tr.gamma(0)
    zs = iter(tr.draws["z"])
    t_grads = []
    for x in tr.draws["p"][0].split(b):
        ys = (T(x.repeat_interleave(z, 0), next(zs)).view(b, z, -1) if tr.noise
              else T(x).unsqueeze(1))
        loss = cost.batch_mean(x, ys, gamma) - f(ys.flatten(0, 1)).mean()
        t_grads.append(torch.autograd.grad(loss, list(T.parameters())))
    x, y = tr.draws["p"][1], tr.draws["q"][0]
    tx = T(x, next(zs)) if tr.noise else T(x)
    loss = f(tx).mean() - f(y).mean()
    return t_grads, [torch.autograd.grad(loss, list(f.parameters()))]


CASES = [
    ({"name": "strong"}, 2, [32, 32]),
    ({"name": "strong", "scaling": "mean"}, 5, [16, 16, 16]),
    ({"name": "weak", "gamma": 0.5, "z_size": 4}, 2, [32, 32]),
    ({"name": "weak", "gamma": 1.0, "z_size": 3, "scaling": "mean"}, 4, [16]),
    ({"name": "weak", "gamma": -0.5, "z_size": 2}, 3, [8, 8]),
    ({"name": "kernel", "gamma": 0.5, "z_size": 4}, 2, [32, 32]),
    ({"name": "kernel", "gamma": 1.0, "z_size": 3, "scaling": "mean"}, 4, [16]),
    ({"name": "none"}, 2, [32, 32]),
]


@pytest.mark.parametrize("cost,dim,hidden", CASES, ids=lambda c: str(c))
def test_manual_steps_equal_autograd_in_float64(cost, dim, hidden):
    """Hand-written gradients equal autograd's on the same draws to 1e-11 in float64.

    The trainer's autograd path casts its losses to float32 (for bf16 autocast), so it
    agrees only to float32 rounding; the reference is autograd on the losses in float64.
    """
    auto, manual = (_trainer(cost, dim, hidden, b) for b in ("autograd", "manual"))
    assert auto._manual is None and isinstance(manual._manual, ManualSteps)
    for tr in (auto, manual):
        tr.train_step()
    ref_t, ref_f = _reference_grads(manual)
    for tr, tol in ((manual, 1e-11), (auto, 1e-5)):
        for got, ref in ((tr.opt_t.grads, ref_t), (tr.opt_f.grads, ref_f)):
            assert len(got) == len(ref)
            for step_got, step_ref in zip(got, ref):
                assert max(float(r.abs().max()) for r in step_ref) > 0
                for g, r in zip(step_got, step_ref):
                    torch.testing.assert_close(g, r, rtol=tol, atol=tol * 1e-2)
    # the logged T loss, f loss and cost terms, and the generator: same draws in the same order
    torch.testing.assert_close(manual._buf[:3].double(), auto._buf[:3].double(), rtol=1e-6, atol=1e-7)
    assert torch.equal(manual.generator.get_state(), auto.generator.get_state())
    for key in ("p", "q", "z"):
        assert all(torch.equal(a, m) for a, m in zip(auto.draws[key], manual.draws[key]))


def test_manual_training_follows_autograd_in_float32():
    """Same experiment, 30 f-steps with FlatAdam: the weights agree to float32 rounding."""
    exp = tiny_experiment(cost={"name": "weak", "gamma": 0.5, "z_size": 3})
    runs = {}
    for backward in ("autograd", "manual"):
        tr = toy.build(dict(exp, optim=dict(exp["optim"], backward=backward))).trainer
        assert (tr._manual is not None) == (backward == "manual")
        tr.run(30, progress=False)
        runs[backward] = tr
    for a, m in zip(runs["autograd"].T.parameters(), runs["manual"].T.parameters()):
        torch.testing.assert_close(m, a, rtol=1e-3, atol=1e-4)
    for a, m in zip(runs["autograd"].f.parameters(), runs["manual"].f.parameters()):
        torch.testing.assert_close(m, a, rtol=1e-3, atol=1e-4)


def test_auto_takes_manual_steps_only_where_they_apply():
    strong = toy.build(tiny_experiment()).trainer
    assert strong._manual is not None  # the toys' default
    kernel = toy.build(tiny_experiment(cost={"name": "kernel", "gamma": 0.5, "z_size": 3})).trainer
    assert kernel._manual is not None
    wgan = toy.build(tiny_experiment(cost={"name": "none"}, k_f=2, k_t=1, gradient_penalty=10.0)).trainer
    assert wgan._manual is None and "gradient penalty" in unsupported(wgan)


def test_asking_for_manual_where_it_does_not_apply_names_the_reason():
    exp = tiny_experiment(cost={"name": "none"}, k_f=2, k_t=1, gradient_penalty=10.0)
    with pytest.raises(ValueError, match="backward: manual is not available here: the gradient penalty"):
        toy.build(dict(exp, optim=dict(exp["optim"], backward="manual")))
