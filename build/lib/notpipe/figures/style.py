"""The one figure style of the report: call :func:`apply` once before drawing.

Sizes are for a LaTeX article (``\\documentclass{article}``, 10 pt body): a
figure drawn at :data:`ONE_COLUMN` or :data:`TWO_COLUMN` inches and included at
its natural width shows 8–9 pt text. Colours are the Okabe–Ito palette
(distinguishable with the common colour-vision deficiencies) and are the
default colour cycle; figure code takes colours from :data:`PALETTE` only.
"""

from __future__ import annotations

import logging

import matplotlib
from cycler import cycler

#: figure widths in inches (one column of a two-column layout / full text width)
ONE_COLUMN = 3.4
TWO_COLUMN = 7.0

#: Okabe & Ito (2008), "Color Universal Design"; black last (reserved for references)
PALETTE = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow (weak on white: last of the colours)
    "#000000",  # black
]
BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION, YELLOW, BLACK = PALETTE

RC = {
    # vector output with embeddable TrueType (Type 42) fonts, not Type 3
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "savefig.format": "pdf",
    "savefig.bbox": None,  # constrained layout already fits; keeps the width as asked
    "savefig.pad_inches": 0.02,
    "figure.dpi": 100,
    "savefig.dpi": 300,  # raster parts of a PDF (image grids); save_figure gives PNGs their own
    # text sized for an article
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "mathtext.fontset": "dejavusans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 9,
    "figure.labelsize": 8,
    # layout
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.03,
    "figure.constrained_layout.w_pad": 0.03,
    "figure.figsize": (ONE_COLUMN, ONE_COLUMN * 0.62),
    # colours, lines, grid
    "axes.prop_cycle": cycler(color=PALETTE),
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "patch.linewidth": 0.6,
    "axes.grid": True,
    "grid.color": "0.88",
    "grid.linewidth": 0.5,
    "grid.linestyle": "-",
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "image.interpolation": "nearest",
    "image.cmap": "viridis",
}

_applied = False


def apply(force: bool = False) -> None:
    """Set the report's rcParams (once per process unless ``force``)."""
    global _applied
    if _applied and not force:
        return
    matplotlib.rcParams.update(RC)
    # Type 42 embedding subsets fonts with fontTools, which logs every glyph at INFO
    # into the rules' log files; its warnings still come through.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    _applied = True


def figsize(width: str | float = "one", aspect: float = 0.62) -> tuple[float, float]:
    """``(width, height)`` in inches: ``width`` is ``"one"``, ``"two"`` or inches; height = width * aspect."""
    if isinstance(width, str):
        try:
            w = {"one": ONE_COLUMN, "two": TWO_COLUMN}[width]
        except KeyError:
            raise ValueError(f"width must be 'one', 'two' or a number of inches, got {width!r}") from None
    else:
        w = float(width)
    return (w, w * aspect)
