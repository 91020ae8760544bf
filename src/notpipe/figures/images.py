"""Figures of the image stage, in the report's one style (:mod:`notpipe.figures.style`).

Every ``plot_<kind>`` writes ``{stem}.pdf`` and ``{stem}.png`` through
:func:`notpipe.figures.toy.save_figure` and returns the two paths. Each is
``save_figure(figure_<kind>(...), stem)``: the ``figure_<kind>`` builders return
the open :class:`~matplotlib.figure.Figure` so that tests (or a notebook) can
inspect labels before anything is written.

Inputs are the stage's own files: ``log.csv`` of a training run, ``curve.csv``,
``baselines.csv`` and ``summary.csv`` of the evaluation. Optional columns (KID, LPIPS, gradient
norms, ``fid_std``, published numbers) are used when present and skipped when
absent or empty. FIDs from the random-weight smoke extractor are labelled as
such on the axis and in the title, so they never read as real FIDs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from notpipe.figures import style
from notpipe.figures.canvas import PNG_DPI, numeric, save_figure, step_axis  # Agg backend, style
from notpipe.figures.losses import figure_losses, plot_losses  # noqa: F401  (plot_<kind> of image_figure.py)

FID_LABEL = "FID"
#: the axis label of smoke FIDs (a line break after "smoke:" so that it fits a short panel)
SMOKE_FID_LABEL = "FID (smoke:\nrandom-weight Inception)"
SMOKE_SUFFIX = " [smoke]"
COST_LABEL = "transport cost\nmean $(x - T(x))^2$ per pixel"
NEUTRAL = style.BLACK
#: colour of each cost type; other names take the next free palette colours
COST_COLORS = {"strong": style.BLUE, "weak": style.ORANGE, "kernel": style.GREEN}


# --------------------------------------------------------------------- helpers
def is_smoke(df: pd.DataFrame) -> bool:
    """True when any row has a true ``smoke`` flag (bools, 0/1 or "True"/"False" strings)."""
    if "smoke" not in df or df.empty:
        return False
    s = df["smoke"]
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return bool(s.fillna(0).astype(bool).any())
    return bool(s.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"]).any())


def _title(title: str, smoke: bool) -> str:
    return f"{title}{SMOKE_SUFFIX}" if smoke and not title.endswith(SMOKE_SUFFIX) else title


def _cost_colors(costs) -> dict:
    spare = [c for c in style.PALETTE[:-1] if c not in COST_COLORS.values()]
    out, extra = {}, 0
    for c in dict.fromkeys(costs):  # first-seen order
        if c in COST_COLORS:
            out[c] = COST_COLORS[c]
        else:
            out[c], extra = spare[extra % len(spare)], extra + 1
    return out


# --------------------------------------------------------------------- grid
def tile(grid_rows: list[np.ndarray], gutter: int = 1, fill: int = 255) -> np.ndarray:
    """One uint8 ``(H', W', C)`` mosaic of equally shaped NHWC rows, ``gutter`` px of ``fill`` between tiles."""
    if not grid_rows:
        raise ValueError("grid needs at least one row of images")
    rows = [np.asarray(r) for r in grid_rows]
    rows = [r[..., None] if r.ndim == 3 else r for r in rows]  # NHW -> NHW1
    shape = rows[0].shape
    for i, r in enumerate(rows):
        if r.ndim != 4 or r.shape != shape:
            raise ValueError(f"grid row {i} has shape {r.shape}; every row must be (N, H, W, C) = {shape}")
        if r.dtype != np.uint8:
            raise ValueError(f"grid row {i} is {r.dtype}; expected uint8 images")
    n, h, w, c = shape
    out = np.full((len(rows) * (h + gutter) - gutter, n * (w + gutter) - gutter, c), fill, np.uint8)
    for i, r in enumerate(rows):
        for j in range(n):
            out[i * (h + gutter): i * (h + gutter) + h, j * (w + gutter): j * (w + gutter) + w] = r[j]
    return out


def grid_labels(n_rows: int) -> list[str]:
    """``input`` then ``T(x)`` (one output row) or ``T(x, z_1)`` ... (several draws)."""
    if n_rows < 2:
        return ["input"][:n_rows]
    if n_rows == 2:
        return ["input", "T(x)"]
    return ["input"] + [f"T(x, z$_{j}$)" for j in range(1, n_rows)]


def grid_gutter(n: int, w: int, width_px: float, min_px: float = 1.2) -> int:
    """Gutter (mosaic pixels) between ``n`` tiles ``w`` wide: 1, or more when the mosaic is
    shrunk to ``width_px`` device pixels so much that a 1-px gutter would vanish."""
    g = 1
    while g < w and width_px / (n * (w + g) - g) * g < min_px:
        g += 1
    return g


def figure_grid(grid_rows: list[np.ndarray], row_labels: list[str], title: str) -> plt.Figure:
    """Test inputs (row 0) and their images under T, one labelled row each, full text width.

    One ``imshow`` of the mosaic of :func:`tile`, white gutters of 1 px (wider only if
    the PNG would otherwise drop them), nearest-neighbour resampling (no blur).
    """
    if len(row_labels) != len(grid_rows):
        raise ValueError(f"{len(grid_rows)} grid rows but {len(row_labels)} row labels")
    if not grid_rows:
        raise ValueError("grid needs at least one row of images")
    n, th, tw = np.asarray(grid_rows[0]).shape[:3]
    label_in, title_in = 0.75, (0.3 if title else 0.05)
    width = style.TWO_COLUMN
    g = grid_gutter(n, tw, (width - label_in) * PNG_DPI)
    mosaic = tile(grid_rows, gutter=g)
    h, w = mosaic.shape[:2]
    height = min((width - label_in) * h / w + title_in, 9.0)
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest", aspect="equal")
    ax.set_yticks([i * (th + g) + (th - 1) / 2 for i in range(len(grid_rows))], row_labels)
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0, pad=4)
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_grid(grid_rows: list[np.ndarray], row_labels: list[str], stem: str | Path,
              title: str) -> tuple[Path, Path]:
    """Write the image grid of :func:`figure_grid` (rows of uint8 NHWC images, same shape)."""
    return save_figure(figure_grid(grid_rows, row_labels, title), stem)


# --------------------------------------------------------------------- FID curve
#: the reference lines of the FID panel: baselines.csv ``map`` -> (label, dash pattern)
BASELINES = {"identity": ("identity map (source inputs)", (0, (5, 2))),
             "target_halves": ("floor (target halves)", (0, (1.2, 1.6)))}


def fid_baselines(baselines: pd.DataFrame | None) -> list[dict]:
    """The FID rows of a ``baselines.csv`` to draw: ``{"map", "run", "value", "label", "dash"}`` each,
    identity map first, then the floor; rows with no finite value are left out."""
    if baselines is None or baselines.empty or not {"metric", "map", "value"} <= set(baselines):
        return []
    rows = baselines[baselines["metric"] == "fid"]
    runs = list(dict.fromkeys(rows["run"])) if "run" in rows else [None]
    out = []
    for mapname, (label, dash) in BASELINES.items():
        for _, r in rows[rows["map"] == mapname].iterrows():
            value = pd.to_numeric(r["value"], errors="coerce")
            if not np.isfinite(value):
                continue
            run = r.get("run")
            out.append({"map": mapname, "run": run, "value": float(value), "dash": dash,
                        "label": f"{label}{f', {run}' if len(runs) > 1 else ''}: {value:.4g}"})
    return out


def figure_fid_curve(curve: pd.DataFrame, title: str, baselines: pd.DataFrame | None = None) -> plt.Figure:
    """FID and transport cost against the f-step of each evaluated snapshot (one line per run).

    ``baselines``: the run's ``baselines.csv``; the FID of the identity map and the floor (two halves
    of the target reference) are then drawn as labelled horizontal black lines on the FID panel, and
    whether the FID is smoke is read from its FID rows (the FID extractor's own flag; ``curve.csv``'s
    ``smoke`` is true when any metric, LPIPS too, used random weights).
    """
    refs = fid_baselines(baselines)
    fid_rows = None if baselines is None or "metric" not in baselines else baselines[baselines["metric"] == "fid"]
    smoke = is_smoke(fid_rows) if fid_rows is not None and len(fid_rows) else is_smoke(curve)
    curve = curve.sort_values("step")
    runs = list(dict.fromkeys(curve["run"])) if "run" in curve else [None]
    fig, axes = plt.subplots(1, 2, figsize=style.figsize("two", 0.32), sharex=True)
    for (col, ylabel, ax) in (("fid", SMOKE_FID_LABEL if smoke else FID_LABEL, axes[0]),
                              ("transport_cost", COST_LABEL, axes[1])):
        for i, r in enumerate(runs):
            d = curve if r is None else curve[curve["run"] == r]
            v = numeric(d, col)
            if v is None:
                continue
            ok = np.isfinite(v)
            ax.plot(d["step"].to_numpy(dtype=float)[ok], v[ok], "o-",
                    color=style.PALETTE[i % (len(style.PALETTE) - 1)], label=r)
        ax.set_ylabel(ylabel)
        step_axis(ax)
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {col} values", transform=ax.transAxes, ha="center", va="center")
    for ref in refs:
        axes[0].axhline(ref["value"], color=NEUTRAL, ls=ref["dash"], lw=0.9, label=ref["label"])
    axes[0].set_title("FID" + (" (smoke)" if smoke else "") + " vs. training")
    axes[1].set_title("transport cost vs. training")
    if (len(runs) > 1 or refs) and axes[0].lines:
        axes[0].legend(loc="best", fontsize=6.5)
    fig.suptitle(_title(title, smoke))
    return fig


def plot_fid_curve(curve: pd.DataFrame, stem: str | Path, title: str,
                   baselines: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write FID / transport cost against the f-step from a ``curve.csv`` (and the run's ``baselines.csv``)."""
    return save_figure(figure_fid_curve(curve, title, baselines), stem)


