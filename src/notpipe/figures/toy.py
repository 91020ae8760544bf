"""Figures for the toy stage: every function takes arrays (or a DataFrame) and a
path *stem*, writes ``{stem}.pdf`` and ``{stem}.png`` (150 dpi) and closes the figure.

Data with more than two coordinates are drawn in their first two coordinates
(axes ``x_1``, ``x_2``) and the title says so. The ``samples`` dicts are the
arrays of ``samples.npz`` written by ``notpipe.toy.plot_samples``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from notpipe.figures import style
from notpipe.figures.canvas import PNG_DPI, save_figure  # noqa: F401  (Agg backend and style first)
from notpipe.figures.losses import plot_losses  # noqa: F401  (plot_<kind> of toy_figure.py)
ALPHA = 0.4
MARKER = 4  # scatter marker area (points^2)
GREY = "0.8"
C_X, C_Y, C_T = style.BLUE, style.ORANGE, style.GREEN


# --------------------------------------------------------------------- helpers
def _dim(samples: dict) -> int:
    if "dim" in samples and np.ndim(samples["dim"]) == 0:
        return int(samples["dim"])
    return int(np.asarray(samples["x"]).shape[-1])


def _xy(a: np.ndarray) -> np.ndarray:
    """First two coordinates of ``(..., d)`` points (1-D data get a zero second axis)."""
    a = np.asarray(a, dtype=float)
    if a.shape[-1] >= 2:
        return a[..., :2]
    return np.concatenate([a, np.zeros_like(a)], axis=-1)


def _title(title: str, d: int) -> str:
    return f"{title} (first 2 of {d} coordinates)" if d > 2 else title


def _limits(*arrays: np.ndarray, margin: float = 0.05) -> tuple[tuple, tuple]:
    """Common (xlim, ylim) covering all points of ``arrays`` (already 2-D) plus a margin."""
    pts = np.concatenate([np.asarray(a).reshape(-1, 2) for a in arrays])
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = pts.min(0), pts.max(0)
    pad = np.maximum((hi - lo) * margin, 1e-3)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def _style(ax: plt.Axes, lims: tuple, title: str, d: int, legend: bool = True, **legend_kw) -> None:
    ax.set_xlim(*lims[0])
    ax.set_ylim(*lims[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x_1")
    ax.set_ylabel("x_2" if d >= 2 else "(1-D data)")
    ax.set_title(title, fontsize="medium")
    if legend:
        leg = ax.legend(**{"loc": "best", "fontsize": "small", "framealpha": 0.8, **legend_kw})
        for h in leg.legend_handles:  # legible markers whatever their size in the plot
            h.set_alpha(1)
            h.set_sizes([40])


def _points(ax: plt.Axes, a: np.ndarray, color, label: str | None, size: float = MARKER,
            alpha: float = ALPHA, **kw) -> None:
    ax.scatter(a[:, 0], a[:, 1], s=size, c=color, alpha=alpha, linewidths=0, label=label, **kw)


def _segments(ax: plt.Axes, start: np.ndarray, end: np.ndarray, color, widths=0.6,
              alpha: float = 0.5) -> None:
    segs = np.stack([start, end], axis=1)  # (n, 2 points, 2 coords)
    ax.add_collection(LineCollection(segs, colors=color, linewidths=widths, alpha=alpha, zorder=1))


# --------------------------------------------------------------------- figures
def plot_scatter(samples: dict, stem: str | Path, title: str) -> tuple[Path, Path]:
    """Input x, target y and push-forward T(x) side by side (shared limits).

    Parameters
    ----------
    samples : dict
        Needs ``x``, ``y``, ``tx`` of shape ``(n, d)``.
    stem : str or Path
        Output path without suffix.
    title : str
        Figure title.
    """
    d = _dim(samples)
    x, y, tx = (_xy(samples[k]) for k in ("x", "y", "tx"))
    lims = _limits(x, y, tx)
    fig, axes = plt.subplots(1, 3, figsize=style.figsize("two", 0.36), layout="constrained", sharex=True, sharey=True)
    _points(axes[0], x, C_X, "x ~ P")
    _style(axes[0], lims, "input x", d)
    _points(axes[1], y, C_Y, "y ~ Q")
    _style(axes[1], lims, "target y", d)
    _points(axes[2], y, GREY, "target y", alpha=0.6)
    _points(axes[2], tx, C_T, "T(x, z)")
    _style(axes[2], lims, "push-forward T(x)", d)
    fig.suptitle(_title(title, d))
    return save_figure(fig, stem)


def plot_transport(samples: dict, stem: str | Path, title: str,
                   plan_tol: float = 1e-8) -> tuple[Path, Path]:
    """One batch: the learned map x -> T(x) (NOT, or the WGAN-GP baseline) next to the exact discrete OT plan.

    Parameters
    ----------
    samples : dict
        Needs ``xb``, ``txb``, ``yb`` of shape ``(b, d)`` and ``plan`` of shape
        ``(b, b)`` (the POT emd plan between ``xb`` and ``yb``, rows summing to 1/b).
    stem : str or Path
        Output path without suffix.
    title : str
        Figure title.
    plan_tol : float
        Plan entries at or below this are not drawn.
    """
    d = _dim(samples)
    xb, txb, yb = (_xy(samples[k]) for k in ("xb", "txb", "yb"))
    plan = np.asarray(samples["plan"], dtype=float)
    lims = _limits(xb, txb, yb)
    fig, axes = plt.subplots(1, 2, figsize=style.figsize("two", 0.5), layout="constrained", sharex=True, sharey=True)

    ax = axes[0]
    _segments(ax, xb, txb, "0.4")
    _points(ax, xb, C_X, "x", size=14, alpha=0.8, zorder=2)
    _points(ax, txb, C_T, "T(x, z)", size=14, alpha=0.8, zorder=2)
    _style(ax, lims, "learned map T (NOT or a baseline)", d)

    ax = axes[1]
    i, j = np.nonzero(plan > plan_tol)
    widths = 1.2 * plan[i, j] * plan.shape[0]  # a full row of mass 1/b -> width 1.2
    _segments(ax, xb[i], yb[j], "0.4", widths=widths)
    _points(ax, xb, C_X, "x", size=14, alpha=0.8, zorder=2)
    _points(ax, yb, C_Y, "y", size=14, alpha=0.8, zorder=2)
    _style(ax, lims, "exact OT plan (POT emd)", d)

    fig.suptitle(_title(title, d))
    return save_figure(fig, stem)


def plot_one_to_many(samples: dict, stem: str | Path, title: str) -> tuple[Path, Path]:
    """Several draws T(x_k, z) for a few fixed inputs x_k, over the target in grey.

    Parameters
    ----------
    samples : dict
        Needs ``y`` ``(n, d)``, ``x_fixed`` ``(k, d)`` and ``ys_fixed`` ``(k, m, d)``
        (present only for stochastic maps).
    stem : str or Path
        Output path without suffix.
    title : str
        Figure title.

    Raises
    ------
    ValueError
        If ``samples`` has no ``x_fixed`` / ``ys_fixed`` (a deterministic map).
    """
    if "x_fixed" not in samples or "ys_fixed" not in samples:
        raise ValueError("one_to_many needs 'x_fixed' and 'ys_fixed' in samples "
                         "(only written for stochastic maps, i.e. with noise z)")
    d = _dim(samples)
    y, xf, ysf = _xy(samples["y"]), _xy(samples["x_fixed"]), _xy(samples["ys_fixed"])
    lims = _limits(y, xf, ysf)
    fig, ax = plt.subplots(figsize=style.figsize("one", 0.75), layout="constrained")
    _points(ax, y, GREY, "target y", alpha=0.6)
    colors = plt.get_cmap("tab10").colors
    for k in range(len(xf)):
        c = colors[k % len(colors)]
        draws = ysf[k]
        _segments(ax, np.broadcast_to(xf[k], draws.shape), draws, [c], widths=0.5, alpha=0.15)
        _points(ax, draws, [c], None, size=10, alpha=0.7, zorder=2)
        ax.scatter(*xf[k], s=180, marker="*", c=[c], edgecolors="k", linewidths=0.8, zorder=3,
                   label=f"x_{k + 1}, {draws.shape[0]} draws T(x_{k + 1}, z)")
    _style(ax, lims, "fixed inputs (stars) and their draws", d, loc="upper left",
           bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.suptitle(_title(title, d))
    return save_figure(fig, stem)


def _gamma_scale(ax: plt.Axes, g: np.ndarray) -> None:
    """Log x axis when the gammas span a decade or more (symlog if one is 0).

    On a log axis the swept values themselves are the ticks (when there are few).
    """
    pos = g[g > 0]
    if len(pos) < 2 or pos.max() / pos.min() < 10 or (g < 0).any():
        return
    if (g == 0).any():
        ax.set_xscale("symlog", linthresh=pos.min(), linscale=0.5)
        ax.set_xlim(-0.15 * pos.min(), pos.max() * 1.5)
    else:
        ax.set_xscale("log")
        ax.set_xlim(pos.min() / 1.5, pos.max() * 1.5)
    if len(g) <= 8:
        ax.set_xticks(g, [f"{v:g}" for v in g])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot_gamma_sweep(df: pd.DataFrame, stem: str | Path, title: str) -> tuple[Path, Path]:
    """Modes covered and conditional variance against gamma (one point per run).

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``gamma``, ``modes_covered`` (a fraction in [0, 1]) and ``cond_var``;
        rows in any order, rows with a missing gamma are dropped.
    stem : str or Path
        Output path without suffix.
    title : str
        Figure title.
    """
    df = df.dropna(subset=["gamma"]).sort_values("gamma")
    g = df["gamma"].to_numpy(dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=style.figsize("two", 0.4), layout="constrained", sharex=True)

    ax = axes[0]
    ax.plot(g, df["modes_covered"], "o-", color=C_T, ms=5, lw=1.2)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of modes covered")
    ax.set_title("modes covered", fontsize="medium")

    ax = axes[1]
    ax.plot(g, df["cond_var"], "s-", color="tab:purple", ms=5, lw=1.2)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("E_x tr Cov_z[T(x, z)]")
    ax.set_title("conditional variance", fontsize="medium")

    for ax in axes:
        _gamma_scale(ax, g)
        ax.set_xlabel("gamma")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, stem)


#: the lines of the L2-UVP figure: summary column, label, colour, marker
UVP_LINES = [("l2_uvp", "NOT", style.GREEN, "o"), ("l2_uvp_discrete", "discrete barycentric", style.BLUE, "s"),
             ("l2_uvp_linear", "linear map fitted on samples", style.ORANGE, "^"),
             ("l2_uvp_identity", "identity", style.BLACK, "x")]


def uvp_lines(summary: pd.DataFrame) -> dict[str, tuple]:
    """``{label: (dims, L2-UVP, colour, marker)}`` of the figure's lines. Rows of one D are averaged
    per method: the WGAN-GP baseline's rows (``method`` column) are a line of their own, never
    averaged into NOT's or the baselines'."""
    df = summary.dropna(subset=["l2_uvp"]) if "l2_uvp" in summary else summary.iloc[:0]
    if df.empty or "dim" not in df:
        raise ValueError("no Gaussian pair with l2_uvp and dim in the summary")
    method = df["method"] if "method" in df else pd.Series("NOT", index=df.index)
    by_dim = df[method != "WGAN-GP"].groupby("dim").mean(numeric_only=True).sort_index()
    wgan = df[method == "WGAN-GP"].groupby("dim").mean(numeric_only=True).sort_index()
    out = {label: (by_dim.index.to_numpy(dtype=float), by_dim[col].to_numpy(), color, marker)
           for col, label, color, marker in UVP_LINES if col in by_dim and by_dim[col].notna().any()}
    if len(wgan):
        out["WGAN-GP"] = (wgan.index.to_numpy(dtype=float), wgan["l2_uvp"].to_numpy(), style.VERMILLION, "D")
    return out


def plot_l2_uvp_dim(summary: pd.DataFrame, stem: str | Path, title: str,
                    targets: tuple[float, ...] = (1.0, 2.0)) -> tuple[Path, Path]:
    """L2-UVP (%) of each map against the dimension D of the Gaussian pairs (log-log).

    ``summary``: the toy summary; rows without ``l2_uvp`` (not Gaussian pairs) are
    dropped, several rows of one D are averaged. Dotted lines: the 1 % and 2 % levels (``targets``).
    """
    lines = uvp_lines(summary)
    fig, ax = plt.subplots(figsize=style.figsize("one", 1.0), layout="constrained")
    for label, (dims, values, color, marker) in lines.items():
        ax.plot(dims, values, marker=marker, color=color, label=label, lw=1.2, ms=5)
    d = np.unique(np.concatenate([v[0] for v in lines.values()]))
    for t in targets:
        ax.axhline(t, color="0.5", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(d, [f"{int(v)}" for v in d])
    ax.set_xlabel("dimension D")
    ax.set_ylabel("L2-UVP (%)")
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")  # below the axes: no line hidden
    fig.suptitle(title)
    return save_figure(fig, stem)
