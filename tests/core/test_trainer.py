import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_experiment

from notpipe import toy
from notpipe.core import checkpoint as ckpt
from notpipe.core.trainer import NonFiniteLossError

COSTS = [{"name": "strong"}, {"name": "weak", "gamma": 0.5, "z_size": 3},
         {"name": "kernel", "gamma": 0.5, "z_size": 3}]


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c["name"])
def test_one_step_of_each_cost_updates_both_nets(cost):
    tr = toy.build(tiny_experiment(cost=cost)).trainer
    before_t = [p.clone() for p in tr.T.parameters()]
    before_f = [p.clone() for p in tr.f.parameters()]
    tr.run(1, progress=False)
    assert tr.step == 1 and len(tr.history) == 1
    assert all(not torch.equal(a, b) for a, b in zip(before_t, tr.T.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before_f, tr.f.parameters()))
    row = tr.history[0]
    assert set(row) >= {"step", "loss_t", "loss_f", "cost", "gamma", "lr_t", "lr_f", "wall_s"}


def test_stochastic_cost_requires_noise():
    s = toy.build(tiny_experiment(cost=COSTS[1]))
    from notpipe.core.trainer import NOTTrainer
    with pytest.raises(ValueError, match="noise sampler is required"):
        NOTTrainer(s.trainer.T, s.trainer.f, s.cost, s.source, s.target, s.trainer.opt_t, s.trainer.opt_f)


def test_nan_loss_stops_with_step_and_writes_no_checkpoint(tmp_path):
    tr = toy.build(tiny_experiment(optim={"backward": "autograd"})).trainer  # the cost's batch_mean is used
    saved = []
    tr.run(10, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=10, progress=False)
    assert saved == [10]

    real = tr.cost

    class Bad:  # the cost turns NaN from f-step 13 on
        def __getattr__(self, k):
            return getattr(real, k)

        def batch_mean(self, x, ys, gamma=0.0):
            c = real.batch_mean(x, ys, gamma)
            return c * float("nan") if tr.step >= 12 else c

    tr.cost = Bad()
    with pytest.raises(NonFiniteLossError, match="non-finite loss at f-step 13"):
        tr.run(20, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=10, progress=False)
    assert saved == [10]


def test_nan_in_the_hand_written_steps_stops_with_step():
    tr = toy.build(tiny_experiment(optim={"backward": "manual"})).trainer
    saved = []
    tr.run(10, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=10, progress=False)
    with torch.no_grad():
        tr.T.net.layers[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite loss at f-step 11"):
        tr.run(20, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=10, progress=False)
    assert saved == [10]


def _weights(model_file):
    state = ckpt.load(model_file)
    return {k: v for part in ("T", "f") for k, v in ((f"{part}.{n}", t) for n, t in state[part].items())}


@pytest.mark.parametrize("cost", COSTS[:2], ids=lambda c: c["name"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, cost):
    exp = tiny_experiment(cost=cost, steps=30)
    toy.train(exp, tmp_path / "a/model.pt", tmp_path / "a/log.csv", progress=False)
    # interrupted: stop after 10 steps (one checkpoint), then resume in a fresh process state
    short = dict(exp, steps=10)
    toy.train(short, tmp_path / "b/model.pt", tmp_path / "b/log.csv", progress=False)
    torch.manual_seed(12345)  # scramble global RNG: resume must restore it
    toy.train(exp, tmp_path / "b/model.pt", tmp_path / "b/log.csv", progress=False)
    wa, wb = _weights(tmp_path / "a/model.pt"), _weights(tmp_path / "b/model.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a/log.csv").read_text().count("\n") == (tmp_path / "b/log.csv").read_text().count("\n")


SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_experiment
from notpipe import toy
torch.set_num_threads(1)
exp = tiny_experiment(steps=100000, log_every=50, checkpoint_every=50)
toy.train(exp, {out!r} + '/model.pt', {out!r} + '/log.csv', progress=False)
"""


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    out = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(tests=os.path.dirname(os.path.dirname(__file__)), out=out)])
    deadline = time.time() + 60
    ck = tmp_path / "killed" / "checkpoints"
    while time.time() < deadline and len(ckpt.list_checkpoints(ck)) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    path, state = ckpt.latest_checkpoint(ck)
    stop = state["trainer"]["step"]
    assert stop >= 50 and not (tmp_path / "killed" / "model.pt").exists()
    target = stop + 100
    exp = tiny_experiment(steps=target, log_every=50, checkpoint_every=50)
    toy.train(exp, tmp_path / "killed/model.pt", tmp_path / "killed/log.csv", progress=False)
    toy.train(exp, tmp_path / "clean/model.pt", tmp_path / "clean/log.csv", progress=False)
    wa, wb = _weights(tmp_path / "killed/model.pt"), _weights(tmp_path / "clean/model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_flush_reads_the_slots_of_the_last_steps_after_an_off_boundary_stop():
    tr = toy.build(tiny_experiment(log_every=4, checkpoint_every=8)).trainer
    tr.run(2, progress=False)
    tr.run(4, progress=False)
    buf = tr._buf[1].tolist()
    assert tr.history[-1]["step"] == 4
    assert tr.history[-1]["loss_f"] == pytest.approx((buf[2] + buf[3]) / 2, rel=1e-6)
