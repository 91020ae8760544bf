"""The authors' NOT and Kernel NOT training loops, on a tape of inputs (no ``notpipe`` import).

Sources: the training cells of ``notebooks/NOT_training_strong.ipynb`` and
``NOT_training_weak.ipynb`` (iamalexkorotin/NeuralOptimalTransport) and
``KNOT_training_weak.ipynb`` with ``COST = 'energy'`` (iamalexkorotin/KernelNeuralOptimalTransport).
Per f-step (``step`` = 0, 1, ...):

1. ``unfreeze(T); freeze(f)``: T trains (BatchNorm on batch statistics, running statistics
   updated), f's parameters are frozen and f is in eval mode.
2. ``T_ITERS`` T-steps, each ``T_opt.zero_grad(); T_loss.backward(); T_opt.step()`` with

   - strong: ``F.mse_loss(X, T(X)).mean() - f(T(X)).mean()``;
   - weak: ``F.mse_loss(X, T_XZ.mean(1)) - f(T_XZ).mean() + T_XZ.var(1).mean() * (1 - gamma - 1/Z)``
     with ``T_XZ`` of shape ``(B, Z, C, H, W)`` from ``T(cat([X, Z], channels))``;
   - energy: ``(X - T_XZ).flatten(2).norm(dim=2).mean() - f(T_XZ).mean()
     - gamma * 0.5 * cdist(T_XZ, T_XZ).mean() * Z / (Z - 1)`` with ``T_XZ = T(X, z)``;

   and ``gamma = min(G1, G0 + (G1 - G0) * step / GAMMA_ITERS)``.
3. Kernel NOT: ``T_scheduler.step()``.
4. ``freeze(T); unfreeze(f)``: T in eval mode (BatchNorm on running statistics, which this
   step leaves unchanged), then on a fresh X (and z) ``T_X = T(X)`` under ``no_grad`` and
   ``f_loss = f(T_X).mean() - f(Y).mean()``, ``f_opt.step()`` (Kernel NOT: ``f_scheduler.step()``).

Optimisers: ``Adam(lr=1e-4, weight_decay=1e-10)`` for both (Kernel NOT: ``MultiStepLR(gamma=0.5)``
on each). The tape replaces their samplers and ``torch.randn`` calls; z on the tape is already
multiplied by ``Z_STD``. Every loop returns, per f-step, the T losses and their cost terms
(the T loss plus ``f(T(X)).mean()``) of each T-step, the f loss, gamma and both learning rates,
as Python floats (their ``.item()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

LR = 1e-4
WEIGHT_DECAY = 1e-10
KNOT_LR_DECAY = 0.5


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()


def unfreeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    model.train(True)


@dataclass
class Tape:
    """The inputs of a run, per f-step.

    ``t_x[s][i]``: X of T-step i of f-step s, ``(B, C, H, W)``; ``t_z[s][i]``: its z,
    ``(B, Z, ZC, H, W)`` (weak) or ``(B, Z, ZC, 1, 1)`` (energy); ``f_x[s]``, ``f_z[s]``
    (``(B, ZC, H, W)`` or ``(B, ZC, 1, 1)``), ``f_y[s]``: the f-step's X, z and Y.
    Strong NOT has no z (empty lists).
    """

    t_x: list[list[torch.Tensor]] = field(default_factory=list)
    t_z: list[list[torch.Tensor]] = field(default_factory=list)
    f_x: list[torch.Tensor] = field(default_factory=list)
    f_z: list[torch.Tensor] = field(default_factory=list)
    f_y: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.f_y)


def adam_pair(T: nn.Module, f: nn.Module, lr: float = LR) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """``T_opt, f_opt`` as in the notebooks."""
    return (torch.optim.Adam(T.parameters(), lr=lr, weight_decay=WEIGHT_DECAY),
            torch.optim.Adam(f.parameters(), lr=lr, weight_decay=WEIGHT_DECAY))


def multistep_pair(T_opt, f_opt, milestones, gamma: float = KNOT_LR_DECAY):
    """``T_scheduler, f_scheduler`` of the Kernel NOT notebook."""
    return (torch.optim.lr_scheduler.MultiStepLR(T_opt, milestones=list(milestones), gamma=gamma),
            torch.optim.lr_scheduler.MultiStepLR(f_opt, milestones=list(milestones), gamma=gamma))


def gamma_at(step: int, gamma0: float, gamma1: float, gamma_iters: int) -> float:
    return min(gamma1, gamma0 + (gamma1 - gamma0) * step / gamma_iters)


def _f_step(T, f, f_opt, push, Y: torch.Tensor) -> float:
    """``freeze(T); unfreeze(f)``, ``T_X = push()`` without gradients, one f update; the f loss."""
    freeze(T)
    unfreeze(f)
    with torch.no_grad():
        T_X = push()
    f_opt.zero_grad()
    f_loss = f(T_X).mean() - f(Y).mean()
    f_loss.backward()
    f_opt.step()
    return f_loss.item()


def _row(t_losses, t_costs, f_loss, gamma, T_opt, f_opt) -> dict:
    return {"loss_t": t_losses, "cost": t_costs, "loss_f": f_loss, "gamma": gamma,
            "lr_t": T_opt.param_groups[0]["lr"], "lr_f": f_opt.param_groups[0]["lr"]}


def not_strong(T, f, T_opt, f_opt, tape: Tape) -> list[dict]:
    """NOT_training_strong.ipynb (``COST = 'mse'``)."""
    rows = []
    for step in range(len(tape)):
        unfreeze(T)
        freeze(f)
        losses, costs = [], []
        for X in tape.t_x[step]:
            T_opt.zero_grad()
            T_X = T(X)
            cost = F.mse_loss(X, T_X).mean()
            T_loss = cost - f(T_X).mean()
            T_loss.backward()
            T_opt.step()
            losses.append(T_loss.item())
            costs.append(cost.item())
        f_loss = _f_step(T, f, f_opt, lambda: T(tape.f_x[step]), tape.f_y[step])
        rows.append(_row(losses, costs, f_loss, 0.0, T_opt, f_opt))
    return rows


def _by_z(T_out: torch.Tensor, z_size: int) -> torch.Tensor:
    """``(B * Z, C, H, W)`` -> ``(B, Z, C, H, W)`` by the notebooks' permute/reshape/permute."""
    c, h, w = T_out.shape[1:]
    return T_out.permute(1, 2, 3, 0).reshape(c, h, w, -1, z_size).permute(3, 4, 0, 1, 2)


