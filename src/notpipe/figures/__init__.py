"""Figures (workflow/rules/toy.smk and report.smk): style and canvas, the one loss figure,
toy figures, image figures.

Like POT's ``ot.plot``, this package is not imported by ``notpipe`` itself: it
selects matplotlib's Agg backend and applies the report style, so only figure
scripts pay for it. ``from notpipe.figures import toy, images, style``.
"""

from . import canvas, images, losses, style, toy  # noqa: F401  (submodules)
from .canvas import PNG_DPI, save_figure

__all__ = ["PNG_DPI", "canvas", "images", "losses", "save_figure", "style", "toy"]
