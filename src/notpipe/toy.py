"""Toy stage: NOT on 2-D / Gaussian problems, checked against exact discrete OT.

``build`` turns one validated experiment block into a ready :class:`NOTTrainer`;
``train`` runs it with atomic checkpoints and automatic resume; ``evaluate``
computes every metric of the toy stage on fresh samples; ``plot_samples``
prepares the arrays the figures draw.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoint as ckpt
from . import discrete_ot as dot
from . import fingerprint
from .costs import Cost, GammaSchedule, make_cost
from .models import GaussianNoise, VectorMap, VectorPotential
from .optim import make_adam
from .samplers import Gaussian, Sampler, make_sampler
from .trainer import NOTTrainer

log = logging.getLogger(__name__)

#: offsets of the evaluation RNG streams, far from the training generator
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class ToySetup:
    trainer: NOTTrainer
    source: Sampler
    target: Sampler
    cost: Cost


def build(exp: dict) -> ToySetup:
    """Samplers, networks, cost, optimisers and trainer of one experiment (CPU)."""
    seed = int(exp["seed"])
    torch.manual_seed(seed)  # network initialisation
    source = make_sampler(exp["source"], seed=seed)
    target = make_sampler(exp["target"], seed=seed + 1)
    cost = make_cost(exp["cost"])
    dim = source.sample(1, torch.Generator().manual_seed(0)).shape[1]
    m, o = exp["model"], exp["optim"]
    z_dim = m["z_dim"] if cost.stochastic else 0
    T = VectorMap(dim, m["hidden_t"], z_dim)
    f = VectorPotential(dim, m["hidden_f"])
    opt_t = make_adam(T, o["lr_t"], o["betas"], o["weight_decay"], o["impl"])
    opt_f = make_adam(f, o["lr_f"], o["betas"], o["weight_decay"], o["impl"])
    trainer = NOTTrainer(
        T, f, cost, source, target, opt_t, opt_f,
        noise=GaussianNoise(z_dim, m["z_std"]) if z_dim else None,
        k_t=exp["k_t"], batch=exp["batch"],
        gamma_schedule=GammaSchedule(cost.gamma_max, exp["cost"].get("gamma_warmup", 0)),
        generator=torch.Generator().manual_seed(seed), log_every=exp["log_every"])
    return ToySetup(trainer, source, target, cost)


def train(exp: dict, model_path: str | Path, log_csv: str | Path, ckpt_dir: str | Path | None = None,
          keep: int = 2, progress: bool = True, name: str = "toy") -> ToySetup:
    """Train and write the final model (``model_path``) and the training log (``log_csv``).

    Resumes from the newest valid checkpoint in ``ckpt_dir`` only when it was written
    by the same experiment (:mod:`notpipe.fingerprint`); otherwise the old checkpoints
    are moved aside and training starts at step 0.
    """
    setup = build(exp)
    tr = setup.trainer
    fp = fingerprint.toy(exp)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else Path(model_path).parent / "checkpoints"
    ckpt.resume(tr, ckpt_dir, fp, exp["steps"], name)

    def write_log():
        pd.DataFrame(tr.history).to_csv(log_csv, index=False)

    def save(t: NOTTrainer):
        ckpt.atomic_save({"trainer": t.state_dict(), "experiment": exp, "fingerprint": fp},
                         ckpt.checkpoint_path(ckpt_dir, t.step))
        ckpt.prune(ckpt_dir, keep)
        write_log()

    Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
    tr.run(exp["steps"], on_checkpoint=save, checkpoint_every=exp["checkpoint_every"],
           progress=progress, desc=name)
    write_log()
    ckpt.atomic_save({"T": tr.T.state_dict(), "f": tr.f.state_dict(), "experiment": exp, "fingerprint": fp,
                      "step": tr.step, "train_seconds": tr.elapsed}, model_path)
    return setup


def load_trained(model_path: str | Path, expected: dict | None = None) -> tuple[ToySetup, dict]:
    """Rebuild an experiment from a model file written by :func:`train`.

    With ``expected`` (the experiment block to evaluate), a model trained by another
    configuration, or for another number of steps, raises
    :class:`~notpipe.fingerprint.FingerprintMismatch`.
    """
    state = ckpt.load(model_path)
    if expected is not None:
        fingerprint.require(state, fingerprint.toy(expected), model_path, expected["steps"])
    setup = build(state["experiment"])
    setup.trainer.T.load_state_dict(state["T"])
    setup.trainer.f.load_state_dict(state["f"])
    setup.trainer.T.eval()
    return setup, state


@torch.no_grad()
def _push(setup: ToySetup, x: torch.Tensor, z_per_x: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, z_per_x, d)`` outputs of T with noise from ``gen``."""
    tr = setup.trainer
    saved, tr.generator = tr.generator, gen
    try:
        return tr.push(x, z_per_x)
    finally:
        tr.generator = saved


