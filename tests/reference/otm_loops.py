"""OTM's training loop, on a tape of inputs (no ``notpipe`` import).

Source: the "Training Unit" of ``source/otm_celeba_64x64.py`` (generation) and of
``source/otm_celeba_{denoise,colorization,inpaint}_64x64.py`` (restoration), LituRout/
OptimalTransportModeling at 8287054. One iteration ``t``:

1. ψ's parameters trainable, G's frozen (``requires_grad`` only: neither network is ever put in
   eval mode); ``K_psi`` times: a fresh X (generation: z ``(B, 192)``; restoration: a clean batch
   of trainA, then ``Degrade``) and Y, ``psi_loss = Loss(psi, G, Q, X, Y)``,
   ``go_loss = GradientOptimality(psi, G, Q, X)``, ``(psi_loss + lam_go * go_loss).backward()``,
   ``psi_opt.step()``;
2. G's parameters trainable, ψ's frozen; ``K_G`` times: fresh X (degraded) and Y,
   ``G_loss = -Loss(psi, G, Q, X, Y)``, ``G_opt.step()``.

with ``Loss = mean(mean_chw(Q(x) * G(x)) - psi(G(x)) + psi(y))`` and
``GradientOptimality = || mean_batch grad psi(G(x)) - mean_batch Q(x) ||_F`` (G(x) recomputed, made
a leaf that requires grad). Generation: ``Q(x) = interpolate(x.reshape(-1, 3, 8, 8), 64,
'bicubic')``, K_psi 1, K_G 2, lam_go 10, Adam(2e-4, betas (0, 0.9)). Restoration: ``Q(x) = x``,
K_psi 1, K_G 5 / 5 / 2 (denoise / colorization / inpaint), lam_go 0 (the term is computed and
logged all the same), Adam(1e-4, betas (0, 0.9)). ``Degrade``: denoise ``x = y + 0.3 * randn``;
colorization ``0.299 r + 0.587 g + 0.114 b`` repeated over 3 channels (theirs goes through a
float32 numpy array; here the same arithmetic stays in torch so a float64 run stays float64);
inpaint ``y[:, :, :, 32:] = 0``.

The tape replaces their data loaders and ``torch.randn``: per iteration, the X (before
``Degrade``), the standard-normal draws of the noise degradation and the Y of every step. The
loop returns per iteration, as Python floats, ``psi_loss`` and ``go`` of each ψ-step, its dot
term ``mean(Q(x) * G(x))``, and for each G-step ``G_loss``, its dot term and ``mean psi(Y)`` (a
term of ``G_loss`` without gradient).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import autograd

SIZE = 64
SIGMA = 0.3  # denoise: std of the noise added in [-1, 1] space


def q_generation(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x.reshape(-1, 3, 8, 8), SIZE, mode="bicubic").detach()


def q_identity(x: torch.Tensor) -> torch.Tensor:
    return x.detach()


def degrade_noise(y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return y + SIGMA * e


def degrade_gray(y: torch.Tensor, e=None) -> torch.Tensor:
    g = y[:, 0, :, :] * 0.299 + y[:, 1, :, :] * 0.587 + y[:, 2, :, :] * 0.114
    return g.reshape(g.shape[0], 1, SIZE, SIZE).repeat(1, 3, 1, 1)


def degrade_inpaint(y: torch.Tensor, e=None) -> torch.Tensor:
    y = y.clone()
    y[:, :, :, SIZE // 2:] = 0
    return y


def no_degradation(x: torch.Tensor, e=None) -> torch.Tensor:
    return x


def loss(psi, G, Q, x, y):
    G_x = G(x)
    dot = torch.mean(Q(x) * G_x, dim=(1, 2, 3)).unsqueeze(dim=1)
    return (dot - psi(G_x) + psi(y)).mean(), dot.mean()


def gradient_optimality(psi, G, Q, x):
    G_x = G(x)
    G_x.requires_grad_(True)
    psi_G_x = psi(G_x)
    grads = autograd.grad(outputs=psi_G_x, inputs=G_x, grad_outputs=torch.ones(psi_G_x.size()).to(G_x),
                          create_graph=True, retain_graph=True)[0]
    return (grads.mean(dim=0) - Q(x).mean(dim=0)).norm("fro")


def _trainable(model: nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad = flag


@dataclass
class Tape:
    """Per iteration ``t``: ``psi_x[t][k]``, ``psi_e[t][k]``, ``psi_y[t][k]`` of ψ-step k and
    ``g_x[t][k]``, ``g_e[t][k]``, ``g_y[t][k]`` of G-step k (``*_e``: None without noise)."""

    psi_x: list[list[torch.Tensor]] = field(default_factory=list)
    psi_e: list[list[torch.Tensor | None]] = field(default_factory=list)
    psi_y: list[list[torch.Tensor]] = field(default_factory=list)
    g_x: list[list[torch.Tensor]] = field(default_factory=list)
    g_e: list[list[torch.Tensor | None]] = field(default_factory=list)
    g_y: list[list[torch.Tensor]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.psi_x)


def adam_pair(G: nn.Module, psi: nn.Module, lr: float):
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.9)),
            torch.optim.Adam(psi.parameters(), lr=lr, betas=(0.0, 0.9)))


def otm(G, psi, G_opt, psi_opt, tape: Tape, Q, degrade, lam_go: float) -> list[dict]:
    """Run ``len(tape)`` iterations; K_psi and K_G are the lengths of the tape's lists."""
    out = []
    for t in range(len(tape)):
        rec = {"psi_loss": [], "go": [], "psi_dot": [], "G_loss": [], "G_dot": [], "G_psi_y": []}
        _trainable(psi, True)
        _trainable(G, False)
        for X, e, Y in zip(tape.psi_x[t], tape.psi_e[t], tape.psi_y[t]):
            X = degrade(X, e)
            psi_loss, dot = loss(psi, G, Q, X, Y)
            rec["psi_loss"].append(psi_loss.item())
            rec["psi_dot"].append(dot.item())
            go_loss = gradient_optimality(psi, G, Q, X)
            rec["go"].append(go_loss.item())
            psi_loss = psi_loss + lam_go * go_loss
            psi_opt.zero_grad()
            psi_loss.backward(retain_graph=True)
            psi_opt.step()
        _trainable(psi, False)
        _trainable(G, True)
        for X, e, Y in zip(tape.g_x[t], tape.g_e[t], tape.g_y[t]):
            X = degrade(X, e)
            G_loss, dot = loss(psi, G, Q, X, Y)
            G_loss = -G_loss
            rec["G_loss"].append(G_loss.item())
            rec["G_dot"].append(dot.item())
            with torch.no_grad():
                rec["G_psi_y"].append(psi(Y).mean().item())
            G_opt.zero_grad()
            G_loss.backward(retain_graph=True)
            G_opt.step()
        out.append(rec)
    return out
