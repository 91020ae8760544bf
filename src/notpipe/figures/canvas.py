"""The canvas every figure is drawn on: matplotlib's Agg backend, the report style
(:mod:`notpipe.figures.style`), one way to save (``{stem}.pdf`` + ``{stem}.png``) and
the small axis helpers the toy and image figures share.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from . import style  # noqa: E402  (the report's one figure style)

style.apply()

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_DPI = 150


def save_figure(fig: plt.Figure, stem: str | Path) -> tuple[Path, Path]:
    """Write ``fig`` to ``{stem}.pdf`` and ``{stem}.png`` and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    stem : str or Path
        Output path without suffix; parent directories are created. The suffix
        is appended, not substituted, so stems containing dots (``g0.5``) are safe.

    Returns
    -------
    (Path, Path)
        The PDF and PNG paths.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = Path(f"{stem}.pdf"), Path(f"{stem}.png")
    try:
        # no creation date: re-running a rule gives the same bytes
        fig.savefig(pdf, metadata={"CreationDate": None})
        fig.savefig(png, dpi=PNG_DPI)
    finally:
        plt.close(fig)
    return pdf, png


def numeric(df: pd.DataFrame, col: str) -> np.ndarray | None:
    """Column as floats, or None when absent or entirely missing."""
    if col not in df:
        return None
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    return v if np.isfinite(v).any() else None


def step_axis(ax: plt.Axes) -> None:
    """x axis in f-steps, scientific notation past 10^5."""
    ax.set_xlabel("f-step")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5), useMathText=True)
