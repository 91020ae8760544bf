"""The moving average of T's parameters (core/ema.py): its arithmetic, that it does not feed
back into training, that it survives a resume, and what the toy model file holds."""

import pytest
import torch
from conftest import tiny_experiment

from notpipe import toy
from notpipe.core import checkpoint as ckpt
from notpipe.core import fingerprint
from notpipe.core.ema import ParamAverage
from notpipe.core.optim import make_adam
from notpipe.toy.models import VectorMap


@pytest.mark.parametrize("impl", ["flat", "torch"])
def test_average_follows_the_recursion_with_the_growing_window(impl):
    torch.manual_seed(0)
    model = VectorMap(2, [8, 8])
    opt = make_adam(model, 1e-2, impl=impl)
    avg = ParamAverage(model, opt, 0.9)
    expect = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        avg.update(n)
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            expect[k] = d * expect[k] + (1 - d) * v
    got = avg.model_state()
    assert got.keys() == expect.keys()
    for k in got:
        torch.testing.assert_close(got[k], expect[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(got["net.layers.0.weight"], model.state_dict()["net.layers.0.weight"])


def test_ema_decay_is_checked():
    model = VectorMap(2, [4])
    with pytest.raises(ValueError, match="ema_decay"):
        ParamAverage(model, make_adam(model, 1e-3), 1.0)


def test_the_average_does_not_change_the_training_trajectory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sa = toy.train(tiny_experiment(ema_decay=0.0), a / "model.pt", a / "log.csv", progress=False)
    sb = toy.train(tiny_experiment(ema_decay=0.99), b / "model.pt", b / "log.csv", progress=False)
    for p, q in zip(sa.trainer.T.parameters(), sb.trainer.T.parameters()):
        assert torch.equal(p, q)
    last, model = ckpt.load(b / "model.pt"), ckpt.load(a / "model.pt")
    assert all(torch.equal(last["T_last"][k], model["T"][k]) for k in model["T"])
    assert not torch.equal(last["T"]["net.layers.0.weight"], last["T_last"]["net.layers.0.weight"])


def test_model_file_holds_the_average_and_the_last_iterate(tmp_path):
    setup = toy.train(tiny_experiment(), tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    state = ckpt.load(tmp_path / "model.pt")
    for k, v in setup.trainer.averaged_T_state().items():
        assert torch.equal(state["T"][k], v)
    evaluated, _ = toy.load_trained(tmp_path / "model.pt", tiny_experiment())
    last, _ = toy.load_trained(tmp_path / "model.pt", tiny_experiment(), last_iterate=True)
    assert torch.equal(evaluated.trainer.T.state_dict()["net.layers.0.weight"], state["T"]["net.layers.0.weight"])
    assert torch.equal(last.trainer.T.state_dict()["net.layers.0.weight"], state["T_last"]["net.layers.0.weight"])


def test_a_killed_run_resumes_to_the_same_average(tmp_path):
    """Killed at f-step 10 of 20: the average comes back from the checkpoint."""
    a, b = tmp_path / "a", tmp_path / "b"
    toy.train(tiny_experiment(steps=10), a / "model.pt", a / "log.csv", progress=False)
    toy.train(tiny_experiment(steps=20), a / "model.pt", a / "log.csv", progress=False)
    toy.train(tiny_experiment(steps=20), b / "model.pt", b / "log.csv", progress=False)
    ta, tb = ckpt.load(a / "model.pt")["T"], ckpt.load(b / "model.pt")["T"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_ema_off_keeps_older_fingerprints_and_the_default_does_not():
    exp = tiny_experiment(ema_decay=0.0)
    older = {k: v for k, v in exp.items() if k != "ema_decay"}
    assert fingerprint.toy(older)["hash"] == fingerprint.toy(exp)["hash"]
    assert tiny_experiment()["ema_decay"] == 0.999
    assert "ema_decay" in fingerprint.toy(tiny_experiment())["keys"]