def not_weak(T, f, T_opt, f_opt, tape: Tape, z_size: int, gamma0: float, gamma1: float,
             gamma_iters: int) -> list[dict]:
    """NOT_training_weak.ipynb (``COST = 'weak_mse'``): T takes ``cat([X, z])`` channels."""
    rows = []
    for step in range(len(tape)):
        gamma = gamma_at(step, gamma0, gamma1, gamma_iters)
        unfreeze(T)
        freeze(f)
        losses, costs = [], []
        for X0, Z in zip(tape.t_x[step], tape.t_z[step]):
            T_opt.zero_grad()
            X = X0[:, None].repeat(1, z_size, 1, 1, 1)
            with torch.no_grad():
                XZ = torch.cat([X, Z], dim=2)
            T_XZ = _by_z(T(XZ.flatten(start_dim=0, end_dim=1)), z_size)
            mse = F.mse_loss(X[:, 0], T_XZ.mean(dim=1)).mean()
            var = T_XZ.var(dim=1).mean() * (1 - gamma - 1.0 / z_size)
            T_loss = mse - f(T_XZ.flatten(start_dim=0, end_dim=1)).mean() + var
            T_loss.backward()
            T_opt.step()
            losses.append(T_loss.item())
            costs.append((mse + var).item())
        f_loss = _f_step(T, f, f_opt, lambda: T(torch.cat([tape.f_x[step], tape.f_z[step]], dim=1)),
                         tape.f_y[step])
        rows.append(_row(losses, costs, f_loss, gamma, T_opt, f_opt))
    return rows


def knot_energy(T, f, T_opt, f_opt, T_scheduler, f_scheduler, tape: Tape, z_size: int, gamma0: float,
                gamma1: float, gamma_iters: int) -> list[dict]:
    """KNOT_training_weak.ipynb with ``COST = 'energy'``: T is the conditional U-Net ``T(X, z)``."""
    rows = []
    for step in range(len(tape)):
        gamma = gamma_at(step, gamma0, gamma1, gamma_iters)
        unfreeze(T)
        freeze(f)
        losses, costs = [], []
        for X0, Z in zip(tape.t_x[step], tape.t_z[step]):
            T_opt.zero_grad()
            X = X0[:, None].repeat(1, z_size, 1, 1, 1)
            c, h, w = X.shape[2:]
            T_XZ = T(X.flatten(start_dim=0, end_dim=1), Z.flatten(start_dim=0, end_dim=1)
                     ).permute(1, 2, 3, 0).reshape(c, h, w, -1, z_size).permute(3, 4, 0, 1, 2)
            T_var = (0.5 * torch.cdist(T_XZ.flatten(start_dim=2), T_XZ.flatten(start_dim=2)).mean()
                     * z_size / (z_size - 1))
            to_x = (X - T_XZ).flatten(start_dim=2).norm(dim=2).mean()
            T_loss = to_x - f(T_XZ.flatten(start_dim=0, end_dim=1)).mean() - gamma * T_var
            T_loss.backward()
            T_opt.step()
            losses.append(T_loss.item())
            costs.append((to_x - gamma * T_var).item())
        T_scheduler.step()
        f_loss = _f_step(T, f, f_opt, lambda: T(tape.f_x[step], tape.f_z[step]), tape.f_y[step])
        f_scheduler.step()
        rows.append(_row(losses, costs, f_loss, gamma, T_opt, f_opt))
    return rows
