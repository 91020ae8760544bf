"""The resumable state of a :class:`~notpipe.core.trainer.NOTTrainer`: networks, optimisers,
schedulers, γ schedule, the sampling generator, the global RNG states and the average of T."""

from __future__ import annotations

import torch.nn as nn

from notpipe.core.checkpoint import rng_state, set_rng_state


def _unwrap(module: nn.Module) -> nn.Module:
    """The original module of a ``torch.compile``'d one (state dicts without ``_orig_mod.``)."""
    return getattr(module, "_orig_mod", module)


def state_dict(tr) -> dict:
    return {
        "step": tr.step, "elapsed": tr.elapsed, "history": list(tr.history),
        "T": _unwrap(tr.T).state_dict(), "f": _unwrap(tr.f).state_dict(),
        "opt_t": tr.opt_t.state_dict(), "opt_f": tr.opt_f.state_dict(),
        "sched_t": tr.sched_t.state_dict() if tr.sched_t is not None else None,
        "sched_f": tr.sched_f.state_dict() if tr.sched_f is not None else None,
        "gamma": {"gamma_max": tr.gamma.gamma_max, "warmup": tr.gamma.warmup},
        "generator": tr.generator.get_state(), "rng": rng_state(),
        "T_ema": tr.ema.state_dict() if tr.ema is not None else None,
    }


def averaged_T_state(tr) -> dict:
    """T's state dict to evaluate: the moving average of its parameters (``ema_decay``), else T's own."""
    if tr.ema is None:
        return {k: v.detach().clone() for k, v in _unwrap(tr.T).state_dict().items()}
    return tr.ema.model_state()


def load_state_dict(tr, state: dict) -> None:
    _unwrap(tr.T).load_state_dict(state["T"])
    _unwrap(tr.f).load_state_dict(state["f"])
    tr.opt_t.load_state_dict(state["opt_t"])
    tr.opt_f.load_state_dict(state["opt_f"])
    if tr.sched_t is not None and state.get("sched_t") is not None:
        tr.sched_t.load_state_dict(state["sched_t"])
    if tr.sched_f is not None and state.get("sched_f") is not None:
        tr.sched_f.load_state_dict(state["sched_f"])
    tr.generator.set_state(state["generator"])
    set_rng_state(state["rng"])
    if tr.ema is not None:
        tr.ema.load_state_dict(state.get("T_ema"))
    tr.step, tr.elapsed = int(state["step"]), float(state["elapsed"])
    tr.history = list(state["history"])