# --------------------------------------------------------------------- trade-off
PUBLISHED_LABEL = "published (authors' notebooks, {px})"
#: dash patterns of the reference lines (colour = cost type, pattern = task)
DASHES = [(4, 2), (1.2, 1.2), (6, 1.5, 1.2, 1.5), (2.5, 1.2), (8, 2)]


def _published(summary: pd.DataFrame) -> list[dict]:
    """Distinct published NOT references of the non-smoke rows.

    Each is ``{"fid", "px", "cost", "task", "label"}``; ``label`` is
    ``published (authors' notebooks, {px})``, followed by ``: NOT {cost}, {task}``
    when there is more than one reference.
    """
    fid = numeric(summary, "published_fid")
    if fid is None:
        return []
    refs: dict[tuple, dict] = {}
    for i, v in enumerate(fid):
        row = summary.iloc[[i]]
        if not np.isfinite(v) or is_smoke(row):
            continue
        size = numeric(row, "published_image_size")
        px = f"{int(size[0])} px" if size is not None else "size unknown"
        cost = _costs(row)[0]
        task = f"{row['source'].iloc[0]}→{row['target'].iloc[0]}" if {"source", "target"} <= set(row) else ""
        key = (round(float(v), 6), px, cost, task)
        refs.setdefault(key, {"fid": float(v), "px": px, "cost": cost, "task": task})
    out = list(refs.values())
    for r in out:
        r["label"] = PUBLISHED_LABEL.format(px=r["px"])
        if len(out) > 1:  # say which reference is which
            r["label"] += f": NOT {r['cost']}" + (f", {r['task']}" if r["task"] else "")
    return out


