"""Toy training speed: our NOT trainer vs the authors'-style loops, in one run, plus the compute floor.

Two settings, each timed for the same number of f-steps from the same seed:

* ``strong`` -- moons (Gaussian -> two moons), strong cost, MLP 2x100, batch 64, K_T 10;
  reference: :func:`harness.reference.toy_loop` (``nn.Sequential``,
  ``torch.optim.Adam``, ``F.mse_loss``, ``.item()`` every step);
* ``weak`` -- the authors' NOT_toy_2D settings (``configs/authors_toy.yaml``: weak cost,
  γ 1, |Z_x| 4, MLPs 3x100, batch 64, K_T 10); reference: their notebook loop,
  :func:`harness.reference.authors_toy_2d`.

"notpipe autograd" rows take ``loss.backward()``; "hand-written" is the default
(``optim.backward: auto``): the gradients of :mod:`notpipe.core.mlp_backward`.

The compute floor is the model FLOPs of one f-step divided by the GEMM rate this
machine reaches at the toys' sizes (``torch.mm`` of a (B·Z, 100) by (100, 100) block,
timed here): the time one f-step would take if only its matrix products cost anything.
The gap between a contender and the floor is dispatch and autograd overhead.

    python benchmarks/toy_speed.py --steps 2000 --threads 1
    python benchmarks/toy_speed.py --setting weak --steps 500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from harness.measure import device_name, process_peak_rss
from harness.reference import authors_toy_2d_for, toy_loop

from notpipe import toy
from notpipe.config import load_config, validate_config

#: configs/ of this checkout (the weak setting is configs/authors_toy.yaml)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STRONG = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"},
          "cost": {"name": "strong"}, "batch": 64, "k_t": 10, "seed": 0}


def weak_experiment() -> dict:
    return load_config(CONFIGS / "authors_toy.yaml")["toy"]["experiments"]["swissroll_s0"]


def strong_experiment(steps: int, impl: str, backward: str = "auto") -> dict:
    optim = {"impl": impl, "backward": backward}
    cfg = {"toy": {"experiments": {"b": dict(STRONG, steps=steps, log_every=100, optim=optim)}}}
    return validate_config(cfg)["toy"]["experiments"]["b"]


def with_backward(exp: dict, backward: str) -> dict:
    """``exp`` with ``optim.backward`` set: ``autograd`` or ``auto`` (hand-written gradients)."""
    return dict(exp, optim=dict(exp["optim"], backward=backward))


def mlp_flops(dims: list[int]) -> int:
    """Forward FLOPs of one sample through an MLP with layer widths ``dims`` (2 per multiply-add)."""
    return sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))


def flops_per_f_step(exp: dict, dim: int = 2) -> int:
    """Model FLOPs of one f-step; backward = 2x forward (1x for f's input-only backward in T-steps)."""
    m = exp["model"]
    z = exp["cost"].get("z_size", 1) if exp["cost"]["name"] != "strong" else 1
    zd = m["z_dim"] if exp["cost"]["name"] != "strong" else 0
    f_t, f_f = mlp_flops([dim + zd, *m["hidden_t"], dim]), mlp_flops([dim, *m["hidden_f"], 1])
    b = exp["batch"]
    t_steps = exp["k_t"] * b * z * (3 * f_t + 2 * f_f)
    return t_steps + b * f_t + 2 * b * 3 * f_f


def gemm_rate(rows: int, width: int = 100, seconds: float = 0.5) -> float:
    """FLOP/s of ``torch.mm`` at the toys' sizes: (rows, width) x (width, width), float32."""
    a, w = torch.randn(rows, width), torch.randn(width, width)
    for _ in range(50):
        torch.mm(a, w)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            torch.mm(a, w)
        n += 100
    return n * 2 * rows * width * width / (time.perf_counter() - t0)


def time_ours(exp: dict, steps: int) -> float:
    tr = toy.build(dict(exp, steps=steps)).trainer
    t0 = time.perf_counter()
    tr.run(steps, progress=False)
    return time.perf_counter() - t0


def time_authors(exp: dict, steps: int) -> float:
    setup = toy.build(exp)
    t0 = time.perf_counter()
    authors_toy_2d_for(exp, setup.source, setup.target, steps)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=["strong", "weak", "both"], default="both")
    ap.add_argument("--steps", type=int, default=2000, help="f-steps per contender (default 2000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for these sizes)")
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"toy_speed: {device_name(torch.device('cpu'))}, torch {torch.__version__}, {args.steps} f-steps")
    settings = ["strong", "weak"] if args.setting == "both" else [args.setting]
    for setting in settings:
        if setting == "strong":
            exp = strong_experiment(args.steps, "flat")
            rows = [("reference loop (authors' style)", lambda n: toy_loop(n)),
                    ("notpipe autograd, torch Adam", lambda n: time_ours(strong_experiment(n, "torch", "autograd"), n)),
                    ("notpipe autograd, FlatAdam", lambda n: time_ours(strong_experiment(n, "flat", "autograd"), n)),
                    ("notpipe hand-written (default)", lambda n: time_ours(strong_experiment(n, "flat"), n))]
            what = "moons, strong cost, MLP 2x100, batch 64, K_T 10"
        else:
            exp = weak_experiment()
            rows = [("authors' NOT_toy_2D loop", lambda n: time_authors(exp, n)),
                    ("notpipe autograd, FlatAdam", lambda n: time_ours(with_backward(exp, "autograd"), n)),
                    ("notpipe hand-written (default)", lambda n: time_ours(with_backward(exp, "auto"), n))]
            what = "authors' settings: weak gamma 1, |Z_x| 4, MLP 3x100, batch 64, K_T 10"
        flops = flops_per_f_step(exp)
        rows_b = exp["batch"] * (exp["cost"].get("z_size", 1) if setting == "weak" else 1)
        rate = gemm_rate(rows_b, exp["model"]["hidden_t"][0])
        floor = flops / rate
        print(f"\n{setting}: {what}")
        print(f"  model FLOPs per f-step {flops / 1e6:.2f} M; torch.mm at ({rows_b}, 100)x(100, 100): "
              f"{rate / 1e9:.1f} GFLOP/s -> compute floor {1e3 * floor:.2f} ms per f-step "
              f"({floor * 1e4:.0f} s per 10k f-steps)")
        results = []
        for name, fn in rows:
            fn(args.warmup)
            results.append((name, fn(args.steps)))
        ref = results[0][1]
        print(f"  {'contender':32s} {'seconds':>8s} {'f-steps/s':>10s} {'ms/f-step':>10s} {'10k-step s':>10s} "
              f"{'x floor':>8s} {'speed-up':>8s}")
        for name, sec in results:
            ms = 1e3 * sec / args.steps
            print(f"  {name:32s} {sec:8.2f} {args.steps / sec:10.1f} {ms:10.2f} {sec * 1e4 / args.steps:10.1f} "
                  f"{ms / (1e3 * floor):7.1f}x {ref / sec:7.2f}x")
    print(f"\npeak RSS {process_peak_rss() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
