"""The Snakemake workflow: dry-runs of every shipped config, config errors before
any job, and one end-to-end CPU run of the toy chain on a tiny config."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake_runner import CONFIGS, REPO, SNAKEMAKE, run_snakemake  # noqa: F401


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_dry_run(config, tmp_path):
    proc = run_snakemake("-n", "--cores", "2", "--configfile", str(config), "--directory", str(tmp_path))
    cfg = yaml.safe_load(config.read_text())
    assert "This was a dry-run" in proc.stdout
    if cfg.get("toy", {}).get("experiments"):
        assert "toy_train" in proc.stdout
    if cfg.get("images", {}).get("runs"):
        assert "data_prepare" in proc.stdout and "\ntrain " in proc.stdout


def test_default_config_is_config_yaml(tmp_path):
    # no --configfile: config.yaml from the repository is used
    proc = run_snakemake("-n", "--cores", "1", "--directory", str(tmp_path), "--quiet", "rules")
    assert proc.returncode == 0


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())
    cfg["toy"]["experiments"]["moons"]["stpes"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake("-n", "--cores", "1", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "toy.experiments.moons: unknown key 'stpes'" in out and "did you mean 'steps'" in out


def test_lint_has_no_rule_warnings(tmp_path):
    proc = run_snakemake("--lint", "--configfile", str(REPO / "configs" / "toy.yaml"),
                         "--directory", str(tmp_path), check=False)
    assert "Lints for rule" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


TINY = {
    "results_dir": "results", "figures_dir": "figs",
    "toy": {"n_eval": 128, "n_plot": 64, "z_eval": 4, "experiments": {
        "moons": {"source": {"name": "gaussian"}, "target": {"name": "moons"}, "cost": {"name": "strong"},
                  "steps": 20, "batch": 16, "k_t": 2, "log_every": 10, "checkpoint_every": 10,
                  "model": {"hidden_t": [16], "hidden_f": [16]}},
        "rings": {"source": {"name": "discrete", "n": 3}, "target": {"name": "circles"},
                  "cost": {"name": "weak", "z_size": 3}, "gamma_sweep": [0.0, 0.5],
                  "steps": 20, "batch": 16, "k_t": 2, "log_every": 10, "checkpoint_every": 10,
                  "model": {"hidden_t": [16], "hidden_f": [16]}},
    }},
}


@pytest.mark.slow
def test_end_to_end_toy_chain(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    args = ["--cores", "2", "--configfile", str(cfg), "--directory", str(tmp_path)]
    # asking for one figure builds only its chain
    run_snakemake(*args, "figs/main/toy/moons_transport.pdf")
    assert (tmp_path / "figs/main/toy/moons_transport.png").stat().st_size > 0
    assert not (tmp_path / "figs/main/toy/moons_scatter.pdf").exists()
    assert not (tmp_path / "results/main/toy/rings_g0").exists()
    run_snakemake(*args)
    summary = pd.read_csv(tmp_path / "results/main/toy/summary.csv")
    assert set(summary["experiment"]) == {"moons", "rings_g0", "rings_g0.5"}
    for col in ("not_cost", "ot_cost_exact", "cost_ratio", "w2_pushforward", "w2_noise_floor",
                "bary_gap", "train_seconds", "emd_seconds", "sinkhorn_seconds"):
        assert summary[col].notna().all(), col
    assert summary.set_index("experiment").loc["rings_g0.5", "cond_var"] >= 0
    sweep = pd.read_csv(tmp_path / "results/main/toy/sweeps/rings.csv")
    assert list(sweep["gamma"]) == [0.0, 0.5]
    log = pd.read_csv(tmp_path / "results/main/toy/moons/log.csv")
    assert list(log["step"]) == [10, 20]
    for name in ("rings_gamma_sweep", "rings_g0.5_one_to_many", "moons_losses", "moons_scatter"):
        assert (tmp_path / f"figs/main/toy/{name}.pdf").stat().st_size > 0, name
    assert (tmp_path / "results/logs/main/toy/moons.train.log").exists()
    assert not (tmp_path / "figs/main/toy/moons_one_to_many.pdf").exists()  # deterministic map
    # nothing left to do: the run is complete and up to date
    proc = run_snakemake(*args, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_data_chain_from_url_to_manifest(http_server, tmp_path):
    from data_fixtures import folder_images, write_zip

    archive = write_zip(tmp_path / "web.zip", folder_images(12))
    http_server.files["/sets/web.zip"] = (archive.read_bytes(), "application/zip")
    http_server.drop_once.add("/sets/web.zip")  # the first transfer breaks off: the job resumes
    cfg = {"data": {"max_bad_fraction": 0.2, "retries": 3},
           "datasets": {"web_set": {"url": http_server.url("/sets/web.zip"), "format": "image_folder_zip"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--cores", "2", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path)]
    run_snakemake("results/data/web_set_16/manifest.json", *args)
    manifest = json.loads((tmp_path / "results/data/web_set_16/manifest.json").read_text())
    sums = json.loads((tmp_path / "results/data/checksums.json").read_text())
    assert manifest["n_skipped"] == 2 and manifest["n_train"] + manifest["n_test"] == 15
    assert manifest["sha256"]["web.zip"] == sums[http_server.url("/sets/web.zip")]  # downloads keyed by URL
    assert manifest["source"] == [http_server.url("/sets/web.zip")]
    assert any(r and r != "bytes=0-" for r in http_server.ranges())  # resumed with Range
    assert np.load(tmp_path / "results/data/web_set_16/train.npy").shape[1:] == (16, 16, 3)
    assert (tmp_path / "results/logs/data/web_set_16.prepare.log").exists()


@pytest.mark.slow
def test_train_rule_runs_on_cpu_with_gpu_resource_zero(tmp_path):
    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16,
           "cost": {"name": "weak", "gamma": 0.5, "z_size": 2},
           "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8},
           "steps": 4, "batch": 4, "k_t": 2, "log_every": 2, "checkpoint_every": 2, "grid_every": 4,
           "snapshot_every": 2}
    cfg = {"data": {"offline": True}, "images": {"threads": 1, "runs": {"tiny": run}},
           "eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 4, "batch": 4,
                    "fid_z_draws": 2, "lpips_inputs": 2, "lpips_samples": 2},
           "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--cores", "2", "--resources", "gpu=0", "--configfile", str(tmp_path / "c.yaml"),
            "--directory", str(tmp_path)]
    run_snakemake("results/main/train/tiny/final.pt", *args)
    log = (tmp_path / "results/logs/main/train/tiny.log").read_text()
    assert not (tmp_path / "results/main/eval").exists()  # asking for the checkpoint builds only its chain
    assert "device cpu" in log
    assert list(pd.read_csv(tmp_path / "results/main/train/tiny/log.csv").step) == [2, 4]
    assert (tmp_path / "results/main/train/tiny/grids/step_00000004.png").exists()
    assert len(list((tmp_path / "results/main/train/tiny/checkpoints").glob("step_*.pt"))) == 2
    # evaluation of every snapshot (here: 2 and 4), curve and summary
    run_snakemake(*args)
    curve = pd.read_csv(tmp_path / "results/main/eval/tiny/curve.csv")
    assert list(curve.step) == [2, 4] and curve.smoke.all()
    for col in ("fid", "kid", "transport_cost", "lpips_content", "lpips_diversity", "attr_centroid_px"):
        assert curve[col].notna().all(), col
    summary = pd.read_csv(tmp_path / "results/main/eval/summary.csv")
    assert summary.run.tolist() == ["tiny"] and summary.smoke.all() and summary.published_fid.isna().all()
    assert summary.extractor.tolist() == ["random_seed0_smoke"]
    assert summary.best_step.iloc[0] in (2, 4)  # the best snapshot by FID, beside the last (step 4)
    assert summary.best_fid.iloc[0] == curve.fid.min()
    metrics = pd.read_csv(tmp_path / "results/main/eval/tiny/metrics.csv")
    assert set(metrics["map"]) == {"T", "identity", "random_target", "oracle"} and (metrics.step == 4).all()
    assert (tmp_path / "results/main/eval/refstats/shapes_squares_16_test_random_seed0_smoke.npz").exists()
