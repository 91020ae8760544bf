"""OTM's generation source: low-dimensional Gaussian noise embedded into image space.

``z ~ N(0, std^2)`` of shape ``[C, H, W]`` (OTM: ``[3, 8, 8]``) and ``Q(z)``, its bicubic
upsampling by an integer factor to the image size (OTM's fixed embedding). The map is then
trained with the strong cost ``1/2 |Q(z) - T(Q(z))|^2`` as between two image sets: the source
sampler returns ``Q(z)`` batches, drawn on the fly (no data set to prepare).

:class:`NoiseSampler` is a trainer sampler ``(n, generator[, rows]) -> tensor`` (its draws come
from the trainer's generator, so a resumed run sees the same noise). :class:`NoiseInputs` stands
in for a source *test split*: a fixed, seeded set of inputs, sliced like the uint8 arrays of
real data sets but holding float ``Q(z)`` (NCHW), which :func:`~notpipe.data.loader.to_float`
passes through unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def embed(z: torch.Tensor, upsample: int) -> torch.Tensor:
    """``Q(z)``: bicubic upsampling of ``(N, C, H, W)`` noise by ``upsample``."""
    if upsample == 1:
        return z
    return F.interpolate(z, scale_factor=upsample, mode="bicubic", align_corners=False)


class NoiseSampler:
    """Batches of ``Q(z)`` on ``device`` (``noise`` is a run's validated ``noise`` block)."""

    #: the trainer may ask for some rows of a draw only (a data-parallel rank's slice)
    takes_rows = True

    def __init__(self, noise: dict, device: str | torch.device = "cpu", channels_last: bool = False):
        self.shape = tuple(int(v) for v in noise["shape"])
        self.upsample, self.std = int(noise["upsample"]), float(noise.get("std", 1.0))
        self.device = torch.device(device)
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format

    def latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws of z (CPU), the only use of ``generator``."""
        return torch.randn((n,) + self.shape, generator=generator).mul_(self.std)

    def __call__(self, n: int, generator: torch.Generator, rows: np.ndarray | None = None) -> torch.Tensor:
        z = self.latent(n, generator)
        if rows is not None:
            z = z[torch.as_tensor(rows)]
        return embed(z.to(self.device), self.upsample).contiguous(memory_format=self.fmt)


class NoiseInputs:
    """``n`` fixed inputs ``Q(z_i)`` (seeded): the test split of a generation run.

    Slicing gives float32 NCHW numpy arrays; the small ``z`` are kept, ``Q(z)`` is made per slice.
    """

    def __init__(self, noise: dict, n: int, seed: int):
        self.upsample = int(noise["upsample"])
        g = torch.Generator().manual_seed(int(seed))
        self.z = torch.randn((int(n),) + tuple(int(v) for v in noise["shape"]), generator=g).mul_(
            float(noise.get("std", 1.0)))

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, key) -> np.ndarray:
        z = self.z[key]
        if z.ndim == 3:  # a single index
            return embed(z[None], self.upsample)[0].numpy()
        return embed(z, self.upsample).numpy()

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
