"""Paired restoration metrics (OTM's unpaired restoration, where each degraded test image's
original is known): PSNR and mean-squared error of ``T(degraded)`` against the original, and of
the degraded input itself, the figure a restoration must beat.

Images are compared on the [0, 1] intensity scale. PSNR is ``10 log10(1 / MSE)`` per image,
averaged over images (an identical pair is capped at :data:`PSNR_CAP` dB); MSE is the mean over
pixels and images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from notpipe.data.datasets import NOISE_SOURCE, dataset_dir

#: PSNR of an exact reconstruction (MSE 0), so a mean over images stays finite
PSNR_CAP = 100.0


def originals(run: dict, data_dir: str | Path) -> np.ndarray | None:
    """The clean originals of the source test split (uint8 NHWC, memory-mapped), when the source
    is a degraded half (``test_original`` in its manifest); else None."""
    if run["source"] == NOISE_SOURCE:
        return None
    d = dataset_dir(data_dir, run["source"], run["image_size"])
    files = json.loads((d / "manifest.json").read_text()).get("files", {})
    return np.load(d / files["test_original"], mmap_mode="r") if "test_original" in files else None


def unit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """float NCHW in [-1, 1] (a tensor, or an array: inputs degraded per batch) or uint8 NHWC
    -> float64 NCHW in [0, 1] (clamped)."""
    if isinstance(x, np.ndarray) and x.dtype != np.uint8:
        x = torch.from_numpy(x)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64) / 255.0).permute(0, 3, 1, 2)
    return ((x.detach().double().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)


def per_image_mse(a, b) -> torch.Tensor:
    """Mean squared error per image of two batches (either form :func:`unit` takes)."""
    return (unit(a) - unit(b)).pow(2).mean(dim=(1, 2, 3))


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of per-image MSEs on the [0, 1] scale (capped at :data:`PSNR_CAP`)."""
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-300)), torch.tensor(PSNR_CAP,
                                                                                        dtype=mse.dtype)).clamp(max=PSNR_CAP)


class PairedScore:
    """Accumulates per-image MSE and PSNR over batches; :meth:`result` gives their means."""

    def __init__(self):
        self.mse: list[torch.Tensor] = []

    def add(self, out, original) -> None:
        self.mse.append(per_image_mse(out, original))

    def result(self) -> dict:
        mse = torch.cat(self.mse)
        return {"mse": float(mse.mean()), "psnr": float(psnr(mse).mean()), "n": len(mse)}
