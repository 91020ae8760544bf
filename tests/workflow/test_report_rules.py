"""The report's rules: the FID-curve figure takes its run's baselines.csv (the identity map's FID and
the floor) as input, and is rebuilt alone by asking for its file."""

import os

import pandas as pd
import yaml
from snakemake_runner import run_snakemake

RUN = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
       "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
       "log_every": 2, "checkpoint_every": 2, "grid_every": 4, "snapshot_every": 2}
FIGURE = "report/figures/main/images/tiny_fid_curve.pdf"
EVAL = "results/main/eval/tiny"


def _args(tmp_path) -> list[str]:
    cfg = {"data": {"offline": True}, "images": {"runs": {"tiny": RUN}},
           "eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": 4, "batch": 4},
           "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return ["--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path)]


def _job(plan: str, rule: str) -> str:
    """The dry-run block of ``rule``'s job (its input, output and reason lines)."""
    block = plan.split(f"rule {rule}:", 1)[1]
    return block.split("\n\n", 1)[0]


def test_the_fid_curve_figure_plans_the_run_baselines(tmp_path):
    proc = run_snakemake(FIGURE, "-n", *_args(tmp_path))
    plan = proc.stdout + proc.stderr
    assert "rule eval_baselines:" in plan
    assert f"{EVAL}/baselines.csv" in _job(plan, "image_figure_fid_curve").split("output:")[0]


def _baselines(path, floor: float) -> None:
    pd.DataFrame([{"run": "tiny", "step": None, "metric": "fid", "map": m, "value": v,
                   "extractor": "random_seed0_smoke", "smoke": True}
                  for m, v in (("identity", 280.0), ("target_halves", floor))]).to_csv(path, index=False)


def test_one_fid_curve_figure_from_its_csvs(tmp_path):
    ev = tmp_path / EVAL
    ev.mkdir(parents=True)
    pd.DataFrame({"run": "tiny", "step": [2, 4], "fid": [300.0, 250.0], "transport_cost": [0.1, 0.2],
                  "smoke": True}).to_csv(ev / "curve.csv", index=False)
    _baselines(ev / "baselines.csv", 20.0)
    # only the figure's rule may run: the CSVs stand in for training and evaluation
    args = [*_args(tmp_path), "--allowed-rules", "image_figure_fid_curve"]
    run_snakemake(FIGURE, *args)
    assert (tmp_path / FIGURE).with_suffix(".png").exists()
    log = (tmp_path / "results/logs/main/figures/images/tiny_fid_curve.log").read_text()
    assert f"identity map's FID and the floor drawn from {EVAL}/baselines.csv" in log
    # new baselines (written after the figure) make the figure out of date
    figure_time = (tmp_path / FIGURE).stat().st_mtime
    _baselines(ev / "baselines.csv", 21.0)
    os.utime(ev / "baselines.csv", (figure_time + 1, figure_time + 1))
    proc = run_snakemake(FIGURE, "-n", *args)
    assert f"{EVAL}/baselines.csv" in _job(proc.stdout + proc.stderr, "image_figure_fid_curve").split("reason:")[1]
