import random

import numpy as np
import torch

from notpipe.core import checkpoint as ckpt


def test_atomic_save_roundtrip_and_no_temp_left(tmp_path):
    p = ckpt.atomic_save({"a": torch.arange(3)}, tmp_path / "d" / "x.pt")
    assert torch.equal(ckpt.load(p)["a"], torch.arange(3))
    assert [f.name for f in p.parent.iterdir()] == ["x.pt"]


def test_latest_skips_corrupt_newest(tmp_path, caplog):
    for step in (10, 20, 30):
        ckpt.atomic_save({"step": step}, ckpt.checkpoint_path(tmp_path, step))
    newest = ckpt.checkpoint_path(tmp_path, 30)
    newest.write_bytes(newest.read_bytes()[:40])  # truncated
    path, state = ckpt.latest_checkpoint(tmp_path)
    assert state["step"] == 20 and path.name == "step_00000020.pt"
    assert "skipping unreadable checkpoint" in caplog.text
    assert ckpt.latest_checkpoint(tmp_path / "none") is None


def test_prune_keeps_newest(tmp_path):
    for step in range(5):
        ckpt.atomic_save({}, ckpt.checkpoint_path(tmp_path, step))
    ckpt.prune(tmp_path, 2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000003.pt", "step_00000004.pt"]


def test_rng_state_roundtrip():
    state = ckpt.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
