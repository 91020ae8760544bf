"""The one NOT trainer (Algorithm 1, SGAD) for vectors and images.

Each f-step (``step``) runs ``k_t`` T-steps (T in train mode, f in eval mode)

    L_T = mean_x C(x, T(x, Z_x)) - mean f(T(x, z))          (T: descend)

then one f-step on a fresh batch (T in eval mode, f in train mode, as the authors'
``freeze``/``unfreeze``: T's BatchNorm uses its running statistics and leaves them as
they are while f learns)

    L_f = mean f(T(x, z).detach()) - mean f(y),  y ~ Q       (f: descend = ascend the dual)

The loop reads like nanoGPT's: fixed order, precision chosen once, no host
synchronisation on the hot path. Per-step losses go into a device buffer that is
read once every ``log_every`` steps; that read also checks for NaN/inf and names
the first bad step. Checkpoints happen only at log boundaries, after that check,
so a non-finite run never writes a checkpoint.

OTM (Rout et al.) runs on the same loop with three settings: ``order="potential_first"`` (the
``k_f`` f-steps of a step come before its ``k_t`` T-steps, OTM's ψ-step first), the
inner-product form of the strong cost (:class:`~notpipe.core.costs.StrongQuadratic`), and
``gradient_optimality`` λ_go, OTM's regulariser added to the f loss:

    L_f += λ_go * || mean_i ∇f(T(x_i)) + mean_i x_i ||

OTM's potential is ψ = -f (:mod:`notpipe.train.otm_models` returns -ψ), so this is their
``|| mean ∇ψ(G(x)) - mean Q(x) ||`` with x = Q(z) the embedded noise or the degraded image.

Data-parallel runs (:mod:`notpipe.train.distributed`) set ``rank``/``world`` with
:meth:`NOTTrainer.distribute`: every rank draws the *global* batch (and z) from the
same seeded generator and keeps its own slice, so N processes compute what one
process computes on the whole batch; the differentiated forward passes go through
the ``DistributedDataParallel`` wrappers, which average the gradients.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from notpipe.core import trainer_state
from notpipe.core.trainer_state import _unwrap
from notpipe.core.critic_terms import grad_norm, gradient_optimality, gradient_penalty
from notpipe.core.costs import Cost, GammaSchedule
from notpipe.core.ema import ParamAverage
from notpipe.core.mlp_backward import ManualSteps, unsupported

Sampler = Callable[[int, torch.Generator], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; the message names the step."""

    one_line = True  # stage.entry prints it without a traceback on the command line


#: the order of the players inside one step: NOT's T-steps first, or OTM's potential first
ORDERS = ("map_first", "potential_first")

#: fault injection (off unless set): the f loss of this f-step (1-based) becomes NaN
FAULT_NAN_STEP = "NOTPIPE_FAULT_NAN_STEP"


def _fault_nan_step() -> int | None:
    value = os.environ.get(FAULT_NAN_STEP, "").strip()
    return int(value) if value else None


