"""The one training-curve figure of the shared ``log.csv`` schema (toy and image runs):
``step``, ``loss_t``, ``loss_f``, ``cost``, ``gamma`` and, where logged, ``grad_norm_t`` /
``grad_norm_f``; other columns are ignored.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from notpipe.figures import style
from notpipe.figures.canvas import numeric, save_figure, step_axis

NEUTRAL = style.BLACK

def figure_losses(log: pd.DataFrame, title: str) -> plt.Figure:
    """T and f losses, the cost term (γ on a twin axis when it varies) and gradient norms."""
    log = log.sort_values("step")
    step = log["step"].to_numpy(dtype=float)
    gamma = numeric(log, "gamma")
    show_gamma = gamma is not None and not np.allclose(gamma[np.isfinite(gamma)],
                                                       gamma[np.isfinite(gamma)][0])
    norms = {k: v for k, v in (("T", numeric(log, "grad_norm_t")), ("f", numeric(log, "grad_norm_f")))
             if v is not None}
    spread = numeric(log, "spread")  # image runs: collapse detection (notpipe.train.collapse)
    n = 2 + bool(norms) + (spread is not None)
    fig, axes = plt.subplots(1, n, figsize=style.figsize("two", 0.3), sharex=True)

    ax = axes[0]
    for col, label, c in (("loss_t", "T loss", style.BLUE), ("loss_f", "f loss", style.ORANGE)):
        v = numeric(log, col)
        if v is not None:
            ax.plot(step, v, color=c, label=label)
    ax.axhline(0, color=NEUTRAL, lw=0.5, alpha=0.4)
    ax.set_ylabel("loss")
    ax.set_title("losses")
    ax.legend(loc="best")

    ax = axes[1]
    cost = numeric(log, "cost")
    if cost is not None:
        ax.plot(step, cost, color=style.GREEN, label="cost")
    ax.set_ylabel("mean $C(x, T(x, z))$")
    ax.set_title("cost term")
    if show_gamma:
        ax2 = ax.twinx()
        ax2.plot(step, gamma, color=style.PURPLE, ls="--", label="γ")
        ax2.set_ylabel("γ", color=style.PURPLE)
        ax2.tick_params(axis="y", colors=style.PURPLE)
        ax2.spines["right"].set_visible(True)
        ax2.spines["right"].set_color(style.PURPLE)
        ax2.grid(False)
        ax2.set_ylim(bottom=0)
        ax.set_title("cost term and γ")

    if norms:
        ax = axes[2]
        for (k, v), c in zip(norms.items(), (style.BLUE, style.ORANGE)):
            ok = np.isfinite(v) & (v > 0)
            ax.plot(step[ok], v[ok], color=c, label=f"‖∇{k}‖")
        ax.set_yscale("log")
        ax.set_ylabel("gradient norm")
        ax.set_title("gradient norms")
        ax.legend(loc="best")
    if spread is not None:
        ax = axes[-1]
        ax.plot(step, spread, color=style.BLUE, label="T outputs / targets")
        thr = numeric(log, "spread_threshold")
        if thr is not None and np.isfinite(thr).any():
            t = float(np.nanmax(thr))
            ax.axhline(t, color=style.ORANGE, ls="--", lw=1, label=f"collapse threshold {t:.2g}")
            low = np.isfinite(spread) & (spread < t)
            if low.any():
                first = step[low][0]
                ax.axvline(first, color=style.ORANGE, lw=1)
                title = f"{title} (possible collapse from f-step {first:.0f})"
        ax.set_ylim(bottom=0)
        ax.set_ylabel("mean pairwise distance, relative")
        ax.set_title("output spread")
        ax.legend(loc="best")
    for ax in axes:
        step_axis(ax)
    fig.suptitle(title)
    return fig


def plot_losses(log: pd.DataFrame, stem: str | Path, title: str) -> tuple[Path, Path]:
    """Write the training curves of a ``log.csv`` (see :func:`figure_losses`)."""
    return save_figure(figure_losses(log, title), stem)
