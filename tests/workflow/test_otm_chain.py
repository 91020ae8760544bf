"""OTM on the real workflow: generation from noise and one unpaired restoration, through data,
train, evaluation, the grid figure and the report table, on a tiny CPU config."""

import json

import pandas as pd
import pytest
import yaml
from snakemake_runner import run_snakemake

RUN = {"source": "shapes_mask", "target": "shapes_clean", "image_size": 16, "cost": {"name": "strong"},
       "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
       "log_every": 2, "checkpoint_every": 2, "grid_every": 4, "snapshot_every": 4}


@pytest.mark.slow
def test_generation_and_restoration_chain(tmp_path):
    cfg = {"data": {"offline": True},
           "datasets": {"shapes_squares": {"n": 60},
                        "shapes_clean": {"format": "derived", "base": "shapes_squares", "half": 1},
                        "shapes_mask": {"format": "derived", "base": "shapes_squares", "half": 0,
                                        "degrade": {"name": "mask", "size": 6}}},
           "images": {"threads": 1, "runs": {
               "restore": RUN,
               "gen": {**RUN, "source": "noise", "noise": {"shape": [3, 2, 2], "upsample": 8},
                       "target": "shapes_squares"}}},
           "eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 4, "batch": 4,
                    "lpips_inputs": 2, "lpips_samples": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake("results/main/eval/summary.csv", "report/figures/main/images/gen_grid.pdf",
                  "results/main/report/generated/table_images.tex", "--cores", "2", "--resources", "gpu=0",
                  "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path))
    data = tmp_path / "results/data"
    assert not (data / "noise_16").exists()  # the noise source is drawn on the fly
    m = json.loads((data / "shapes_mask_16/manifest.json").read_text())
    assert m["format"] == "derived" and m["degrade"]["name"] == "mask" and "test_original" in m["files"]
    s = pd.read_csv(tmp_path / "results/main/eval/summary.csv").set_index("run")
    assert s.loc["restore", "psnr"] > 0 and s.loc["restore", "psnr_input"] > 0
    assert pd.notna(s.loc["restore", "lpips_content"]) and pd.isna(s.loc["gen", "lpips_content"])
    assert pd.notna(s.loc["gen", "fid"]) and pd.isna(s.loc["gen", "psnr"]) and s.loc["gen", "source"] == "noise"
    metrics = pd.read_csv(tmp_path / "results/main/eval/restore/metrics.csv")
    assert set(metrics[metrics["map"] == "input"].metric) == {"psnr", "mse", "fid"}
    table = (tmp_path / "results/main/report/generated/table_images.tex").read_text()
    assert "tab:restoration" in table and r"n/a$^\ddagger$" in table
    assert (tmp_path / "report/figures/main/images/gen_grid.png").exists()


@pytest.mark.slow
def test_otm_settings_chain_with_per_batch_degradations(tmp_path):
    """OTM's networks, order, inner-product cost and gradient-optimality term, and a source degraded per
    batch (stored clean, its test split degraded once as float inputs), through evaluation and the report table."""
    otm = {"cost": {"name": "strong", "form": "inner", "scaling": "half_mean"}, "order": "potential_first",
           "optim": {"betas": [0, 0.9], "weight_decay": 0}, "model": {"arch": "otm_restoration", "t_base": 4, "f_nf": 4}}
    cfg = {"data": {"offline": True},
           "datasets": {"shapes_squares": {"n": 200},
                        "shapes_clean": {"format": "derived", "base": "shapes_squares", "half": 1},
                        "shapes_noisy": {"format": "derived", "base": "shapes_squares", "half": 0,
                                         "degrade": {"name": "noise", "sigma": 0.15, "fresh": True}}},
           "images": {"threads": 1, "runs": {
               "restore": {**RUN, **otm, "source": "shapes_noisy"},
               "gen": {**RUN, **otm, "source": "noise", "noise": {"shape": [3, 2, 2], "upsample": 8},
                       "target": "shapes_squares", "gradient_optimality": 10,
                       "model": {"arch": "otm_generation", "t_base": 4, "f_nf": 4}}}},
           "eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 4, "batch": 4,
                    "lpips_inputs": 2, "lpips_samples": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake("results/main/eval/summary.csv", "report/figures/main/images/restore_grid.pdf",
                  "results/main/report/generated/table_images.tex", "--cores", "2", "--resources", "gpu=0",
                  "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path))
    data = tmp_path / "results/data"
    m = json.loads((data / "shapes_noisy_16/manifest.json").read_text())
    assert m["degrade"]["fresh"] is True and m["files"]["test_original"] == "test.npy"
    s = pd.read_csv(tmp_path / "results/main/eval/summary.csv").set_index("run")
    assert s.loc["restore", "psnr_input"] < 40  # the inputs are degraded, not the clean test.npy (PSNR 100)
    log = pd.read_csv(tmp_path / "results/main/train/gen/log.csv")
    assert (log["grad_optimality"] > 0).all()
    base = pd.read_csv(tmp_path / "results/main/eval/restore/baselines.csv").set_index("map")
    assert base.loc["identity"].query("metric == 'fid'")["value"].iloc[0] > 0
    assert "tab:restoration" in (tmp_path / "results/main/report/generated/table_images.tex").read_text()
