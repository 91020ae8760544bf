"""harness.reference.authors_toy_2d (benchmarks/harness/reference.py: the authors' NOT_toy_2D loop) and
benchmarks/toy_authors.py, which evaluates it with our metrics."""

import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from harness.reference import authors_toy_2d, into_vector_map

from notpipe import toy
from notpipe.config import load_config


def test_their_trained_map_is_evaluated_as_it_is():
    """Their T copied into our VectorMap gives the same outputs, and their loop trains."""
    exp = load_config(REPO / "configs" / "authors_toy.yaml")["toy"]["experiments"]["swissroll_s0"]
    setup = toy.build(exp)
    T = authors_toy_2d(setup.source, setup.target, 3, batch=16, t_iters=2, seed=0)
    into_vector_map(T, setup.trainer.T)
    x, z = torch.randn(32, 2), 0.1 * torch.randn(32, 2)
    assert torch.allclose(setup.trainer.T(x, z), T(torch.cat([x, z], 1)))
    fresh = authors_toy_2d(setup.source, setup.target, 0, seed=0)
    assert not torch.equal(fresh[0].weight, T[0].weight)  # three f-steps changed the weights
    # Kaiming-normal as their weights_init_mlp: std sqrt(2 / fan_in) on the hidden layers
    assert abs(float(fresh[2].weight.std()) - (2 / 100) ** 0.5) < 0.01


def test_our_t_step_computes_exactly_their_loss_and_gradients():
    """On the same weights, x batch and z draws, our trainer's weak-cost T loss (gamma 1) and
    its gradients equal the notebook's ``mse(X, mean_z T) - f(T).mean() - var_z T.mean() / Z``."""
    import torch.nn.functional as F

    exp = load_config(REPO / "configs" / "authors_toy.yaml")["toy"]["experiments"]["swissroll_s0"]
    tr = toy.build(exp).trainer
    T = authors_toy_2d(lambda n, g: torch.zeros(n, 2), lambda n, g: torch.zeros(n, 2), 0, seed=0)
    into_vector_map(T, tr.T)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(64, 2, generator=g), 0.1 * torch.randn(64, 4, 2, generator=g)
    X = x.reshape(-1, 1, 2).repeat(1, 4, 1)
    T_XZ = T(torch.cat([X, z], 2).flatten(0, 1)).permute(1, 0).reshape(2, -1, 4).permute(1, 2, 0)
    theirs = F.mse_loss(X[:, 0], T_XZ.mean(1)).mean() - tr.f(T_XZ.flatten(0, 1)).mean() - T_XZ.var(1).mean() / 4
    theirs.backward()
    grads = [p.grad.clone() for p in T.parameters()]
    tr.noise = lambda n, gen, dev: z.reshape(n, 2)  # the same z, in the same (x-major) order
    ys = tr.push(x, 4)
    ours = tr.cost.batch_mean(x, ys, 1.0) - tr.f(ys.flatten(0, 1)).mean()
    tr.opt_t.zero_grad()
    ours.backward()
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)
    for a, b in zip(grads, tr.T.parameters(), strict=True):
        assert torch.allclose(a, b.grad, atol=1e-6), "gradients differ"


def test_script_runs_their_loop_and_compares(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "authors_toy.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    cfg["toy"]["n_eval"] = 128
    cfg["toy"]["eval_draws"] = 2
    for exp in cfg["toy"]["experiments"].values():
        exp["steps"] = 3
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    script = [sys.executable, str(REPO / "benchmarks" / "toy_authors.py"), "--config", str(path)]
    r = subprocess.run([*script, "--only", "swissroll_s0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = pd.read_csv(tmp_path / "results/authors_toy/toy/authors_loop/swissroll_s0/metrics.csv")
    assert {"w2_over_floor", "w2_over_floor_std", "energy_distance_ci95"} <= set(m.metric)
    # our pipeline's run of the same experiment, then its last iterate (not the average)
    train = [sys.executable, str(REPO / "workflow" / "scripts" / "toy_train.py"), "--config", str(path)]
    r = subprocess.run([*train, "--name", "swissroll_s0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([*script, "--last-iterate", "--only", "swissroll_s0"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "results/authors_toy/toy/last_iterate/swissroll_s0/metrics.csv").is_file()
    r = subprocess.run([*script, "--compare"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "swissroll    authors       1" in r.stdout
    assert "swissroll    ours_last     1" in r.stdout
    assert (tmp_path / "results/authors_toy/toy/authors_comparison.csv").is_file()
    bad = subprocess.run([*script, "--only", "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_toy_speed_prints_both_settings_and_the_floor():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "toy_speed.py"), "--steps", "3", "--warmup", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for text in ("strong: moons", "weak: authors' settings", "compute floor", "authors' NOT_toy_2D loop",
                 "notpipe autograd, FlatAdam", "notpipe hand-written (default)", "x floor"):
        assert text in r.stdout, text
    # 10·64·(3·F_T + 2·F_f) + 64·F_T + 2·64·3·F_f with F_T = 2(2·100 + 100·100 + 100·2),
    # F_f = 2(2·100 + 100·100 + 100): 75 545 600 FLOPs per f-step of the strong moons run
    assert "model FLOPs per f-step 75.55 M" in r.stdout

