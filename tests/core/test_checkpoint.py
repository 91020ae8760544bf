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


def test_truncated_empty_or_folder_model_file_is_one_line(tmp_path):
    import pytest

    good = ckpt.atomic_save({"T": {"w": torch.zeros(100)}}, tmp_path / "model.pt")
    data = good.read_bytes()
    cases = {"half.pt": data[: len(data) // 2], "tail.pt": data[:-10], "empty.pt": b"", "junk.pt": b"hello"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "folder.pt").mkdir()
    for name in [*cases, "folder.pt"]:
        with pytest.raises(ckpt.DamagedCheckpointError) as err:
            ckpt.load(tmp_path / name)
        msg = str(err.value)
        assert msg.startswith(f"{tmp_path / name}: ") and "\n" not in msg, msg
        assert ("is a folder" if name == "folder.pt" else "is truncated or damaged") in msg
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "absent.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_refused_model_files_reach_the_terminal_as_one_line(tmp_path, capsys):
    """Another run's model, a pickle payload and a truncated file, loaded as toy_evaluate does
    under Snakemake: one ``error:`` line on the terminal, the trace in the job's log."""
    import types

    import pytest
    from conftest import tiny_experiment

    from notpipe import toy
    from notpipe.stage import entry

    exp = tiny_experiment(steps=4, checkpoint_every=2, log_every=2)
    model = tmp_path / "model.pt"
    toy.train(exp, model, tmp_path / "log.csv", None, progress=False, name="t")
    payload = tmp_path / "payload.pt"
    torch.save({**ckpt.load(model), "T": _Payload()}, payload)
    half = tmp_path / "half.pt"
    half.write_bytes(model.read_bytes()[:200])
    cases = {"fingerprint": (model, {**exp, "batch": 32}, "was trained with another configuration"),
             "payload": (payload, exp, "refused: it holds Python objects"),
             "truncated": (half, exp, "is truncated or damaged")}
    for what, (path, expected, says) in cases.items():
        log = tmp_path / f"{what}.log"
        smk = types.SimpleNamespace(log=[str(log)], threads=1)
        with pytest.raises(SystemExit) as ex:
            entry(lambda p=path, e=expected: toy.load_trained(p, expected=e), None, lambda s: {}, smk,
                  torch_threads=False)
        assert ex.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {path}") and says in err[0], (what, err)
        assert "Traceback" in log.read_text() and "payload ran" not in err[0]