def evaluate(setup: ToySetup, train_seconds: float, n_eval: int = 4096, z_eval: int = 16,
             sinkhorn_eps: float = 0.05, emd_max_iter: int = 10_000_000, seed: int = 0) -> dict:
    """Every toy metric on ``n_eval`` fresh samples (see README, toy stage)."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    src, tgt, cost = setup.source, setup.target, setup.cost
    x = src(n_eval, gen)
    y1, y2, y3 = (tgt(n_eval, gen) for _ in range(3))
    stochastic = setup.trainer.noise is not None
    # one pass of z_eval draws per input serves T(x,z), E_z T(x,z) and Var_z T(x,z)
    draws = _push(setup, x, z_eval if stochastic else 1, gen)
    tx, mean_tx = draws[:, 0], draws.mean(1)

    out: dict[str, float] = {}
    out["not_cost"] = float(cost.ground(x, tx).mean())
    M = cost.pairwise(x, y1)
    plan, exact, emd_s = dot.emd(M, emd_max_iter)
    out["ot_cost_exact"] = exact
    out["cost_ratio"] = out["not_cost"] / exact if exact > 0 else float("nan")
    reg = sinkhorn_eps * float(M.mean())
    out["ot_cost_sinkhorn"], sk_s = dot.sinkhorn_cost(M, reg)
    out["sinkhorn_reg"] = reg
    t0 = time.perf_counter()
    out["w2_pushforward"] = dot.w2(tx, y2, emd_max_iter)
    out["w2_noise_floor"] = dot.w2(y3, y2, emd_max_iter)
    emd_s += time.perf_counter() - t0
    bary = dot.barycentric_map(plan, y1)
    out["bary_gap"] = float(((mean_tx.double().numpy() - bary) ** 2).sum(1).mean())
    if isinstance(src, Gaussian) and isinstance(tgt, Gaussian):
        A, b = dot.gaussian_map(src.mean, src.cov, tgt.mean, tgt.cov)
        t_star = x.double().numpy() @ A + b
        var_q = float(np.trace(tgt.cov))
        out["l2_uvp"] = dot.l2_uvp(mean_tx, t_star, var_q)
        out["l2_uvp_discrete"] = dot.l2_uvp(bary, t_star, var_q)
        if cost.name in ("strong", "weak"):
            unit = torch.zeros(1, x.shape[1], dtype=torch.float64)
            unit[0, 0] = 1.0
            scale = float(cost.pairwise(torch.zeros_like(unit), unit))  # c(0, e1) = factor
            out["ot_cost_closed_form"] = scale * dot.gaussian_w2_squared(src.mean, src.cov, tgt.mean, tgt.cov)
    if stochastic:
        out["cond_var"] = float(draws.double().var(1).sum(-1).mean())
    if tgt.modes is not None:
        out["modes_covered"] = modes_covered(tgt, tx)
    out["train_seconds"] = float(train_seconds)
    out["emd_seconds"] = emd_s
    out["sinkhorn_seconds"] = sk_s
    return out


def modes_covered(target: Sampler, y: torch.Tensor) -> float:
    """Fraction of the target's modes that receive at least half of their share of ``y``."""
    idx = target.assign_modes(y)
    frac = torch.bincount(idx, minlength=len(target.mode_weights)).double() / len(y)
    return float((frac >= 0.5 * target.mode_weights.double()).double().mean())


def plot_samples(setup: ToySetup, n_plot: int = 1024, n_batch: int = 64, n_fixed: int = 5,
                 n_draws: int = 64, seed: int = 0, emd_max_iter: int = 10_000_000) -> dict[str, np.ndarray]:
    """Arrays for the figures: scatter, batch transport vs the emd plan, one-to-many."""
    gen = torch.Generator().manual_seed(seed + 2 * EVAL_SEED_OFFSET)
    x, y = setup.source(n_plot, gen), setup.target(n_plot, gen)
    tx = _push(setup, x, 1, gen)[:, 0]
    xb, yb = setup.source(n_batch, gen), setup.target(n_batch, gen)
    txb = _push(setup, xb, 1, gen)[:, 0]
    plan, _, _ = dot.emd(setup.cost.pairwise(xb, yb), emd_max_iter)
    out = {"x": x, "y": y, "tx": tx, "xb": xb, "txb": txb, "yb": yb, "plan": plan}
    if setup.trainer.noise is not None:
        x_fixed = setup.source(n_fixed, gen)
        out["x_fixed"] = x_fixed
        out["ys_fixed"] = _push(setup, x_fixed, n_draws, gen)
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in out.items()}
