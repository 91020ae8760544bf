"""notpipe.evaluate on a tiny trained map: rows, smoke labels, attributes, curve and summary."""

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_image_run

from notpipe import evaluate
from notpipe import train as images
from notpipe.config import validate_config

EV = validate_config({"eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 6,
                               "batch": 3, "fid_z_draws": 2, "lpips_inputs": 3, "lpips_samples": 3}})["eval"]


@pytest.fixture(scope="module")
def trained(shapes_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run = tiny_image_run(cost={"name": "weak", "gamma": 0.5, "z_size": 2}, snapshot_every=2)
    images.train(run, "r", shapes_data, out, progress=False)
    return out, run


def test_snapshot_rows_are_labelled_and_complete(trained, shapes_data, tmp_path):
    out, run = trained
    ref = evaluate.reference("shapes_squares", 16, shapes_data, tmp_path, EV)
    df = evaluate.evaluate_snapshot(images.snapshot_path(out, 4), shapes_data, ref, EV, save_images=tmp_path / "png")
    t = df[df["map"] == "T"].set_index("metric")
    assert {"fid", "kid", "transport_cost", "lpips_content", "lpips_diversity", "attr_centroid_px"} <= set(t.index)
    assert t.loc["fid", "smoke"] and t.loc["fid", "extractor"] == "random_seed0_smoke"
    assert t.loc["lpips_diversity", "extractor"] == "lpips_alex_random_smoke"
    assert t.loc["fid", "n_images"] == 6 and pd.notna(t.loc["fid", "std"])  # 2 z-draws: mean +- std
    assert t.loc["transport_cost", "value"] > 0 and t.loc["lpips_diversity", "value"] >= 0
    ident = df[(df["map"] == "identity") & (df.metric == "attr_centroid_px")].value.item()
    rand = df[(df["map"] == "random_target") & (df.metric == "attr_centroid_px")].value.item()
    oracle = df[(df["map"] == "oracle") & (df.metric == "attr_fill_out")].value.item()
    assert ident == 0 and rand > 1 and oracle > 0.95  # the optimal map draws squares
    assert len(list((tmp_path / "png").glob("*.png"))) == 6
    # deterministic evaluation: same snapshot, same numbers
    again = evaluate.evaluate_snapshot(images.snapshot_path(out, 4), shapes_data, ref, EV)
    assert np.allclose(again.value.to_numpy(float), df.value.to_numpy(float), equal_nan=True)


def test_curve_and_summary_keep_published_numbers_apart(tmp_path, repo):
    rows = []
    for step, fid in ((2, 50.0), (4, 40.0)):
        for metric, v in (("fid", fid), ("transport_cost", 0.1)):
            rows.append({"run": "hs", "step": step, "metric": metric, "map": "T", "value": v, "std": 0.5,
                         "n_images": 10, "extractor": "legacy_pytorch", "smoke": False, "seconds": 1.0})
    paths = []
    for step in (2, 4):
        p = tmp_path / f"s{step}.csv"
        pd.DataFrame([r for r in rows if r["step"] == step]).to_csv(p, index=False)
        paths.append(p)
    curve = evaluate.curve(paths)
    assert curve.fid.tolist() == [50.0, 40.0]
    metrics = tmp_path / "m.csv"
    pd.DataFrame([r for r in rows if r["step"] == 4]).to_csv(metrics, index=False)
    runs = {"hs": {"source": "handbag", "target": "shoes", "cost": {"name": "weak"}, "image_size": 64}}
    s = evaluate.summary([metrics], runs, repo / "workflow/resources/published_fid.csv").iloc[0]
    assert s.fid == 40.0 and s.fid_std == 0.5
    assert s.published_fid == 13.45 and s.published_fid_std == 0.12 and s.published_image_size == 64
    assert "authors' notebooks" in s.published_source
    # a run at another size than the published one gets no published number, and says so
    runs128 = {"hs": dict(runs["hs"], image_size=128)}
    s = evaluate.summary([metrics], runs128, repo / "workflow/resources/published_fid.csv").iloc[0]
    assert pd.isna(s.published_fid) and s.published_source == "no published number at this image size and protocol"
    # smoke numbers are never put beside published ones
    pd.DataFrame([dict(r, smoke=True) for r in rows if r["step"] == 4]).to_csv(metrics, index=False)
    s = evaluate.summary([metrics], runs, repo / "workflow/resources/published_fid.csv").iloc[0]
    assert pd.isna(s.published_fid) and "smoke" in s.published_source


def test_best_snapshot_by_fid(tmp_path):
    import pandas as pd

    from notpipe.evaluate.aggregate import best_by_fid

    p = tmp_path / "curve.csv"
    pd.DataFrame({"run": "r", "step": [100, 200, 300], "fid": [30.0, 12.0, 19.0]}).to_csv(p, index=False)
    assert best_by_fid(p) == {"best_step": 200, "best_fid": 12.0, "best_fid_std": None}
    pd.DataFrame({"run": "r", "step": [100], "kid": [0.1]}).to_csv(p, index=False)
    assert best_by_fid(p)["best_step"] is None


def _metrics(tmp_path, run, values, smoke=False):
    rows = [{"run": run, "step": 10, "metric": m, "map": mp, "value": v, "std": None, "n_images": 10,
             "extractor": "legacy_pytorch", "smoke": smoke, "seconds": 1.0} for (m, mp), v in values.items()]
    p = tmp_path / f"{run}.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_summary_of_otm_runs_carries_paired_scores_and_no_published_numbers_of_another_protocol(tmp_path, repo):
    pub = repo / "workflow/resources/published_fid.csv"
    runs = {"den": {"source": "celeba_noise", "target": "celeba_clean", "cost": {"name": "strong"}, "image_size": 64},
            "gen": {"source": "noise", "target": "celeba_crop140", "cost": {"name": "strong"}, "image_size": 128}}
    den = _metrics(tmp_path, "den", {("fid", "T"): 20.0, ("psnr", "T"): 25.0, ("mse", "T"): 0.003,
                                     ("psnr", "input"): 11.0, ("mse", "input"): 0.08})
    gen = _metrics(tmp_path, "gen", {("fid", "T"): 30.0, ("transport_cost", "T"): 0.2})
    s = evaluate.summary([den, gen], runs, pub).set_index("run")
    assert s.loc["den", "psnr"] == 25.0 and s.loc["den", "psnr_input"] == 11.0 and s.loc["den", "mse_input"] == 0.08
    # OTM's published numbers come from another protocol (50k samples, TF Inception): never beside ours
    for run in ("den", "gen"):
        assert pd.isna(s.loc[run, "published_fid"]) and pd.isna(s.loc[run, "published_wgan_fid"])
        assert s.loc[run, "published_source"] == "no published number at this image size and protocol"
    assert pd.isna(s.loc["den", "published_input_fid"])
    assert pd.isna(s.loc["gen", "psnr"])
    smoke = _metrics(tmp_path, "den", {("fid", "T"): 20.0, ("psnr", "T"): 25.0}, smoke=True)
    s = evaluate.summary([smoke], runs, pub).iloc[0]
    assert pd.isna(s.published_fid) and pd.isna(s.published_wgan_fid) and "smoke" in s.published_source


def test_textures_published_number_needs_the_augmented_protocol(tmp_path, repo):
    from notpipe.evaluate.aggregate import run_protocol

    pub = repo / "workflow/resources/published_fid.csv"
    runs = {"tx": {"source": "textures", "target": "shoes", "cost": {"name": "kernel"}, "image_size": 128}}
    one = _metrics(tmp_path, "tx", {("fid", "T"): 30.0})
    s = evaluate.summary([one], runs, pub).iloc[0]
    assert pd.isna(s.published_fid)  # one pass of the test split is not the Kernel NOT protocol
    df = pd.read_csv(one).assign(passes=50)
    df.to_csv(one, index=False)
    s = evaluate.summary([one], runs, pub).iloc[0]
    assert s.published_fid == 24.84 and s.published_method.startswith("NOT (kernel")
    assert run_protocol("clean", 50) is None and run_protocol("legacy_pytorch") == "not_test_split"


def test_summary_marks_lpips_from_a_random_trunk_beside_real_fid(tmp_path, repo):
    """Real FID features and a random LPIPS trunk (the MNIST suite): the LPIPS numbers are smoke."""
    rows = [{"run": "mf", "step": 10, "metric": m, "map": "T", "value": v, "std": None, "n_images": 10,
             "extractor": ext, "smoke": smoke, "seconds": 1.0}
            for m, v, ext, smoke in (("fid", 150.0, "legacy_pytorch", False),
                                     ("lpips_diversity", 0.05, "lpips_alex_random_smoke", True))]
    p = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    runs = {"mf": {"source": "mnist", "target": "fashion_mnist", "cost": {"name": "weak"}, "image_size": 32}}
    s = evaluate.summary([p], runs, repo / "workflow/resources/published_fid.csv").iloc[0]
    assert not s.smoke and s.lpips_smoke
    pd.DataFrame(rows[:1]).to_csv(p, index=False)  # no LPIPS: no flag
    assert "lpips_smoke" not in evaluate.summary([p], runs, repo / "workflow/resources/published_fid.csv")
