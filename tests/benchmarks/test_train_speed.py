"""benchmarks/harness (what benchmarks/train_speed.py runs): sizes, FLOPs, ablation switches,
the command line, and that it times the library's trainer.

That our trainer computes what the authors' code computes is shown apart from the
benchmark, against an independent reference: tests/train/test_authors_equivalence.py.
"""

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from conftest import REPO
from harness import image as ts

TINY = dict(size=16, batch=4, k_t=2, t_base=4, t_depth=2, f_nf=4, f_max=8, n_images=32)
TINY_ARGS = ["--size", "16", "--batch", "4", "--k-t", "2", "--t-base", "4", "--t-depth", "2",
             "--f-nf", "4", "--f-max", "8", "--n-images", "32", "--device", "cpu"]


def test_flops_formula_and_images_per_step():
    sz = ts.Sizes(**TINY, cost="weak", z_size=3, gamma=0.5)
    init = ts.initial_weights(sz)
    fl = ts.flops_per_step(sz, init["T_mod"], init["f_mod"])
    ft, ff = fl["T_forward_per_image"], fl["f_forward_per_image"]
    assert ft > 0 and ff > 0
    assert fl["per_f_step"] == 2 * 4 * 3 * (3 * ft + 2 * ff) + 4 * ft + 2 * 4 * 3 * ff
    assert sz.images_per_step == 4 * (2 * 3 + 1)
    assert sz.data_per_step == 4 * (2 + 2)


def test_ablation_variants_flip_one_option_at_a_time():
    opts = ts.Opts(precision="bf16", channels_last=False, compile=False)
    cpu = ts.ablation_variants(opts, torch.device("cpu"), with_compile=False)
    labels = [label for label, _ in cpu]
    assert not any("bf16" in s for s in labels)  # CUDA-only
    assert not any("compile" in s for s in labels)
    for _, var in cpu:
        diff = [k for k in asdict(opts) if getattr(var, k) != getattr(opts, k)]
        assert len(diff) == 1
    gpu = ts.ablation_variants(opts, torch.device("cuda"), with_compile=True)
    assert {"-bf16 autocast", "+torch.compile", "+channels_last", "-fused Adam"} <= {lb for lb, _ in gpu}


def test_script_runs_and_writes_json(tmp_path):
    """The command line as a user runs it (a subprocess, not the script loaded by path)."""
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_speed.py"), *TINY_ARGS, "--cost",
                           "weak", "--z-size", "2", "--steps", "1", "--warmup", "1", "--check-losses", "1",
                           "--threads", "1", "--loader-seconds", "0.1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ours / reference:" in proc.stdout
    data = json.loads(out.read_text())
    for key in ("date", "device", "torch", "options", "sizes", "reference", "ours", "loader", "flops",
                "ratio_ours_over_reference", "check_losses"):
        assert key in data, key
    assert data["ours"]["images_per_s"] == pytest.approx(data["ours"]["f_steps_per_s"] * 4 * (2 * 2 + 1))
    assert data["options"]["precision"] == "fp32"  # bf16 is CUDA-only
    assert data["loader"]["ratio_vs_trainer_data"] > 0
    assert data["check_losses_same_adam"]["max_rel_diff"] < 1e-6
    assert data["check_losses"]["max_abs_diff"] < 1e-4


def test_ours_is_the_library_trainer(tmp_path):
    """The benchmark times notpipe.train.build_trainer's trainer, not a copy of it, and each
    switch changes what it says."""
    from notpipe.train import run as train_run

    sz = ts.Sizes(**TINY)
    arrays = ts.synthetic(sz, tmp_path)
    calls = []
    real = train_run.build_trainer
    try:
        train_run.build_trainer = lambda *a, **k: calls.append(k) or real(*a, **k)
        ts.build_trainer = train_run.build_trainer
        fused = ts.build_ours(sz, ts.Opts(), ts.initial_weights(sz), torch.device("cpu"), arrays)
        loop = ts.build_ours(sz, ts.Opts(fused_adam=False, channels_last=False, host_sync_free=False),
                             ts.initial_weights(sz), torch.device("cpu"), arrays)
    finally:
        train_run.build_trainer = ts.build_trainer = real
    assert [k["adam"] for k in calls] == ["torch", "loop"]
    assert fused.opt_t.defaults["fused"] and not loop.opt_t.defaults["fused"]
    assert loop.opt_t.defaults["foreach"] is False
    w = next(p for p in fused.T.parameters() if p.dim() == 4)
    assert w.is_contiguous(memory_format=torch.channels_last)
    assert (fused.log_every, loop.log_every) == (100, 1)


@pytest.mark.slow
def test_ddp_option_times_two_processes_and_reports_the_scaling(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_speed.py"), *TINY_ARGS, "--steps", "2",
                           "--warmup", "1", "--threads", "2", "--skip-reference", "--ddp", "2",
                           "--loader-seconds", "0.1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scaling efficiency" in proc.stdout
    d = json.loads(out.read_text())["ddp"]
    assert d["processes"] == 2 and d["backend"] == "gloo" and d["threads_per_process"] == 1
    assert d["images_per_s"] > 0 and 0 < d["scaling_efficiency"]
