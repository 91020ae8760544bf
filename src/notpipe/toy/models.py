"""Networks for NOT: MLP maps and potentials for vectors, and noise for stochastic maps.

Models take tensors, not config: ``T(x)`` for deterministic maps, ``T(x, z)``
for stochastic ones (z concatenated to the input); ``f(y)`` returns ``(B,)``.
Image models (U-Net T, ResNet f) come with the image training stage and follow
the same call convention.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    """Fully connected ReLU network ``in_dim -> hidden... -> out_dim``.

    The forward pass calls ``F.linear`` directly instead of an ``nn.Sequential``
    of modules: the toys are overhead-bound on CPU, and this saves a module call
    per layer.

    ``init="kaiming"`` (the default) draws every weight, the last layer's too, from
    Kaiming-normal (fan_in, ReLU gain), biases staying at PyTorch's default, exactly as
    the authors' ``weights_init_mlp``. PyTorch's default (``init="default"``) has a
    weight std sqrt(6) times smaller: each ReLU layer then shrinks the signal about
    six-fold, and a 3x100 T starts as an almost constant map that barely depends on z
    (measured: std over x of E_z T 0.015 against 0.4-0.5 with Kaiming; docs/notes/2026-12-02-toy-vs-authors.md).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden=(100, 100), init: str = "kaiming"):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        if init == "kaiming":
            for layer in self.layers:
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        elif init != "default":
            raise ValueError(f"unknown init {init!r}; allowed: kaiming, default")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *inner, last = self.layers
        for layer in inner:
            x = torch.relu(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)

    def relu_layers(self) -> list[nn.Linear]:
        """The layers, for :mod:`notpipe.core.mlp_backward` (``y = L_n(relu(... relu(L_1(x))))``)."""
        return list(self.layers)


class VectorMap(nn.Module):
    """Transport map on R^d: ``T(x)`` or, with ``z_dim > 0``, ``T(x, z) = MLP([x, z])``."""

    def __init__(self, dim: int, hidden=(100, 100), z_dim: int = 0, init: str = "kaiming"):
        super().__init__()
        self.dim, self.z_dim = dim, z_dim
        self.net = MLP(dim + z_dim, dim, hidden, init)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.z_dim:
            if z is None:
                raise ValueError("stochastic map: z is required")
            x = torch.cat([x, z], dim=1)
        return self.net(x)

    def relu_layers(self) -> list[nn.Linear]:
        """The MLP's layers; its input is ``[x, z]`` (:mod:`notpipe.core.mlp_backward`)."""
        return self.net.relu_layers()


class VectorPotential(nn.Module):
    """Potential f: R^d -> R as an MLP; returns shape ``(B,)``."""

    def __init__(self, dim: int, hidden=(100, 100), init: str = "kaiming"):
        super().__init__()
        self.net = MLP(dim, 1, hidden, init)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y).squeeze(1)

    def relu_layers(self) -> list[nn.Linear]:
        """The MLP's layers (output width 1; :mod:`notpipe.core.mlp_backward`)."""
        return self.net.relu_layers()
