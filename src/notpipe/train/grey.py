"""Grey maps: T and f of a run with ``model.channels: 1`` work on one channel.

The image stores and everything around training (samplers, cost, grids, FID, LPIPS) stay
RGB. ``GreyMap`` feeds the mean of the three channels to a one-channel network and
replicates its one output channel three times, so T's outputs are grey by construction;
``GreyPotential`` scores the mean of the channels. For grey data sets stored as RGB
(MNIST, Fashion-MNIST, KMNIST) the mean is the image itself, and the cost of the replicated
images equals the one-channel cost at the ``mean`` scaling (both divide by the pixel count
times the channels). A three-channel T on grey data has two free channels that the potential
must learn to police: its colour casts cost FID (docs/experiments.md).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 1, H, W)``: the mean of the channels."""
    return x.mean(dim=1, keepdim=True)


class GreyMap(nn.Module):
    """A map on one channel seen from RGB: ``net(grey(x), z)`` replicated to three channels."""

    def __init__(self, net: nn.Module, out_channels: int = 3):
        super().__init__()
        self.net, self.out_channels = net, out_channels

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        y = self.net(to_grey(x)) if z is None else self.net(to_grey(x), z)
        return y.repeat(1, self.out_channels, 1, 1)


class GreyPotential(nn.Module):
    """A potential on one channel seen from RGB: ``net(grey(y))``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(to_grey(y))
