"""Terms of the potential's (critic's) loss beside the dual objective, and the gradient norm the
trainer logs: WGAN-GP's gradient penalty and OTM's gradient-optimality term."""

from __future__ import annotations

import torch


def grad_norm(params) -> torch.Tensor:
    """Global L2 norm of the gradients (device tensor, no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def gradient_penalty(f, tx: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """WGAN-GP's ``mean (|grad f(x_hat)| - 1)^2`` at ``x_hat = e y + (1 - e) T(x)``, e ~ U(0, 1)."""
    e = torch.rand((y.shape[0],) + (1,) * (y.dim() - 1), generator=generator).to(y.device)
    xh = (e * y + (1 - e) * tx).requires_grad_(True)
    (g,) = torch.autograd.grad(f(xh).float().sum(), xh, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


def gradient_optimality(x: torch.Tensor, tx: torch.Tensor, ftx: torch.Tensor) -> torch.Tensor:
    """OTM's ``|| mean_i grad f(T(x_i)) + mean_i x_i ||`` (``ftx = f(tx)``, ``tx`` requiring grad)."""
    (g,) = torch.autograd.grad(ftx.sum(), tx, create_graph=True)
    return (g.float().mean(0) + x.float().mean(0)).norm()
