"""Toy training speed: our NOT trainer vs a plain reference loop, in one run.

The reference is a straightforward loop in the authors' style (nn.Sequential
MLPs, torch.optim.Adam, freeze/unfreeze f, F.mse_loss cost, one sampler call per
batch). Both train the same architecture (moons: Gaussian -> two moons, strong
cost, MLP 2x100, batch 64, K_T = 10) for the same number of f-steps from the
same seed. Prints f-steps/s, T-steps/s, samples/s, peak RSS and the speed ratio.

    python benchmarks/toy_speed.py --steps 10000 --threads 1
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from notpipe import toy
from notpipe.benchmarks.reference import toy_loop as reference_loop
from notpipe.config import validate_config

EXP = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"},
       "cost": {"name": "strong"}, "batch": 64, "k_t": 10, "seed": 0}


def ours(steps: int, impl: str = "flat") -> float:
    exp = validate_config({"toy": {"experiments": {"b": dict(EXP, steps=steps, log_every=100,
                                                                optim={"impl": impl})}}})
    tr = toy.build(exp["toy"]["experiments"]["b"]).trainer
    t0 = time.perf_counter()
    tr.run(steps, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="f-steps per contender (default 2000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for these sizes)")
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reference_loop(args.warmup)
    ours(args.warmup)
    rows = [("reference loop", reference_loop(args.steps)),
            ("notpipe (torch fused Adam)", ours(args.steps, "torch")),
            ("notpipe (FlatAdam, default)", ours(args.steps, "flat"))]
    ref = rows[0][1]
    print(f"moons toy, {args.steps} f-steps x K_T=10, batch 64, MLP 2x100, {args.threads} thread(s)")
    print(f"{'contender':30s} {'seconds':>8s} {'f-steps/s':>10s} {'T-steps/s':>10s} {'samples/s':>10s} "
          f"{'10k-step s':>10s} {'speed-up':>8s}")
    for name, sec in rows:
        print(f"{name:30s} {sec:8.2f} {args.steps / sec:10.1f} {11 * args.steps / sec:10.0f} "
              f"{11 * 64 * args.steps / sec:10.0f} {sec * 10000 / args.steps:10.1f} {ref / sec:7.2f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
