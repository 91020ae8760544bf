"""The authors' NOT_toy_2D loop on our experiments, evaluated by our metrics: the comparison
of docs/experiments.md ("Ours against the authors' loop"), over three seeds per target.

For every experiment of ``--config`` (default ``configs/authors_toy.yaml``), this trains T
with :func:`harness.reference.authors_toy_2d` -- their notebook's code, on our
samplers so that both loops see the same laws -- with the experiment's seed, steps and
sizes. The trained weights go into our :class:`~notpipe.toy.models.VectorMap` (same
layers, same order) and :func:`notpipe.toy.evaluate` computes every metric with the
experiment's evaluation seed, so both loops are measured on identical evaluation draws.
Writes ``results/{suite}/toy/authors_loop/{name}/metrics.csv``.

``--last-iterate`` evaluates, with the same metrics and draws, the last iterate of T that
our pipeline's model files keep beside the moving average they evaluate (``ema_decay``),
into ``results/{suite}/toy/last_iterate/{name}/metrics.csv``: what our loop gives without
the average, as the authors evaluate their T.

``--compare`` then joins those with our pipeline's ``results/{suite}/toy/{name}/metrics.csv``
(from ``snakemake --cores 2 results/authors_toy/toy/summary.csv --configfile
configs/authors_toy.yaml``) into ``results/{suite}/toy/authors_comparison.csv`` and prints
per target the mean over seeds of W2/floor and of the energy distance, with the standard
error over seeds, for both loops.

    python benchmarks/toy_authors.py --only swissroll_s0 8gaussians_s0   # a subset
    python benchmarks/toy_authors.py --compare
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from harness.reference import authors_toy_2d_for, into_vector_map

from notpipe import toy
from notpipe.config import load_config, toy_experiments
from notpipe.io import atomic_path
from notpipe.paths import Layout

METRICS = ("w2_over_floor", "energy_distance", "w2_pushforward", "w2_noise_floor", "modes_covered",
           "cond_var", "train_seconds")


def run_authors(name: str, exp: dict, cfg: dict, out: str) -> dict:
    """Train with the authors' loop, evaluate with ours; write and return the metrics."""
    setup = toy.build(exp)  # our samplers (same seeds as our run) and an empty VectorMap
    m = exp["model"]
    if exp["cost"]["name"] != "weak" or exp["cost"].get("gamma") != 1.0 or len(m["hidden_t"]) != 3:
        raise ValueError(f"{name}: the authors' toy loop is weak cost, gamma 1, 3 hidden layers")
    gen = torch.Generator().manual_seed(int(exp["seed"]))
    t0 = time.perf_counter()
    T = authors_toy_2d_for(exp, setup.source, setup.target, generator=gen)
    seconds = time.perf_counter() - t0
    into_vector_map(T, setup.trainer.T)
    setup.trainer.T.eval()
    return _evaluate_into(setup, seconds, exp, cfg, out, f"{name}: authors' loop")


def run_last_iterate(name: str, exp: dict, cfg: dict, L: Layout) -> dict:
    """Our pipeline's run of ``name``, evaluated on its last iterate of T (not the average)."""
    setup, state = toy.load_trained(L.toy_model(name), exp, last_iterate=True)
    return _evaluate_into(setup, float(state["train_seconds"]), exp, cfg, L.last_iterate_metrics(name),
                          f"{name}: our last iterate")


def _evaluate_into(setup, seconds: float, exp: dict, cfg: dict, out: str, label: str) -> dict:
    t = cfg["toy"]
    values = toy.evaluate(setup, seconds, n_eval=t["n_eval"], z_eval=t["z_eval"], sinkhorn_eps=t["sinkhorn_eps"],
                          emd_max_iter=t["emd_max_iter"], seed=int(exp["seed"]), eval_draws=t["eval_draws"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".csv") as tmp:
        pd.DataFrame({"metric": list(values), "value": list(values.values())}).to_csv(tmp, index=False)
    print(f"{label} {seconds:.0f} s, W2/floor {values['w2_over_floor']:.3f} "
          f"± {values['w2_over_floor_std']:.3f}, energy {values['energy_distance']:.2e}", flush=True)
    return values


def compare(cfg: dict, L: Layout) -> pd.DataFrame:
    rows = []
    for name in toy_experiments(cfg):
        for loop, path in (("ours", L.toy_metrics(name)), ("ours_last", L.last_iterate_metrics(name)),
                           ("authors", L.authors_loop_metrics(name))):
            if not Path(path).is_file():
                print(f"missing {path}")
                continue
            m = pd.read_csv(path).set_index("metric")["value"]
            target = re.sub(r"_s\d+$", "", name)
            rows.append({"experiment": name, "target": target, "loop": loop,
                         **{k: m.get(k, np.nan) for k in METRICS},
                         **{f"{k}_std": m.get(f"{k}_std", np.nan) for k in ("w2_over_floor", "energy_distance")}})
    df = pd.DataFrame(rows)
    if df.empty:
        raise SystemExit("no metrics found: run the pipeline and this script first")
    with atomic_path(L.authors_comparison(), suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    print(f"wrote {L.authors_comparison()}")
    print(f"\n{'target':12s} {'loop':9s} {'seeds':>5s} {'W2/floor':>16s} {'energy x1e3':>16s} {'train s':>8s}")
    for (target, loop), d in df.groupby(["target", "loop"], sort=True):
        def ms(col, scale=1.0):
            v = scale * d[col].to_numpy(dtype=float)
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            return f"{v.mean():7.3f} ± {se:6.3f}"
        print(f"{target:12s} {loop:9s} {len(d):5d} {ms('w2_over_floor'):>16s} {ms('energy_distance', 1e3):>16s} "
              f"{d['train_seconds'].mean():8.0f}")
    print("± = standard error of the mean over seeds; per-seed values in the CSV "
          "(each the mean of eval_draws evaluation draws); ours: the moving average of T "
          "(ema_decay), ours_last: our last iterate")
    return df


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/authors_toy.yaml")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="experiments to run (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--compare", action="store_true", help="only join the results and print the comparison")
    ap.add_argument("--last-iterate", action="store_true",
                    help="evaluate our pipeline's last iterates instead of training the authors' loop")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    L = Layout.from_config(cfg)
    if args.compare:
        compare(cfg, L)
        return
    exps = toy_experiments(cfg)  # gamma sweeps expanded (circles_g0.5, ...)
    unknown = set(args.only or ()) - set(exps)
    if unknown:
        raise SystemExit(f"--only: no experiment {sorted(unknown)} in {args.config}; there are {sorted(exps)}")
    for name in args.only or exps:
        if args.last_iterate:
            run_last_iterate(name, exps[name], cfg, L)
        else:
            run_authors(name, exps[name], cfg, L.authors_loop_metrics(name))


if __name__ == "__main__":
    main()
