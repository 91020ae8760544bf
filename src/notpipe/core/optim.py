"""Optimisers: a one-buffer Adam for small models, torch's fused Adam otherwise.

For the toys (MLPs of ~10k parameters, batch 64) a training step costs well under
a millisecond and ``torch.optim.Adam.step`` spends most of its time in Python
bookkeeping per parameter tensor. :class:`FlatAdam` moves all parameters and
gradients of a model into one contiguous buffer each (the parameters become views)
and runs the Adam update on that buffer: one call of torch's fused Adam kernel
(``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` runs; 16 us against
52 us for the 7 in-place ops on the 2-core CPU) where this torch has it, else the
7 in-place ops. Both compute torch's Adam (L2 weight decay, bias correction, eps
outside the sqrt) to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class FlatAdam:
    """Adam over one flat parameter buffer; mirrors the ``torch.optim`` interface we use.

    Create it after the model has its final device/dtype/memory format: it
    re-points every parameter (and its ``.grad``) at a slice of the buffers.
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("FlatAdam: no trainable parameters")
        ref = self.params[0]
        n = sum(p.numel() for p in self.params)
        self.flat = torch.zeros(n, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            k = p.numel()
            self.flat[offset:offset + k].copy_(p.detach().reshape(-1))
            p.data = self.flat[offset:offset + k].view_as(p)
            p.grad = self.grad[offset:offset + k].view_as(p)
            offset += k
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.step_count = 0
        self._fused = hasattr(torch, "_fused_adam_")
        self._step_t = torch.zeros((), dtype=torch.float32, device=ref.device)  # the fused kernel's step
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        # minimal param_groups so loggers can read (and callers set) the lr; not an
        # Optimizer subclass, so torch LR schedulers do not wrap it (use impl='torch')
        self.param_groups = [{"lr": lr, "params": self.params}]

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        lr = self.param_groups[0]["lr"]
        b1, b2 = self.betas
        if self._fused:
            self._step_t.fill_(self.step_count)
            torch._fused_adam_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self._step_t],
                               lr=lr, beta1=b1, beta2=b2, weight_decay=self.weight_decay, eps=self.eps,
                               amsgrad=False, maximize=False)
            return
        g = self.grad
        if self.weight_decay:
            g = g.add(self.flat, alpha=self.weight_decay)
        self.exp_avg.lerp_(g, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1 = 1 - b1 ** self.step_count
        bc2 = 1 - b2 ** self.step_count
        denom = (self.exp_avg_sq / bc2).sqrt_().add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-lr / bc1)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(),
                "step": self.step_count, "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_count = int(state["step"])
        self.param_groups[0]["lr"] = state["lr"]


class StepDecay:
    """``torch.optim.lr_scheduler.MultiStepLR`` for anything with ``param_groups``
    (:class:`FlatAdam` included): after ``m`` calls of :meth:`step` for each milestone
    ``m``, the learning rate is its initial value times ``decay`` per milestone passed.
    The lr is recomputed from the step count, so a resumed run gets it back exactly.
    """

    def __init__(self, opt, milestones, decay: float):
        self.opt, self.decay = opt, float(decay)
        self.milestones = sorted(int(m) for m in milestones)
        self.base = [g["lr"] for g in opt.param_groups]
        self.last_step = 0

    def _apply(self) -> None:
        passed = sum(m <= self.last_step for m in self.milestones)
        for group, base in zip(self.opt.param_groups, self.base):
            group["lr"] = base * self.decay ** passed

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base": list(self.base)}

    def load_state_dict(self, state: dict) -> None:
        self.last_step, self.base = int(state["last_step"]), list(state["base"])
        self._apply()


def make_adam(model: nn.Module, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0,
              impl: str = "flat"):
    """Adam for ``model``: ``impl='flat'`` (:class:`FlatAdam`), ``'torch'`` or ``'loop'``.

    ``'torch'`` uses ``torch.optim.Adam(fused=True)`` on CUDA and on CPU where
    supported (the right choice for image models, whose steps are compute-bound).
    """
    if impl == "flat":
        return FlatAdam(model.parameters(), lr, betas, weight_decay=weight_decay)
    if impl == "torch":
        return torch.optim.Adam(model.parameters(), lr, betas=tuple(betas),
                                weight_decay=weight_decay, fused=True)
    if impl == "loop":  # the old per-parameter default: the authors' notebooks (speed reference)
        return torch.optim.Adam(model.parameters(), lr, betas=tuple(betas),
                                weight_decay=weight_decay, foreach=False)
    raise ValueError(f"unknown optimiser impl {impl!r}; allowed: flat, torch, loop")
