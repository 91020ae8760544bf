"""Optional run tracking: TensorBoard events of an image run (``logging: {tensorboard: true}``).

A :class:`Tracker` writes to ``<train dir>/tb/`` with
``torch.utils.tensorboard.SummaryWriter``: the training log rows (``train/<key>``), the
sample grids (``grid``) and the evaluation metrics of each snapshot (``eval/<metric>``,
``eval/<map>/<metric>`` for maps other than T). Disabled, or on a rank other than 0 of a
data-parallel run, every method does nothing. ``tensorboard`` is an optional extra
(``pip install -e ".[tb]"``); tracking never changes the trajectory (not in the fingerprint).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from notpipe.train import distributed

#: the folder of a run's event files, inside its train directory
TB_DIR = "tb"


class TrackingUnavailable(ImportError):
    """``logging.tensorboard: true`` without the tensorboard package (one-line message)."""

    one_line = True  # stage.entry prints it without a traceback


def enabled(run: dict) -> bool:
    """Whether a run block asks for TensorBoard events."""
    return bool((run.get("logging") or {}).get("tensorboard", False))


class Tracker:
    """TensorBoard writer of one run, a no-op when disabled or not on rank 0."""

    def __init__(self, log_dir: str | Path, tensorboard: bool = False):
        self.log_dir = Path(log_dir)
        self.writer = None
        if not tensorboard:
            return
        try:  # on every rank, so that all of a data-parallel run fail alike
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrackingUnavailable(
                'logging.tensorboard: true needs the tensorboard package: pip install -e ".[tb]"') from None
        if not distributed.is_main():
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    @classmethod
    def for_run(cls, run: dict, train_dir: str | Path) -> "Tracker":
        """The tracker of a run block whose train directory is ``train_dir`` (events in ``tb/``)."""
        return cls(Path(train_dir) / TB_DIR, enabled(run))

    @property
    def active(self) -> bool:
        return self.writer is not None

    def scalars(self, step: int, row: dict, prefix: str = "train/") -> None:
        """Every numeric value of a log row (``step`` is the x axis, not a scalar)."""
        if self.writer is None:
            return
        for key, val in row.items():
            if key == "step" or isinstance(val, bool) or not isinstance(val, (int, float, np.number)):
                continue
            self.writer.add_scalar(f"{prefix}{key}", float(val), int(step))
        self.writer.flush()

    def image(self, step: int, img: str | Path | np.ndarray, tag: str = "grid") -> None:
        """A sample grid: a PNG path or a uint8 HWC array."""
        if self.writer is None:
            return
        if not isinstance(img, np.ndarray):
            from PIL import Image

            with Image.open(img) as im:
                img = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, np.ascontiguousarray(img), int(step), dataformats="HWC")
        self.writer.flush()

    def eval_metrics(self, step: int, metrics: dict) -> None:
        """Evaluation metrics of one snapshot: ``{"fid": 12.3, "identity/attr_color": 0.4, ...}``."""
        self.scalars(step, {k: v for k, v in metrics.items() if not _nan(v)}, prefix="eval/")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _nan(v) -> bool:
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def metrics_of(df) -> dict:
    """The scalar metrics of an evaluation frame (long format: ``metric``, ``map``, ``value``):
    ``{metric: value}`` for the map T, ``{"<map>/<metric>": value}`` for the others."""
    out = {}
    for r in df.itertuples(index=False):
        try:
            val = float(r.value)
        except (TypeError, ValueError):
            continue
        out[r.metric if r.map == "T" else f"{r.map}/{r.metric}"] = val
    return out
