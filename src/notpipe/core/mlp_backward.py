"""NOT's T- and f-steps for ReLU-MLP maps and potentials, with hand-written gradients.

The toys are dispatch-bound on a CPU: for a 2x100 MLP at batch 64 one f-step of
the autograd path runs about 3 700 aten ops (graph recording, the engine, views,
copies) while its matrix products take a quarter of the time. The maths of a
T-step and an f-step through ReLU MLPs is short, so this module writes it out:

* forward with ``addmm`` + in-place ``relu_``, keeping the hidden activations;
* the potential's input gradient ``d(-mean f(y))/dy`` (T-step) by the chain rule
  through f, with ``threshold_backward`` for each ReLU;
* the cost's gradient in closed form (strong: ``2 s (y - x) / B``; weak: through
  the mean and the unbiased variance over the Z draws; kernel: unit vectors of
  ``y - x`` and of the pairs ``y_z - y_z'``; none: 0);
* the parameters' gradients written into each ``p.grad``, then the optimiser's
  ``step`` (weight decay stays the optimiser's).

It computes the losses and gradients autograd computes (equal to 1e-12 in float64,
``tests/core/test_mlp_backward.py``) in about 400 ops per f-step; float32 rounding
differs, so trajectories agree closely, not bit for bit. It draws every batch and
every z exactly as the autograd path does, from the same generator, in the same order.

:func:`unsupported` says why a trainer cannot use it (another cost, a gradient
penalty, several processes, autocast, a model that is not a ReLU MLP); the trainer
then stays on autograd.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_threshold_backward = torch.ops.aten.threshold_backward

#: costs with a closed-form gradient here
COSTS = ("strong", "weak", "kernel", "none")


def relu_layers(module: nn.Module) -> list[nn.Linear] | None:
    """The linear layers of a ReLU MLP model (``relu_layers()`` protocol), or None."""
    get = getattr(module, "relu_layers", None)
    return list(get()) if callable(get) else None


def unsupported(trainer) -> str | None:
    """Why ``trainer`` cannot take the hand-written steps, or None if it can."""
    if trainer.cost.name not in COSTS:
        return f"the {trainer.cost.name} cost has no hand-written gradient (only {', '.join(COSTS)})"
    if trainer.gp:
        return "the gradient penalty (WGAN-GP) needs a double backward"
    if trainer.world > 1:
        return "several processes average their gradients through DistributedDataParallel"
    if isinstance(trainer.ctx, torch.autocast):
        return "autocast (mixed precision) is on"
    for name, model in (("T", trainer.T), ("f", trainer.f)):
        if relu_layers(model) is None:
            return f"{name} ({type(model).__name__}) is not a ReLU MLP"
    return None


class _Net:
    """Cached views of one MLP's layers: weight, its transpose, bias, and their .grad."""

    def __init__(self, layers: list[nn.Linear]):
        self.w = [layer.weight for layer in layers]
        self.wt = [w.t() for w in self.w]  # views: optimisers update the weights in place
        self.b = [layer.bias for layer in layers]
        for p in (*self.w, *self.b):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.gw = [w.grad for w in self.w]
        self.gb = [b.grad for b in self.b]

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Output and the hidden (post-ReLU) activations."""
        hs = []
        h = u
        for w_t, b in zip(self.wt[:-1], self.b[:-1]):
            h = torch.addmm(b, h, w_t).relu_()
            hs.append(h)
        return torch.addmm(self.b[-1], h, self.wt[-1]), hs

    def input_grad(self, hs: list[torch.Tensor], g_last: torch.Tensor) -> torch.Tensor:
        """Gradient at the input, from ``g_last``: the gradient at the last hidden activation."""
        g = g_last
        for i in range(len(hs) - 1, -1, -1):
            g = torch.mm(_threshold_backward(g, hs[i], 0), self.w[i])
        return g

    def param_grads(self, u: torch.Tensor, hs: list[torch.Tensor], g_out: torch.Tensor) -> None:
        """Write d loss / d parameters into each ``.grad`` from ``g_out`` = d loss / d output."""
        g = g_out
        for i in range(len(self.w) - 1, -1, -1):
            inp = hs[i - 1] if i else u
            torch.mm(g.t(), inp, out=self.gw[i])
            torch.sum(g, 0, out=self.gb[i])
            if i:
                g = _threshold_backward(torch.mm(g, self.w[i]), inp, 0)


class ManualSteps:
    """``t_step``/``f_step`` of :class:`~notpipe.core.trainer.NOTTrainer` without autograd."""

    def __init__(self, trainer):
        why = unsupported(trainer)
        if why:
            raise ValueError(f"hand-written gradients are not available: {why}")
        self.tr = trainer
        self.T = _Net(relu_layers(trainer.T))
        self.f = _Net(relu_layers(trainer.f))
        self.z_dim = int(getattr(trainer.T, "z_dim", 0))
        self._signs: dict[int, torch.Tensor] = {}
        self._neg_inv: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ cost
    def _cost(self, x: torch.Tensor, y: torch.Tensor,
              gamma: float) -> tuple[torch.Tensor, float, torch.Tensor | None, float]:
        """The batch-mean cost and its gradient with respect to ``y`` (``(B*Z, D)``), each
        as a tensor and the factor it still needs: ``(value, vscale, grad, gscale)``.
        The callers apply the factors as ``alpha=`` of their in-place adds: an op with a
        Python-number operand costs a tensor wrap and a copy on each call (``grad``
        None: zero).
        """
        cost = self.tr.cost
        b, z = x.shape[0], cost.z_size
        if cost.name == "none":
            return x.new_zeros(()), 1.0, None, 1.0
        if cost.name == "kernel":
            return (*self._kernel_cost(x, y, gamma), 1.0)
        s = cost._quad_factor(x)
        if z == 1:  # strong: s/B sum ||y - x||^2
            diff = torch.sub(y, x)
            flat = diff.view(-1)
            return torch.dot(flat, flat), s / b, diff, 2 * s / b
        # weak: s/B sum_b [||x - ybar||^2 + c/(Z-1) sum_z ||y_z - ybar||^2], c = 1 - gamma - 1/Z
        c = (1 - gamma - 1 / z) / (z - 1)
        ys = y.view(b, z, -1)
        ybar = ys.mean(1, keepdim=True)
        dev = torch.sub(ys, ybar)
        r = torch.sub(ybar, x.view(b, 1, -1))  # ybar - x
        rf, df = r.view(-1), dev.view(-1)
        value = torch.add(torch.dot(rf, rf), torch.dot(df, df), alpha=c)
        grad = dev.mul_(2 * s * c / b).add_(r, alpha=2 * s / (b * z))
        return value, s / b, grad.view_as(y), 1.0

    def _kernel_cost(self, x: torch.Tensor, y: torch.Tensor,
                     gamma: float) -> tuple[torch.Tensor, float, torch.Tensor]:
        """Energy cost ``s/B sum_b [mean_z |y_z - x| - gamma/2 mean_{z != z'} |y_z - y_z'|]``
        and its gradient: ``s/(B Z)`` times the unit vectors of ``y_z - x``, minus
        ``gamma s / (B Z (Z-1))`` times the sum of the unit vectors of ``y_z - y_z'``.
        A distance under 1e-6 has gradient 0, as through the clamp of
        :func:`~notpipe.core.costs._dist`.
        """
        b, z = x.shape[0], self.tr.cost.z_size
        s = self.tr.cost._dist_factor(x)
        ys = y.view(b, z, -1)
        d = torch.sub(ys, x.view(b, 1, -1))  # (b, z, D): y_z - x
        sq = d.pow(2).sum(2, keepdim=True)
        r = sq.clamp_min(1e-12).sqrt_()
        pair = torch.sub(ys.unsqueeze(2), ys.unsqueeze(1))  # (b, z, z', D): y_z - y_z'
        psq = pair.pow(2).sum(3, keepdim=True)
        off = ~torch.eye(z, dtype=torch.bool, device=y.device).view(1, z, z, 1)
        pr = psq.clamp_min(1e-12).sqrt_().mul_(off)
        value = torch.sub(r.sum().div_(z), pr.sum(), alpha=0.5 * gamma / (z * (z - 1)))
        grad = d.mul_(r.reciprocal_().mul_(sq >= 1e-12)).mul_(s / (b * z))
        pinv = pr.reciprocal_().nan_to_num_(posinf=0.0).mul_(psq >= 1e-12)
        grad.sub_(pair.mul_(pinv).sum(2), alpha=gamma * s / (b * z * (z - 1)))
        return value, s / b, grad.view_as(y)

    def _f_last_grad(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """``d(-mean f(y))/d(last hidden activation)``: ``-w_last / n`` for each of n rows
        (the factor a cached 0-dim tensor: a Python number would be wrapped and copied)."""
        k = self._neg_inv.get(n)
        if k is None:
            k = self._neg_inv[n] = like.new_tensor(-1.0 / n)
        return torch.mul(self.f.w[-1], k).expand(n, -1)

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def t_step(self, x: torch.Tensor, gamma: float, accs: tuple[torch.Tensor, torch.Tensor],
               norm_slot: int | None = None) -> None:
        tr, z = self.tr, self.tr.cost.z_size
        if self.z_dim:
            b = x.shape[0]
            xr = x.repeat_interleave(z, dim=0) if z > 1 else x
            u = torch.cat([xr, tr.noise(b * z, tr.generator, tr.device)], dim=1)
        else:
            u = x
        y, h_t = self.T.forward(u)
        f_y, h_f = self.f.forward(y)
        n = y.shape[0]
        # d(-mean f(y))/dy through f (its parameters are not updated here)
        g_y = self.f.input_grad(h_f, self._f_last_grad(n, y))
        cost, vscale, g_cost, gscale = self._cost(x, y, gamma)
        if g_cost is not None:
            g_y.add_(g_cost, alpha=gscale)
        self.T.param_grads(u, h_t, g_y)
        if norm_slot is not None:
            tr._buf[3, norm_slot] = tr._grad_norm(tr.t_params)
        tr.opt_t.step()
        acc_loss, acc_cost = accs
        acc_loss.add_(cost, alpha=vscale).sub_(f_y.sum(), alpha=1.0 / n)
        acc_cost.add_(cost, alpha=vscale)

    def _sign(self, b: int, like: torch.Tensor) -> torch.Tensor:
        """``(2B, 1)``: +1/B for the B pushed inputs, -1/B for the B targets (d L_f / d f)."""
        s = self._signs.get(b)
        if s is None:
            s = torch.cat([like.new_full((b, 1), 1.0 / b), like.new_full((b, 1), -1.0 / b)])
            self._signs[b] = s
        return s

    def f_step(self, x: torch.Tensor, y: torch.Tensor, slot: int) -> None:
        tr = self.tr
        if tr._nan_step is not None and tr.step + 1 == tr._nan_step:
            return tr._f_step(x, y, slot)  # the injected fault goes through the autograd path
        with torch.no_grad():
            u = torch.cat([x, tr.noise(x.shape[0], tr.generator, tr.device)], dim=1) if self.z_dim else x
            tx = self.T.forward(u)[0]
            both = torch.cat([tx, y])
            out, h = self.f.forward(both)
            sign = self._sign(x.shape[0], out)
            loss = torch.dot(out.view(-1), sign.view(-1))
            self.f.param_grads(both, h, sign)
            if tr.grad_norms:
                tr._buf[4, slot] += tr._grad_norm(tr.f_params)
            tr.opt_f.step()
            tr._buf[1, slot] += loss
