"""Noise of stochastic maps, shared by the toy and the image track.

``noise(n, generator, device) -> z``: :class:`GaussianNoise` draws vectors (toy
maps, and Kernel NOT's latent through conditional instance norm);
:class:`ImageNoise` draws per-pixel channels appended to T's image input.
"""

from __future__ import annotations

import torch


class GaussianNoise:
    """Noise sampler ``z ~ N(0, std^2 I)`` of shape ``(n, *shape)``."""

    def __init__(self, shape, std: float = 0.1):
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.std = float(std)

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        z = torch.randn(n, *self.shape, generator=generator)
        return (z * self.std).to(device, non_blocking=True)


class ImageNoise:
    """Per-pixel Gaussian noise channels ``z ~ N(0, std^2)`` of shape (n, channels, size, size).

    On a CUDA device z is drawn on the device from the global CUDA RNG (no host
    transfer; checkpoint that RNG state separately); on CPU from ``generator``.
    """

    def __init__(self, channels: int, size: int, std: float = 0.1):
        self.channels, self.size, self.std = int(channels), int(size), float(std)

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        device = torch.device(device)
        shape = (n, self.channels, self.size, self.size)
        if device.type == "cuda":
            return torch.randn(shape, device=device).mul_(self.std)
        return torch.randn(shape, generator=generator).mul_(self.std).to(device)
