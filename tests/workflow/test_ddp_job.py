"""A run with ``gpus: 2`` through Snakemake: its train job holds gpu=2 and trains on 2 processes
(gloo on this CPU machine), started by the job's script."""

import json

import pytest
import torch
import yaml
from snakemake_runner import run_snakemake

from notpipe.core import checkpoint as ckpt


@pytest.mark.slow
def test_train_job_of_a_two_process_run_holds_gpu_2_and_runs_two_ranks(tmp_path):
    run = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16, "cost": {"name": "strong"},
           "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8}, "steps": 4, "batch": 4, "k_t": 2,
           "log_every": 2, "checkpoint_every": 2, "grid_every": 4, "snapshot_every": 2, "gpus": 2}
    cfg = {"data": {"offline": True}, "images": {"threads": 2, "runs": {"tiny": run}},
           "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/main/train/tiny/final.pt"
    args = ["--cores", "2", "--resources", "gpu=2", "--configfile", str(tmp_path / "c.yaml"),
            "--directory", str(tmp_path)]
    dry = run_snakemake("-n", target, *args).stdout
    train_job = dry[dry.index("rule train:"):].split("\n\n")[0]
    assert "gpu=2" in train_job
    run_snakemake(target, *args)
    log = (tmp_path / "results/logs/main/train/tiny.log").read_text()
    assert "2 processes (gloo on the CPU, 1 threads each)" in log
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    if not torch.cuda.is_available():
        assert "claimed GPU slot" not in log  # no CUDA: nothing to claim
    final = ckpt.load(tmp_path / target)
    assert final["trainer"]["step"] == 4
    # what it was computed with (issue 16): in final.pt and beside it, written by rank 0
    env = json.loads((tmp_path / "results/main/train/tiny/environment.json").read_text())
    assert env == final["environment"] and env["torch"] and env["git_commit"]
    assert (tmp_path / "results/main/train/tiny/grids/step_00000004.png").exists()
    assert sorted(p.name for p in (tmp_path / "results/main/train/tiny/snapshots").glob("step_*")) == [
        "step_00000002.pt", "step_00000004.pt"]