def _costs(df: pd.DataFrame) -> list[str]:
    return df["cost"].fillna("?").astype(str).tolist() if "cost" in df else ["?"] * len(df)


def figure_tradeoff(summary: pd.DataFrame, title: str) -> plt.Figure:
    """FID against transport cost, one point per run, coloured by cost type, with references.

    Error bars are ``fid_std`` (when present); published NOT FIDs are dashed horizontal
    lines in the colour of their cost type (one dash pattern per task). With smoke
    numbers no reference is drawn and the axis and title say "smoke".
    """
    smoke = is_smoke(summary)
    fig, ax = plt.subplots(figsize=style.figsize("two", 0.42))
    fid, tc = numeric(summary, "fid"), numeric(summary, "transport_cost")
    std = numeric(summary, "fid_std")
    costs = _costs(summary)
    colors = _cost_colors(costs)
    names = summary["run"].astype(str).tolist() if "run" in summary else [""] * len(summary)
    cost_handles = []
    if fid is not None and tc is not None:
        for cost in colors:
            m = np.array([c == cost for c in costs]) & np.isfinite(fid) & np.isfinite(tc)
            if not m.any():
                continue
            yerr = None if std is None else np.where(np.isfinite(std[m]), std[m], 0.0)
            cost_handles.append(ax.errorbar(tc[m], fid[m], yerr=yerr, fmt="o", color=colors[cost], ms=4,
                                            capsize=2, elinewidth=0.8, label=f"{cost} cost"))
        for x, y, name in zip(tc, fid, names):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6.5)
    else:
        ax.text(0.5, 0.5, "no FID / transport cost values", transform=ax.transAxes, ha="center")

    refs = [] if smoke else _published(summary)
    tasks = list(dict.fromkeys(r["task"] for r in refs))
    ref_handles, ref_short = [], []
    for r in refs:
        dash = DASHES[tasks.index(r["task"]) % len(DASHES)]
        ref_handles.append(ax.axhline(r["fid"], color=colors.get(r["cost"], NEUTRAL), ls=(0, dash), lw=0.9,
                                      label=r["label"]))
        ref_short.append(", ".join(x for x in (f"NOT {r['cost']}", r["task"]) if x))

    ax.set_xlabel(COST_LABEL)
    ax.set_ylabel(SMOKE_FID_LABEL if smoke else FID_LABEL)
    ax.margins(x=0.12, y=0.12)  # room for the run names
    if len(cost_handles) > 1:  # outside: annotations would hide under an inner legend
        fig.legend(handles=cost_handles, loc="outside right upper", title="cost type")
    if len(refs) == 1:
        fig.legend(handles=ref_handles, loc="outside lower center")
    elif refs:
        pxs = {r["px"] for r in refs}
        if len(pxs) == 1:  # the shared part of the labels heads the legend
            head = PUBLISHED_LABEL.format(px=pxs.pop())
        else:
            head = "published (authors' notebooks)"
            ref_short = [f"{short}, {r['px']}" for short, r in zip(ref_short, refs)]
        fig.legend(ref_handles, ref_short, loc="outside lower center", title=head,
                   ncols=2 if len(refs) > 2 else 1)
    fig.suptitle(_title(title, smoke))
    return fig