def _set_requires_grad(params, flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


class NOTTrainer:
    """SGAD for Neural Optimal Transport on tensors of any shape.

    Parameters
    ----------
    T, f : nn.Module
        Map ``T(x)`` / ``T(x, z)`` and potential ``f(y) -> (B,)``.
    cost : Cost
        Strong, weak or kernel cost; ``cost.z_size`` draws of z per input.
    sample_p, sample_q : callable ``(n, generator) -> tensor``
        Samplers of the input and target distributions.
    opt_t, opt_f : optimiser-like (``zero_grad``, ``step``, ``state_dict``, ``param_groups``)
    noise : callable ``(n, generator, device) -> z`` or None
        Noise of stochastic maps (None: deterministic map).
    k_t, batch : int
        T-steps per f-step; inputs per batch.
    k_f : int
        f-steps (critic steps) per step, each on fresh batches (NOT: 1; WGAN-GP: 5).
    gradient_penalty : float
        λ of WGAN-GP's penalty ``λ mean (|∇f(x̂)| - 1)^2`` in the f loss (0: none, NOT).
    gamma_schedule : GammaSchedule, optional
        γ as a function of the f-step (default: constant ``cost.gamma_max``).
    generator : torch.Generator
        The only source of randomness for sampling; its state is checkpointed.
    autocast_dtype : torch.dtype, optional
        e.g. ``torch.bfloat16`` for mixed precision on CUDA.
    backward : {"auto", "manual", "autograd"}
        How the T- and f-steps get their gradients. ``manual``: the hand-written
        steps of :mod:`notpipe.core.mlp_backward` (ReLU MLPs, strong/weak/kernel/no cost;
        about 2x faster on the toys); ``autograd``: ``loss.backward()``; ``auto``
        (default): manual where it applies, else autograd.
    ema_decay : float
        Keep an exponential moving average of T's parameters, updated after every f-step
        (:class:`~notpipe.core.ema.ParamAverage`; 0: none). It does not change the
        training trajectory; :meth:`averaged_T_state` is the map to evaluate.
    order : {"map_first", "potential_first"}
        ``map_first`` (NOT): the ``k_t`` T-steps, then the ``k_f`` f-steps; ``potential_first``
        (OTM): the f-steps first. A step is one of each block either way.
    gradient_optimality : float
        λ_go of OTM's gradient-optimality term in the f loss (module docstring; 0: none).
        Only with the inner-product form of the strong cost.
    """

    def __init__(self, T: nn.Module, f: nn.Module, cost: Cost, sample_p: Sampler, sample_q: Sampler,
                 opt_t, opt_f, *, noise=None, k_t: int = 10, batch: int = 64,
                 gamma_schedule: GammaSchedule | None = None, generator: torch.Generator | None = None,
                 device: str | torch.device = "cpu", sched_t=None, sched_f=None,
                 autocast_dtype: torch.dtype | None = None, log_every: int = 100,
                 grad_norms: bool = False, k_f: int = 1, gradient_penalty: float = 0.0,
                 backward: str = "auto", ema_decay: float = 0.0, order: str = "map_first",
                 gradient_optimality: float = 0.0):
        if cost.stochastic and noise is None:
            raise ValueError(f"{cost.name} cost draws {cost.z_size} samples per input: a noise sampler is required")
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")
        if gradient_optimality and not getattr(cost, "inner", False):
            raise ValueError(f"gradient_optimality applies to the inner-product form of the strong cost, not to {cost}")
        self.order, self.go = order, float(gradient_optimality)
        self.T, self.f, self.cost = T, f, cost
        self.sample_p, self.sample_q, self.noise = sample_p, sample_q, noise
        self.opt_t, self.opt_f, self.sched_t, self.sched_f = opt_t, opt_f, sched_t, sched_f
        self.k_t, self.batch, self.log_every = int(k_t), int(batch), int(log_every)
        self.k_f, self.gp = int(k_f), float(gradient_penalty)
        self.gamma = gamma_schedule or GammaSchedule(cost.gamma_max)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.device = torch.device(device)
        self.ctx = (torch.autocast(self.device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None else nullcontext())
        self.f_params = [p for p in f.parameters()]
        self.t_params = [p for p in T.parameters()]
        self.grad_norms = bool(grad_norms)
        # data parallelism (distribute()): this process's slice of every global batch, and the
        # modules whose forward is differentiated (DDP wrappers of T and f, else T and f)
        self.rank, self.world = 0, 1
        self.T_fit, self.f_fit = T, f
        self.step = 0  # completed f-steps
        self.elapsed = 0.0  # training seconds, summed over resumes
        self.history: list[dict] = []  # one row per log interval
        # rows: T loss (mean over k_t), f loss, cost term (mean over k_t),
        # grad norm of T (last T-step) and of f (only filled when grad_norms),
        # gradient-optimality term (mean over k_f; only filled when gradient_optimality)
        self._buf = torch.zeros(6, self.log_every, device=self.device)
        self._nan_step = _fault_nan_step()  # fault campaign / tests only (NOTPIPE_FAULT_NAN_STEP)
        if backward not in ("auto", "manual", "autograd"):
            raise ValueError(f"unknown backward {backward!r}; allowed: auto, manual, autograd")
        self.backward = backward
        self._manual: ManualSteps | None = None
        self._choose_backward()
        self.ema = ParamAverage(_unwrap(T), opt_t, ema_decay) if ema_decay else None

    def _choose_backward(self) -> None:
        """Hand-written steps where they apply (``backward`` auto/manual), else autograd."""
        why = unsupported(self) if self.backward != "autograd" else "autograd was asked for"
        if not why and (getattr(self.cost, "inner", False) or self.order != "map_first" or self.go):
            why = "OTM's settings (inner-product cost, potential first, gradient optimality) use autograd"
        if why and self.backward == "manual":
            raise ValueError(f"backward: manual is not available here: {why}")
        self._manual = None if why else ManualSteps(self)

    def distribute(self, T_fit: nn.Module, f_fit: nn.Module, rank: int, world: int) -> None:
        """Train as rank ``rank`` of ``world`` processes; ``T_fit``/``f_fit`` wrap ``T``/``f`` (DDP)."""
        if self.batch % world:
            raise ValueError(f"batch {self.batch} is not divisible by the {world} processes")
        if self.gp or self.go:
            what = "gradient_penalty (WGAN-GP)" if self.gp else "gradient_optimality (OTM)"
            raise ValueError(f"{what} is not supported on several processes: "
                             "DistributedDataParallel does not support the double backward it needs")
        self.T_fit, self.f_fit, self.rank, self.world = T_fit, f_fit, int(rank), int(world)
        self._choose_backward()

    # ------------------------------------------------------------------ pieces
    def _local(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (the whole batch in one process)."""
        if self.world == 1:
            return t
        n = t.shape[0] // self.world
        return t.narrow(0, self.rank * n, n)

    def _draws(self, sampler: Sampler, k: int = 1) -> list[torch.Tensor]:
        """``k`` global batches in one draw, as this rank's slices (one process: the batches).

        A sampler with ``takes_rows`` (the image loader) gathers only this rank's rows.
        """
        n, b = self.batch * k, self.batch
        if self.world == 1:
            block = sampler(n, self.generator)
        else:
            local = b // self.world
            rows = (torch.arange(k)[:, None] * b + self.rank * local + torch.arange(local)).flatten()
            block = (sampler(n, self.generator, rows=rows.numpy()) if getattr(sampler, "takes_rows", False)
                     else sampler(n, self.generator)[rows])
            b = local
        return list(block.to(self.device, non_blocking=True).split(b))

    def push(self, x: torch.Tensor, z_per_x: int = 1, generator: torch.Generator | None = None,
             fit: bool = False) -> torch.Tensor:
        """``T(x, z)`` for ``z_per_x`` fresh draws per input: shape ``(B, Z, *shape)``.

        The one "push x through T" of the package. Training draws z from the training
        generator on the training device (the global batch's z, this rank's slice); with
        ``generator`` (evaluation, grids, figures) z is drawn on the CPU from it, so a fixed
        seed gives the same z on every device. ``fit``: through ``T_fit`` (a T-step).
        """
        b = x.shape[0]
        T = self.T_fit if fit else self.T
        if self.noise is None:
            return T(x).unsqueeze(1)
        xr = x.repeat_interleave(z_per_x, dim=0) if z_per_x > 1 else x
        if generator is None:
            z = self._local(self.noise(b * z_per_x * self.world, self.generator, self.device))
        else:
            z = self.noise(b * z_per_x, generator, torch.device("cpu")).to(x.device)
        y = T(xr, z)
        return y.view(b, z_per_x, *y.shape[1:])

    @torch.no_grad()
    def infer(self, x: torch.Tensor, z_per_x: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`push` without gradients, with T in eval mode (BatchNorm running statistics), as float32."""
        was_training = self.T.training
        self.T.eval()
        try:
            return self.push(x, z_per_x, generator).float()
        finally:
            self.T.train(was_training)

    _grad_norm = staticmethod(grad_norm)

    def _t_step(self, x: torch.Tensor, gamma: float, accs: tuple[torch.Tensor, torch.Tensor],
                norm_slot: int | None = None) -> None:
        with self.ctx:
            ys = self.push(x, self.cost.z_size, fit=True)
            cost = self.cost.batch_mean(x, ys.float(), gamma)
            loss = cost - self.f(ys.flatten(0, 1)).float().mean()
        self.opt_t.zero_grad(set_to_none=False)
        loss.backward()
        if norm_slot is not None:
            self._buf[3, norm_slot] = self._grad_norm(self.t_params)
        self.opt_t.step()
        acc_loss, acc_cost = accs
        acc_loss.add_(loss.detach())
        acc_cost.add_(cost.detach())

    def _f_step(self, x: torch.Tensor, y: torch.Tensor, slot: int) -> None:
        with torch.no_grad(), self.ctx:
            tx = self.push(x, 1).flatten(0, 1)
        if self.go:
            tx.requires_grad_(True)
        with self.ctx:
            ftx = self.f_fit(tx).float()
            loss = ftx.mean() - self.f_fit(y).float().mean()
        if self._nan_step is not None and self.step + 1 == self._nan_step:
            loss = loss * float("nan")  # injected fault: the loss of this f-step is NaN
        total = loss + self.gp * gradient_penalty(self.f, tx, y, self.generator) if self.gp else loss
        if self.go:
            go = gradient_optimality(x, tx, ftx)
            total = total + self.go * go
            self._buf[5, slot] += go.detach()
        self.opt_f.zero_grad(set_to_none=False)
        total.backward()
        if self.grad_norms:
            self._buf[4, slot] += self._grad_norm(self.f_params)
        self.opt_f.step()
        self._buf[1, slot] += loss.detach()

    def train_step(self) -> None:
        """One step: ``k_t`` T-steps and ``k_f`` f-steps in ``order`` (no host sync)."""
        slot = self.step % self.log_every
        self._buf[:, slot] = 0
        gamma = self.gamma(self.step)
        # the authors' unfreeze(T); freeze(f): the player being trained in train mode, the
        # other in eval mode (T's BatchNorm then uses and keeps its running statistics while
        # f learns from T's outputs)
        t_step, f_step = ((self._manual.t_step, self._manual.f_step) if self._manual
                          else (self._t_step, self._f_step))

        def t_steps():
            self.T.train()
            self.f.eval()
            _set_requires_grad(self.f_params, False)
            # all k_t input batches in one draw; sums of the T losses/costs (divided at flush)
            xs = self._draws(self.sample_p, self.k_t)
            accs = (self._buf[0, slot], self._buf[2, slot])
            for i, x in enumerate(xs):
                last = self.grad_norms and i == len(xs) - 1
                t_step(x, gamma, accs, slot if last else None)
            _set_requires_grad(self.f_params, True)

        def f_steps():
            self.T.eval()
            self.f.train()
            for _ in range(self.k_f):  # k_f critic steps, each on fresh x and y (NOT: 1)
                f_step(self._draws(self.sample_p)[0], self._draws(self.sample_q)[0], slot)

        for block in ((t_steps, f_steps) if self.order == "map_first" else (f_steps, t_steps)):
            block()
        if self.sched_t is not None:
            self.sched_t.step()
        if self.sched_f is not None:
            self.sched_f.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)

    def _flush(self, n: int, seconds: float) -> dict:
        """Read the last ``n`` steps' losses (one host sync); raise on NaN/inf."""
        # the slots of the last n steps (a run may start off a log boundary after a resume)
        idx = torch.arange(self.step - n, self.step, device=self._buf.device) % self.log_every
        vals = self._buf[:, idx]
        if self.world > 1:  # the mean over ranks: the global batch's losses
            vals = vals.clone()
            torch.distributed.all_reduce(vals)
            vals /= self.world
        vals = vals.double().cpu()
        vals[[0, 2]] /= self.k_t  # sums over the k_t T-steps -> means
        vals[[1, 4, 5]] /= self.k_f  # sums over the k_f f-steps -> means
        finite = torch.isfinite(vals[:3]).all(0)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            bad = self.step - n + first + 1
            t_l, f_l = float(vals[0, first]), float(vals[1, first])
            raise NonFiniteLossError(
                f"non-finite loss at f-step {bad} (T loss {t_l}, f loss {f_l}); stopping. "
                "No checkpoint was written after the last good one.")
        row = {"step": self.step, "loss_t": float(vals[0].mean()), "loss_f": float(vals[1].mean()),
               "cost": float(vals[2].mean()), "gamma": self.gamma(self.step - 1),
               "lr_t": self.opt_t.param_groups[0]["lr"], "lr_f": self.opt_f.param_groups[0]["lr"],
               "wall_s": self.elapsed, "steps_per_s": n / max(seconds, 1e-9)}
        if self.grad_norms:
            row["grad_norm_t"], row["grad_norm_f"] = float(vals[3].mean()), float(vals[4].mean())
        if self.go:
            row["grad_optimality"] = float(vals[5].mean())
        self.history.append(row)
        return row

    def params_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for m in (self.T, self.f) for p in m.parameters())

    # ------------------------------------------------------------------ loop
    def run(self, steps: int, *, on_log: Callable[[dict], None] | None = None,
            on_checkpoint: Callable[["NOTTrainer"], None] | None = None,
            checkpoint_every: int = 0, progress: bool = True, desc: str = "NOT") -> list[dict]:
        """Train until ``steps`` f-steps are done (continuing from ``self.step``)."""
        if checkpoint_every % self.log_every:
            raise ValueError("checkpoint_every must be a multiple of log_every")
        bar = tqdm(total=steps, initial=self.step, desc=desc, disable=not progress,
                   mininterval=1.0, unit="step", dynamic_ncols=True)
        tick = time.perf_counter()
        since = 0
        while self.step < steps:
            self.train_step()
            since += 1
            if self.step % self.log_every == 0 or self.step == steps:
                now = time.perf_counter()
                self.elapsed += now - tick
                row = self._flush(since, now - tick)
                bar.update(since)
                bar.set_postfix(loss_t=f"{row['loss_t']:.3g}", loss_f=f"{row['loss_f']:.3g}",
                                refresh=False)
                if on_log:
                    on_log(row)
                if on_checkpoint and checkpoint_every and (
                        self.step % checkpoint_every == 0 or self.step == steps):
                    if not self.params_finite():
                        raise NonFiniteLossError(f"non-finite parameters at f-step {self.step}; "
                                                 "checkpoint not written")
                    on_checkpoint(self)
                since = 0
                tick = time.perf_counter()
        bar.close()
        return self.history

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return trainer_state.state_dict(self)

    def averaged_T_state(self) -> dict:
        """T's state dict to evaluate: the moving average of its parameters (``ema_decay``), else T's own."""
        return trainer_state.averaged_T_state(self)

    def load_state_dict(self, state: dict) -> None:
        trainer_state.load_state_dict(self, state)
