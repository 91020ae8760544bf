"""A changed config never resumes, nor is evaluated with, another config's checkpoint (issue 18).

Library level: fingerprints, resume decisions, stale folders, evaluation refusals and
safe loading. The same behaviour through Snakemake is in test_workflow_resume.py.
"""

import logging
import shutil

import pytest
import torch
from conftest import tiny_experiment, tiny_image_run

from notpipe import toy
from notpipe import train as images
from notpipe.core import checkpoint as ckpt
from notpipe.core import fingerprint
from notpipe.data.datasets import resolve_datasets
from notpipe.data.prepare import prepare


def _weights(path):
    state = ckpt.load(path)
    return state["T"] if "T" in state else state["trainer"]["T"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- fingerprints
def test_fingerprint_ignores_free_keys_and_int_float_spelling():
    exp = tiny_experiment()
    fp = fingerprint.toy(exp)
    assert fingerprint.toy({**exp, "steps": 999, "log_every": 1, "checkpoint_every": 7})["hash"] == fp["hash"]
    assert fingerprint.toy({**exp, "seed": 0.0})["hash"] == fp["hash"]  # 0 and 0.0 in YAML
    other = fingerprint.toy({**exp, "cost": {"name": "weak", "gamma": 0.5, "z_size": 4}})
    assert other["hash"] != fp["hash"]
    diff = fingerprint.differences(fp, other)
    assert "cost.name: 'strong' -> 'weak'" in diff and "cost.gamma: '<unset>' -> 0.5" in diff
    assert "steps" not in fp["keys"] and "model.hidden_t" in fp["keys"]
    assert "no fingerprint" in fingerprint.differences(None, fp)


def test_image_fingerprint_covers_arrays_and_precision_not_grid_or_compile(shapes_data):
    run = tiny_image_run()
    fp = images.run_fingerprint(run, shapes_data)
    assert fp["keys"]["data.source.train"] and fp["keys"]["data.target.test"]
    same = dict(run, grid_every=0, keep=9, speed={**run["speed"], "compile": True, "channels_last": False})
    assert images.run_fingerprint(same, shapes_data)["hash"] == fp["hash"]
    other = "bf16" if run["speed"]["precision"] == "fp32" else "fp32"
    changed = dict(run, speed={**run["speed"], "precision": other})
    assert images.run_fingerprint(changed, shapes_data)["hash"] != fp["hash"]
    # the frozen network in eval mode (T's BatchNorm in the f-step) is part of an image run's
    # trajectory: checkpoints written before it (no such key) are not resumed as the same run
    assert fp["keys"]["trainer.frozen_in_eval_mode"] is True
    from notpipe.core import fingerprint

    older = fingerprint.make(run, fingerprint.IMAGE_FREE, fingerprint.data_hashes(images.manifests(run, shapes_data)))
    assert older["hash"] != fp["hash"] and "trainer.frozen_in_eval_mode" in fingerprint.differences(older, fp)
    trimmed = fingerprint.trajectory(run, fingerprint.IMAGE_FREE)
    assert "grid_every" not in trimmed and "compile" not in trimmed["speed"] and "precision" in trimmed["speed"]


# ---------------------------------------------------------------- toy resume
def test_toy_changed_source_restarts_and_keeps_old_checkpoints_aside(tmp_path, caplog):
    exp = tiny_experiment(source={"name": "gaussian", "dim": 2}, target={"name": "gaussian", "dim": 2})
    model = tmp_path / "model.pt"
    toy.train(exp, model, tmp_path / "log.csv", progress=False)
    old = _weights(model)
    changed = tiny_experiment(source={"name": "gaussian", "dim": 2, "cov": "random", "mean": [1.0, 2.0]},
                              target={"name": "gaussian", "dim": 2})
    with caplog.at_level(logging.INFO, logger="notpipe"):
        setup = toy.train(changed, model, tmp_path / "log.csv", progress=False, name="g")
    assert "not resuming" in caplog.text and "source.cov: '<unset>' -> 'random'" in caplog.text
    assert "resumed" not in caplog.text
    assert setup.trainer.history[0]["step"] == 5  # trained from step 0
    stale = list(tmp_path.glob("checkpoints.stale-*"))
    assert len(stale) == 1 and sorted(p.name for p in stale[0].iterdir()) == ["step_00000010.pt", "step_00000020.pt"]
    assert not _same(old, _weights(model))
    assert ckpt.load(model)["fingerprint"]["hash"] == fingerprint.toy(changed)["hash"]


def test_toy_raising_steps_resumes_and_equals_an_uninterrupted_run(tmp_path, caplog):
    a, b = tmp_path / "a", tmp_path / "b"
    toy.train(tiny_experiment(steps=10), a / "model.pt", a / "log.csv", progress=False)
    with caplog.at_level(logging.INFO, logger="notpipe"):
        toy.train(tiny_experiment(steps=20), a / "model.pt", a / "log.csv", progress=False)
    assert "resumed" in caplog.text and "f-step 10" in caplog.text
    toy.train(tiny_experiment(steps=20), b / "model.pt", b / "log.csv", progress=False)
    assert _same(_weights(a / "model.pt"), _weights(b / "model.pt"))
    assert not list(a.glob("*.stale-*"))


def test_toy_lowering_steps_below_the_checkpoint_restarts(tmp_path, caplog):
    toy.train(tiny_experiment(steps=20), tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    with caplog.at_level(logging.INFO, logger="notpipe"):
        toy.train(tiny_experiment(steps=10), tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    assert "past steps=10" in caplog.text
    assert ckpt.load(tmp_path / "model.pt")["step"] == 10


def test_checkpoint_without_fingerprint_is_a_mismatch(tmp_path, caplog):
    exp = tiny_experiment()
    setup = toy.build(exp)
    setup.trainer.run(10, progress=False)
    ckpt.atomic_save({"trainer": setup.trainer.state_dict(), "experiment": exp},  # the old format
                     ckpt.checkpoint_path(tmp_path / "checkpoints", 10))
    with caplog.at_level(logging.INFO, logger="notpipe"):
        setup = toy.train(exp, tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    assert "has no fingerprint" in caplog.text and setup.trainer.history[0]["step"] == 5
    assert list(tmp_path.glob("checkpoints.stale-*"))


def test_toy_evaluation_refuses_another_configs_model(tmp_path):
    exp = tiny_experiment()
    toy.train(exp, tmp_path / "model.pt", tmp_path / "log.csv", progress=False)
    toy.load_trained(tmp_path / "model.pt", expected=exp)  # the right config: fine
    with pytest.raises(fingerprint.FingerprintMismatch) as err:
        toy.load_trained(tmp_path / "model.pt", expected=tiny_experiment(seed=3))
    assert "seed: 0.0 -> 3.0" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(fingerprint.FingerprintMismatch, match="holds f-step 20 but the config asks for steps=40"):
        toy.load_trained(tmp_path / "model.pt", expected=tiny_experiment(steps=40))


# ---------------------------------------------------------------- image resume
@pytest.fixture
def data_copy(shapes_data, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(shapes_data, d)
    return d


def test_image_cost_change_restarts_and_moves_snapshots_aside(data_copy, tmp_path, caplog):
    out = tmp_path / "run"
    images.train(tiny_image_run(), "r", data_copy, out, progress=False)
    weak = tiny_image_run(cost={"name": "weak", "gamma": 0.5, "z_size": 2})
    with caplog.at_level(logging.INFO, logger="notpipe"):
        images.train(weak, "r", data_copy, out, progress=False)
    assert "cost.name: 'strong' -> 'weak'" in caplog.text
    for folder in ("checkpoints", "snapshots", "grids"):
        assert len(list(out.glob(f"{folder}.stale-*"))) == 1, folder
    with pytest.raises(fingerprint.FingerprintMismatch, match="cost.name: 'strong' -> 'weak'"):
        images.load_map(next(out.glob("snapshots.stale-*")) / "step_00000004.pt", data_copy,
                        expected=weak)
    images.load_map(out / "snapshots/step_00000004.pt", data_copy, expected=weak)


def test_image_width_change_restarts_without_a_shape_traceback(data_copy, tmp_path, caplog):
    out = tmp_path / "run"
    images.train(tiny_image_run(), "r", data_copy, out, progress=False)
    wide = tiny_image_run(model={"t_base": 8, "t_depth": 2, "f_nf": 4, "f_max": 8})
    with caplog.at_level(logging.INFO, logger="notpipe"):
        images.train(wide, "r", data_copy, out, progress=False)
    assert "model.t_base: 4.0 -> 8.0" in caplog.text and "size mismatch" not in caplog.text


def test_replaced_arrays_restart(data_copy, tmp_path, caplog):
    out = tmp_path / "run"
    run = tiny_image_run()
    images.train(run, "r", data_copy, out, progress=False)
    spec = resolve_datasets({"shapes_circles": {"n": 60, "seed": 99}})["shapes_circles"]
    prepare("shapes_circles", spec, 16, data_copy / "shapes_circles_16", data_copy / "raw", progress=False)
    with caplog.at_level(logging.INFO, logger="notpipe"):
        images.train(run, "r", data_copy, out, progress=False)
    assert "data.source.train" in caplog.text and "not resuming" in caplog.text


# ---------------------------------------------------------------- safe loading
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled


def test_a_pickle_with_a_payload_is_refused_in_one_line(tmp_path, caplog):
    marker = tmp_path / "PAYLOAD_RAN"
    bad = ckpt.checkpoint_path(tmp_path / "checkpoints", 30)
    bad.parent.mkdir()
    torch.save({"trainer": _Payload(marker)}, bad)
    with pytest.raises(ckpt.UnsafeCheckpointError) as err:
        ckpt.load(bad)
    msg = str(err.value)
    assert "refused" in msg and str(bad) in msg and "\n" not in msg
    assert not marker.exists()
    ckpt.atomic_save({"step": 20}, ckpt.checkpoint_path(tmp_path / "checkpoints", 20))
    path, state = ckpt.latest_checkpoint(tmp_path / "checkpoints")  # skipped with a warning
    assert state["step"] == 20 and "refused" in caplog.text and not marker.exists()


def test_trainer_state_loads_with_weights_only(tmp_path):
    setup = images.build(tiny_image_run(optim={"milestones": [2]}), _prepared(tmp_path))
    setup.trainer.run(2, progress=False)
    path = ckpt.atomic_save({"trainer": setup.trainer.state_dict()}, tmp_path / "s.pt")
    state = torch.load(path, weights_only=True)["trainer"]
    setup.trainer.load_state_dict(state)
    assert setup.trainer.step == 2


def _prepared(tmp_path):
    d = tmp_path / "d"
    specs = resolve_datasets({"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}})
    for name in specs:
        if name.startswith("shapes_"):
            prepare(name, specs[name], 16, d / f"{name}_16", d / "raw", progress=False)
    return d


def test_keys_added_later_at_their_neutral_value_keep_old_fingerprints():
    from notpipe.core import fingerprint

    old = {"steps": 10, "k_t": 10, "cost": {"name": "strong"}}
    new = {**old, "k_f": 1, "gradient_penalty": 0.0}
    assert fingerprint.toy(new)["hash"] == fingerprint.toy(old)["hash"]
    assert fingerprint.toy({**new, "k_f": 5})["hash"] != fingerprint.toy(old)["hash"]
    assert "k_f" in fingerprint.differences(fingerprint.toy(old), fingerprint.toy({**new, "k_f": 5}))


def test_toy_lr_decay_keys_at_their_defaults_keep_older_fingerprints():
    exp = tiny_experiment()
    assert exp["optim"]["milestones"] == [] and exp["optim"]["lr_decay"] == 0.1
    older = {**exp, "optim": {k: v for k, v in exp["optim"].items() if k not in ("milestones", "lr_decay")}}
    assert fingerprint.toy(older)["hash"] == fingerprint.toy(exp)["hash"]
    decayed = tiny_experiment(optim={"milestones": [12]})
    assert fingerprint.toy(decayed)["hash"] != fingerprint.toy(exp)["hash"]
    assert "optim.milestones" in fingerprint.toy(decayed)["keys"]


def test_toy_lr_decay_resumes_past_a_milestone_to_the_same_weights(tmp_path):
    """Killed at f-step 10 of 20, with the lr decayed at 6 and 14: the resumed run gets the
    decayed lr back from its checkpoint and ends on the uninterrupted run's weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    decay = {"optim": {"milestones": [6, 14], "lr_decay": 0.1}}
    toy.train(tiny_experiment(steps=10, **decay), a / "model.pt", a / "log.csv", progress=False)
    setup = toy.train(tiny_experiment(steps=20, **decay), a / "model.pt", a / "log.csv", progress=False)
    assert setup.trainer.opt_t.param_groups[0]["lr"] == pytest.approx(1e-6)  # 1e-4 * 0.1 * 0.1
    toy.train(tiny_experiment(steps=20, **decay), b / "model.pt", b / "log.csv", progress=False)
    assert _same(_weights(a / "model.pt"), _weights(b / "model.pt"))
    plain = tmp_path / "plain"
    toy.train(tiny_experiment(steps=20), plain / "model.pt", plain / "log.csv", progress=False)
    assert not _same(_weights(a / "model.pt"), _weights(plain / "model.pt"))