def plot_tradeoff(summary: pd.DataFrame, stem: str | Path, title: str) -> tuple[Path, Path]:
    """Write FID vs. transport cost per run from ``results/eval/summary.csv``."""
    return save_figure(figure_tradeoff(summary, title), stem)


# --------------------------------------------------------------------- throughput
def throughput_table(logs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run: median ``images_per_s`` and ``steps_per_s`` (first row dropped as warm-up
    when a log has at least 3 rows) and the number of rows used."""
    rows = []
    for name, log in logs.items():
        log = log.sort_values("step") if "step" in log else log
        used = log.iloc[1:] if len(log) >= 3 else log
        med = {}
        for col in ("images_per_s", "steps_per_s"):
            v = numeric(used, col)
            med[col] = float(np.nanmedian(v)) if v is not None else np.nan
        rows.append({"run": name, **med, "rows": len(used)})
    return pd.DataFrame(rows, columns=["run", "images_per_s", "steps_per_s", "rows"])


def figure_throughput(logs: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Horizontal bars of the median training throughput per run, f-steps/s at the bar end."""
    t = throughput_table(logs)
    use_images = t["images_per_s"].notna().any()
    col = "images_per_s" if use_images else "steps_per_s"
    fig, ax = plt.subplots(figsize=(style.ONE_COLUMN, 0.75 + 0.28 * max(len(t), 1)))
    y = np.arange(len(t))[::-1]  # first run on top
    vals = t[col].fillna(0).to_numpy()
    ax.barh(y, vals, height=0.6, color=style.BLUE)
    ax.set_yticks(y, t["run"])
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="y", visible=False)
    xmax = float(np.nanmax(vals)) if len(vals) and np.nanmax(vals) > 0 else 1.0
    for yi, (_, r) in zip(y, t.iterrows()):
        if pd.isna(r[col]):
            text = "n/a"
        elif use_images and pd.notna(r["steps_per_s"]):
            text = f"{r['steps_per_s']:.3g} f-steps/s"
        else:
            text = ""
        if text:
            ax.text(r[col] if pd.notna(r[col]) else 0, yi, " " + text, va="center", ha="left",
                    fontsize=6.5)
    ax.set_xlim(0, xmax * 1.35)  # room for the f-steps/s text
    ax.set_xlabel("images through T per second (median)" if use_images else "f-steps per second (median)")
    ax.set_ylabel("run")
    fig.suptitle(title)
    return fig


def plot_throughput(logs: dict[str, pd.DataFrame], stem: str | Path, title: str) -> tuple[Path, Path]:
    """Write the throughput bars of several runs' ``log.csv`` (``{run: DataFrame}``)."""
    return save_figure(figure_throughput(logs, title), stem)
