"""notpipe.train.tracking: optional TensorBoard events of an image run, read back from disk."""

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_image_run

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from notpipe import train as images  # noqa: E402
from notpipe.core import fingerprint  # noqa: E402
from notpipe.train import tracking  # noqa: E402


def _events(tb_dir) -> EventAccumulator:
    acc = EventAccumulator(str(tb_dir), size_guidance={"images": 0, "scalars": 0})  # 0: keep all
    acc.Reload()
    return acc


def test_train_with_tensorboard_writes_log_rows_and_grids(shapes_data, tmp_path):
    run = tiny_image_run(cost={"name": "weak", "gamma": 0.5, "z_size": 3}, logging={"tensorboard": True})
    images.train(run, "r", shapes_data, tmp_path, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    numeric = [c for c in log.columns if c != "step"]
    assert {"loss_t", "loss_f", "cost", "gamma", "lr_t", "lr_f", "grad_norm_t", "grad_norm_f",
            "steps_per_s", "images_per_s"} <= set(numeric)
    assert sorted(tags["scalars"]) == sorted(f"train/{c}" for c in numeric)
    for c in numeric:
        ev = acc.Scalars(f"train/{c}")
        assert [e.step for e in ev] == log.step.tolist(), c
        np.testing.assert_allclose([e.value for e in ev], log[c].to_numpy(), rtol=1e-6)
    assert tags["images"] == ["grid"]
    grids = acc.Images("grid")
    assert [g.step for g in grids] == [2, 4]  # grid_every 2, steps 4
    assert (grids[-1].height, grids[-1].width) == ((1 + 2) * 16, 3 * 16)


def test_eval_metrics_are_scalars_per_snapshot(tmp_path):
    t = tracking.Tracker(tmp_path / "tb", tensorboard=True)
    df = pd.DataFrame([
        {"run": "r", "step": 4, "metric": "fid", "map": "T", "value": 12.5},
        {"run": "r", "step": 4, "metric": "transport_cost", "map": "T", "value": 0.25},
        {"run": "r", "step": 4, "metric": "attr_color", "map": "identity", "value": 0.5},
        {"run": "r", "step": 4, "metric": "kid", "map": "T", "value": float("nan")},
    ])
    metrics = tracking.metrics_of(df)
    assert metrics["identity/attr_color"] == 0.5
    t.eval_metrics(4, metrics)
    t.eval_metrics(8, {"fid": 10.0})
    t.close()
    acc = _events(tmp_path / "tb")
    assert sorted(acc.Tags()["scalars"]) == ["eval/fid", "eval/identity/attr_color", "eval/transport_cost"]
    assert [(e.step, e.value) for e in acc.Scalars("eval/fid")] == [(4, 12.5), (8, 10.0)]


def test_disabled_writes_nothing(shapes_data, tmp_path):
    run = tiny_image_run()
    assert run["logging"]["tensorboard"] is False
    images.train(run, "r", shapes_data, tmp_path, progress=False)
    assert not (tmp_path / "tb").exists()
    t = tracking.Tracker.for_run(run, tmp_path)
    t.scalars(1, {"loss_t": 1.0})
    t.image(1, np.zeros((4, 4, 3), np.uint8))
    t.close()
    assert not t.active and not (tmp_path / "tb").exists()


def test_logging_is_not_in_the_fingerprint():
    on, off = tiny_image_run(logging={"tensorboard": True}), tiny_image_run()
    assert fingerprint.make(on, fingerprint.IMAGE_FREE) == fingerprint.make(off, fingerprint.IMAGE_FREE)


def test_missing_tensorboard_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    with pytest.raises(tracking.TrackingUnavailable) as e:
        tracking.Tracker(tmp_path / "tb", tensorboard=True)
    assert str(e.value) == 'logging.tensorboard: true needs the tensorboard package: pip install -e ".[tb]"'
    assert e.value.one_line
    tracking.Tracker(tmp_path / "tb", tensorboard=False)  # disabled: no import, no error
    assert not (tmp_path / "tb").exists()
