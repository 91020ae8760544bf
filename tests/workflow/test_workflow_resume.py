"""Through Snakemake: a changed config retrains from step 0, raising steps resumes exactly,
cosmetic edits retrain nothing, and two suites never share outputs (issue 18)."""

import copy

import pytest
import torch
import yaml
from snakemake_runner import REPO, run_snakemake

from notpipe.core import checkpoint as ckpt

GAUSS = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "gaussian", "dim": 2, "mean": [1.0, 0.0]},
         "cost": {"name": "strong"}, "steps": 20, "batch": 16, "k_t": 2, "log_every": 10,
         "checkpoint_every": 10, "model": {"hidden_t": [16], "hidden_f": [16]}}
IMAGE_RUN = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
             "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
             "log_every": 2, "checkpoint_every": 2, "grid_every": 2, "snapshot_every": 2}
IMAGES = {"data": {"offline": True}, "images": {"threads": 1, "runs": {"tiny": IMAGE_RUN}},
          "eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 4, "batch": 4,
                   "fid_z_draws": 1, "lpips_inputs": 2, "lpips_samples": 2, "curve": False},
          "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}}, "report": {"build": False}}


def _write(tmp_path, cfg, name="c.yaml"):
    (tmp_path / name).write_text(yaml.safe_dump(cfg))
    return ["--cores", "2", "--resources", "gpu=0", "--configfile", str(tmp_path / name), "--directory", str(tmp_path)]


def _T(path):
    state = ckpt.load(path)
    return state["T"] if "T" in state else state["trainer"]["T"]


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_toy_config_change_restarts_and_raising_steps_resumes_exactly(tmp_path):
    model = "results/main/toy/g/model.pt"
    cfg = {"toy": {"experiments": {"g": copy.deepcopy(GAUSS)}}}
    run_snakemake(model, *_write(tmp_path, cfg))
    first = _T(tmp_path / model)
    # a new source covariance: the job reruns, trains from step 0 and keeps the old checkpoints
    cfg["toy"]["experiments"]["g"]["source"]["cov"] = "random"
    run_snakemake(model, *_write(tmp_path, cfg))
    log = (tmp_path / "results/logs/main/toy/g.train.log").read_text()
    assert "not resuming" in log and "source.cov: '<unset>' -> 'random'" in log and "resumed" not in log
    stale = list((tmp_path / "results/main/toy/g").glob("checkpoints.stale-*"))
    assert len(stale) == 1 and len(list(stale[0].glob("step_*.pt"))) == 2
    assert not _equal(first, _T(tmp_path / model))
    # raise steps 20 -> 40: resumes at 20 and equals an uninterrupted 40-step run
    cfg["toy"]["experiments"]["g"]["steps"] = 40
    run_snakemake(model, *_write(tmp_path, cfg))
    assert "resumed g from" in (tmp_path / "results/logs/main/toy/g.train.log").read_text()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    run_snakemake(model, *_write(fresh, cfg))
    assert _equal(_T(tmp_path / model), _T(fresh / model))


@pytest.mark.slow
def test_image_cosmetic_edits_retrain_nothing_and_a_cost_change_restarts(tmp_path):
    cfg = copy.deepcopy(IMAGES)
    args = _write(tmp_path, cfg)
    run_snakemake(*args)  # train + evaluation of both snapshots
    for key, value in (("grid_every", 4), ("grid_z", 3), ("logging", {"tensorboard": True})):
        edited = copy.deepcopy(cfg)
        edited["images"]["runs"]["tiny"][key] = value
        out = run_snakemake("-n", "--rerun-triggers", "params", *_write(tmp_path, edited, "e.yaml")).stdout
        assert "Nothing to be done" in out or "\ntrain " not in out, (key, out)
        assert "eval_snapshot" not in out, key
    edited = copy.deepcopy(cfg)
    edited["eval"]["n_test"] = 3
    out = run_snakemake("-n", "--rerun-triggers", "params", *_write(tmp_path, edited, "e.yaml")).stdout
    assert "eval_snapshot" in out and "\ntrain " not in out
    # strong -> weak: the train job restarts from step 0 and says why
    cfg["images"]["runs"]["tiny"]["cost"] = {"name": "weak", "gamma": 0.5, "z_size": 2}
    run_snakemake("results/main/train/tiny/final.pt", *_write(tmp_path, cfg))
    log = (tmp_path / "results/logs/main/train/tiny.log").read_text()
    assert "not resuming" in log and "cost.name: 'strong' -> 'weak'" in log
    # Snakemake deletes the declared snapshots/ before the job; the old run's snapshots
    # are kept with its checkpoints (checkpoints/snapshots/) and move aside with them
    stale, = (tmp_path / "results/main/train/tiny").glob("checkpoints.stale-*")
    assert sorted(p.name for p in (stale / "snapshots").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]


def test_each_shipped_suite_writes_its_own_folders_and_pdf():
    from notpipe.config import load_config
    from notpipe.paths import Layout

    suites = {}
    for path in [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]:
        lay = Layout.from_config(load_config(path))
        suites[path.name] = (str(lay.results), str(lay.figures), lay.pdf, str(lay.logs))
    for i, column in enumerate(zip(*suites.values())):
        assert len(set(column)) == len(suites), (i, suites)
    data = {str(Layout.from_config(load_config(p)).data) for p in [REPO / "config.yaml", REPO / "configs/toy.yaml"]}
    assert data == {"results/data"}  # prepared data sets are shared
