"""notpipe.train: the image stage on tiny networks (CPU): every cost, resume, NaN stop."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_image_run
from PIL import Image

from notpipe import train as images
from notpipe.core import checkpoint as ckpt
from notpipe.core.trainer import NonFiniteLossError

COSTS = [{"name": "strong"}, {"name": "weak", "gamma": 0.5, "z_size": 3, "gamma_warmup": 4},
         {"name": "kernel", "gamma": 0.3, "z_size": 3}]


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c["name"])
def test_one_step_of_each_cost_updates_both_nets(shapes_data, cost):
    model = {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}
    if cost["name"] == "kernel":
        model["latent_dim"] = 8  # Kernel NOT: z through conditional instance norm
    setup = images.build(tiny_image_run(cost=cost, model=model), shapes_data)
    tr = setup.trainer
    assert (tr.noise is None) == (cost["name"] == "strong")
    t0 = [p.clone() for p in tr.T.parameters()]
    f0 = [p.clone() for p in tr.f.parameters()]
    tr.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(t0, tr.T.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(f0, tr.f.parameters()))
    row = tr._flush(1, 1.0)
    assert np.isfinite([row["loss_t"], row["loss_f"], row["cost"], row["grad_norm_t"], row["grad_norm_f"]]).all()
    assert row["grad_norm_t"] > 0 and row["grad_norm_f"] > 0
    assert setup.images_per_step == 4 * (2 * tr.cost.z_size + 1)


def test_train_writes_final_log_and_grids(shapes_data, tmp_path):
    run = tiny_image_run(cost=COSTS[1])
    images.train(run, "r", shapes_data, tmp_path, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.step) == [2, 4]
    for col in ("loss_t", "loss_f", "cost", "gamma", "lr_t", "grad_norm_t", "grad_norm_f", "images_per_s", "wall_s"):
        assert log[col].notna().all(), col
    assert log.gamma.tolist() == [0.125, 0.375]  # linear warm-up over 4 steps, gamma_max 0.5
    grid = np.asarray(Image.open(tmp_path / "grids/step_00000004.png"))
    assert grid.shape == ((1 + 2) * 16, 3 * 16, 3)  # inputs row + grid_z rows, grid_inputs columns
    setup, state = images.load_map(tmp_path / "final.pt", shapes_data)
    assert state["trainer"]["step"] == 4 and not setup.trainer.T.training
    # T-only snapshots for evaluation: every snapshot_every f-steps and the last
    assert images.snapshot_steps(run) == [4]
    assert images.snapshot_steps(dict(run, snapshot_every=2, steps=5)) == [2, 4, 5]
    snap, sstate = images.load_map(images.snapshot_path(tmp_path, 4), shapes_data)
    assert "trainer" not in sstate and sstate["step"] == 4
    for a, b in zip(snap.trainer.T.state_dict().values(), setup.trainer.T.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoints_store_model_args_and_old_ones_still_load(shapes_data, tmp_path):
    """Snapshots carry a small model_args, not the run block; a checkpoint written before
    model_args (whole run block) still loads; one that cannot be rebuilt fails in one line."""
    run = tiny_image_run(cost=COSTS[1])
    images.train(run, "r", shapes_data, tmp_path, progress=False)
    snap_path = images.snapshot_path(tmp_path, 4)
    state = ckpt.load(snap_path)
    assert "run" not in state and set(state["model_args"]) == {*images.MODEL_ARGS, "channels_last"}
    assert "run" not in ckpt.load(tmp_path / "final.pt")
    new, _ = images.load_map(snap_path, shapes_data)
    x = torch.zeros(2, 3, 16, 16)
    want = new.trainer.infer(x, 2, torch.Generator().manual_seed(0))
    # the old format: the whole run block (with keys today's schema may no longer have)
    old = {k: v for k, v in state.items() if k != "model_args"}
    old["run"] = dict(run, retired_key=1)
    torch.save(old, tmp_path / "old.pt")
    old_setup, _ = images.load_map(tmp_path / "old.pt", shapes_data)
    assert torch.equal(old_setup.trainer.infer(x, 2, torch.Generator().manual_seed(0)), want)
    # an old checkpoint whose run block lacks what rebuilds T: one line naming the file and the key
    old["run"] = {k: v for k, v in run.items() if k != "model"}
    torch.save(old, tmp_path / "broken.pt")
    with pytest.raises(images.OldCheckpoint, match=r"broken\.pt.*model") as e:
        images.load_map(tmp_path / "broken.pt", shapes_data)
    assert "\n" not in str(e.value)


def _weights(path):
    st = ckpt.load(path)["trainer"]
    return {f"{p}.{k}": v for p in ("T", "f") for k, v in st[p].items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_newest_checkpoint_is_skipped_and_resume_is_exact(shapes_data, tmp_path, caplog):
    run = tiny_image_run(steps=6, cost=COSTS[1])
    images.train(run, "r", shapes_data, tmp_path / "clean", progress=False)
    images.train(dict(run, steps=4), "r", shapes_data, tmp_path / "cut", progress=False)
    newest = ckpt.list_checkpoints(tmp_path / "cut/checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[:200])  # truncated, as by a crash mid-copy
    torch.manual_seed(999)
    images.train(run, "r", shapes_data, tmp_path / "cut", progress=False)
    assert "skipping unreadable checkpoint" in caplog.text
    assert _same(_weights(tmp_path / "clean/final.pt"), _weights(tmp_path / "cut/final.pt"))


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(shapes_data, tmp_path):
    setup = images.build(tiny_image_run(), shapes_data)
    tr = setup.trainer
    saved = []
    tr.run(2, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=2, progress=False)
    with torch.no_grad():
        next(tr.T.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at f-step 3"):
        tr.run(4, on_checkpoint=lambda t: saved.append(t.step), checkpoint_every=2, progress=False)
    assert saved == [2]


SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_image_run
from notpipe import train as images
torch.set_num_threads(1)
run = tiny_image_run(steps=100000, cost={{"name": "weak", "gamma": 0.5, "z_size": 3}}, grid_every=0)
images.train(run, "r", {data!r}, {out!r}, progress=False)
"""


def test_sigkill_then_resume_equals_uninterrupted(shapes_data, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(
        tests=os.path.dirname(os.path.dirname(__file__)), data=str(shapes_data), out=str(out))])
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.list_checkpoints(out / "checkpoints")) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop = ckpt.latest_checkpoint(out / "checkpoints")[1]["trainer"]["step"]
    assert stop >= 4 and not (out / "final.pt").exists()
    run = tiny_image_run(steps=stop + 4, cost={"name": "weak", "gamma": 0.5, "z_size": 3}, grid_every=0)
    images.train(run, "r", shapes_data, out, progress=False)
    images.train(run, "r", shapes_data, tmp_path / "clean", progress=False)
    assert _same(_weights(out / "final.pt"), _weights(tmp_path / "clean/final.pt"))


def test_snapshots_survive_the_deletion_of_the_declared_output_on_resume(shapes_data, tmp_path):
    # Snakemake deletes a job's outputs (snapshots/ included) before it reruns it; the
    # kept copies in checkpoints/snapshots/ let the resumed run publish every step again
    run = tiny_image_run(snapshot_every=2, steps=4)
    images.train(run, "r", shapes_data, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    import shutil

    shutil.rmtree(tmp_path / "snapshots")
    images.train(dict(run, steps=6), "r", shapes_data, tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert names == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]
    assert not list(tmp_path.glob(".snapshots.*"))
