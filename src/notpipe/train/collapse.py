"""Collapse detection: does T still tell its inputs apart?

At every log step the image trainer pushes a fixed set of distinct test inputs
through T (eval mode, fixed z) and measures the spread of the outputs: the mean
pairwise distance between them, relative to the same quantity for as many target
test images. A map that sends every input to (nearly) one image has a spread
near 0; the identity or a good map has one near 1. Below
``logging.collapse_threshold`` the log warns, naming the step (seed 001 saw NOT
collapse after about 13k f-steps), and the loss figure marks it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from notpipe.data.loader import to_float

log = logging.getLogger(__name__)


def spread(y: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the rows of ``y`` (each flattened)."""
    flat = y.detach().flatten(1).double().cpu()
    return float(torch.pdist(flat).mean()) if len(flat) > 1 else 0.0


class CollapseMonitor:
    """``row["spread"]``: spread of T over ``n`` fixed test inputs / spread of ``n`` targets."""

    def __init__(self, trainer, source_test: np.ndarray, target_test: np.ndarray, threshold: float,
                 name: str, n: int = 64, seed: int = 0):
        n = min(n, len(source_test), len(target_test))
        self.trainer, self.threshold, self.name, self.seed = trainer, float(threshold), name, int(seed)
        self.x = to_float(torch.from_numpy(np.array(source_test[:n]))).to(trainer.device)
        self.reference = spread(to_float(torch.from_numpy(np.array(target_test[:n]))))
        self.warned_at: int | None = None

    def __call__(self, row: dict) -> float:
        ys = self.trainer.infer(self.x, 1, torch.Generator().manual_seed(self.seed))[:, 0]
        rel = spread(ys) / max(self.reference, 1e-12)
        row["spread"], row["spread_threshold"] = rel, self.threshold
        if rel < self.threshold:
            if self.warned_at is None:
                self.warned_at = int(row["step"])
            log.warning("%s: possible collapse at f-step %d: the outputs' spread is %.3f of the targets' "
                        "(< logging.collapse_threshold %.2f); T maps distinct inputs to nearly the same image",
                        self.name, row["step"], rel, self.threshold)
        return rel
