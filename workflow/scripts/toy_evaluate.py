r"""Evaluate a trained toy model against exact/entropic discrete OT; write metrics.csv
(columns metric,value) and samples.npz (arrays for the figures).

Command line: python workflow/scripts/toy_evaluate.py --model results/toy/toy/moons/model.pt \
    --metrics m.csv --samples s.npz [--n-eval 4096]
"""

import argparse
import logging

import numpy as np
import pandas as pd

from notpipe import toy
from notpipe.io import atomic_path
from notpipe.stage import entry

log = logging.getLogger("notpipe.toy_evaluate")


def main(model: str, metrics: str, samples: str, n_eval: int = 4096, n_plot: int = 1024,
         z_eval: int = 16, sinkhorn_eps: float = 0.05, emd_max_iter: int = 10_000_000,
         eval_draws: int = 5, exp: dict | None = None) -> None:
    """``exp``: the experiment block to evaluate; a model trained by another config is refused."""
    setup, state = toy.load_trained(model, expected=exp)
    seed = int(state["experiment"]["seed"])
    values = toy.evaluate(setup, state["train_seconds"], n_eval=n_eval, z_eval=z_eval,
                          sinkhorn_eps=sinkhorn_eps, emd_max_iter=emd_max_iter, seed=seed, eval_draws=eval_draws)
    with atomic_path(metrics, suffix=".csv") as tmp:
        pd.DataFrame({"metric": list(values), "value": list(values.values())}).to_csv(tmp, index=False)
    for k, v in values.items():
        log.info("%-18s %.6g", k, v)
    arrays = toy.plot_samples(setup, n_plot=n_plot, seed=seed, emd_max_iter=emd_max_iter)
    with atomic_path(samples, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--n-eval", dest="n_eval", type=int, default=4096)
    p.add_argument("--n-plot", dest="n_plot", type=int, default=1024)
    p.add_argument("--z-eval", dest="z_eval", type=int, default=16)
    p.add_argument("--sinkhorn-eps", dest="sinkhorn_eps", type=float, default=0.05)
    p.add_argument("--eval-draws", dest="eval_draws", type=int, default=5,
                   help="independent draws of the fidelity metrics (mean, std, 95%% interval)")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(
        model=s.input.model, metrics=s.output.metrics, samples=s.output.samples, exp=s.params.exp,
        **s.params.settings), smk)
