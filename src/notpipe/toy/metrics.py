"""Toy stage, evaluation: every metric on fresh samples, and the arrays the figures draw.

Metrics are listed in the README (toy stage). All randomness comes from
generators seeded from the experiment seed plus :mod:`notpipe.seeds` offsets,
never from the training stream.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from notpipe.seeds import TOY_EVAL, TOY_FIDELITY, TOY_PLOT
from notpipe.toy import discrete_ot as dot
from notpipe.toy.samplers import Gaussian, Sampler
from notpipe.toy.setup import ToySetup


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased (U-statistic) energy distance ``2E|A-B| - E|A-A'| - E|B-B'|`` (Székely & Rizzo).

    Zero in expectation when the two laws agree, so there is no noise floor to subtract
    (measured spread over five draws of 4096 points: a 95 % half-width of 15-40 % of the value).
    """
    a, b = a.double(), b.double()
    n, m = len(a), len(b)
    ab = torch.cdist(a, b).mean()
    aa = torch.cdist(a, a).sum() / (n * (n - 1))
    bb = torch.cdist(b, b).sum() / (m * (m - 1))
    return float(2 * ab - aa - bb)


def _spread(out: dict, name: str, values: list[float]) -> None:
    """``name`` = mean over the evaluation draws, ``name_std`` their standard deviation (ddof 1),
    ``name_ci95`` the half-width of the 95 % interval of the mean (normal approximation)."""
    v = np.asarray(values, dtype=float)
    out[name] = float(v.mean())
    out[f"{name}_std"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    out[f"{name}_ci95"] = 1.96 * out[f"{name}_std"] / np.sqrt(len(v)) if len(v) > 1 else float("nan")


def fidelity(setup: ToySetup, n_eval: int, draws: int, gen: torch.Generator,
             emd_max_iter: int = 10_000_000) -> dict:
    """Distances of the push-forward to the target over ``draws`` independent evaluation draws.

    Each draw takes fresh x (one z each), two fresh target sets y, y': W2(T(x), y), the
    noise floor W2(y', y), their ratio, and the energy distance of T(x) to y. Mean, std and
    95 % half-width over the draws: one W2 on 2-4k points varies by ±10-20 % from draw
    to draw (the floor alone 0.069-0.097), so a single draw cannot tell two maps apart.
    """
    w2s, floors, ratios, energies = [], [], [], []
    for _ in range(draws):
        x, y, y_floor = setup.source(n_eval, gen), setup.target(n_eval, gen), setup.target(n_eval, gen)
        tx = setup.trainer.infer(x, 1, gen)[:, 0]
        w2s.append(dot.w2(tx, y, emd_max_iter))
        floors.append(dot.w2(y_floor, y, emd_max_iter))
        ratios.append(w2s[-1] / floors[-1])
        energies.append(energy_distance(tx, y))
    out: dict[str, float] = {"eval_draws": float(draws)}
    for name, vals in (("w2_pushforward", w2s), ("w2_noise_floor", floors), ("w2_over_floor", ratios),
                       ("energy_distance", energies)):
        _spread(out, name, vals)
    return out


def evaluate(setup: ToySetup, train_seconds: float, n_eval: int = 4096, z_eval: int = 16,
             sinkhorn_eps: float = 0.05, emd_max_iter: int = 10_000_000, seed: int = 0,
             eval_draws: int = 5) -> dict:
    """Every toy metric on ``n_eval`` fresh samples (see README, toy stage); the fidelity
    metrics (:func:`fidelity`) over ``eval_draws`` independent draws, with their spread."""
    gen = torch.Generator().manual_seed(seed + TOY_EVAL)
    src, tgt, cost = setup.source, setup.target, setup.cost
    x = src(n_eval, gen)
    y1 = tgt(n_eval, gen)
    stochastic = setup.trainer.noise is not None
    # one pass of z_eval draws per input serves T(x,z), E_z T(x,z) and Var_z T(x,z)
    draws = setup.trainer.infer(x, z_eval if stochastic else 1, gen)
    tx, mean_tx = draws[:, 0], draws.mean(1)

    out: dict[str, float] = {"dim": float(x.shape[1])}
    out["not_cost"] = float(cost.ground(x, tx).mean())
    M = cost.pairwise(x, y1)
    plan, exact, emd_s = dot.emd(M, emd_max_iter)
    out["ot_cost_exact"] = exact
    out["cost_ratio"] = out["not_cost"] / exact if exact > 0 else float("nan")
    reg = sinkhorn_eps * float(M.mean())
    out["ot_cost_sinkhorn"], sk_s = dot.sinkhorn_cost(M, reg)
    out["sinkhorn_reg"] = reg
    t0 = time.perf_counter()
    out.update(fidelity(setup, n_eval, eval_draws, torch.Generator().manual_seed(seed + TOY_FIDELITY),
                        emd_max_iter))
    emd_s += time.perf_counter() - t0
    bary = dot.barycentric_map(plan, y1)
    out["bary_gap"] = float(((mean_tx.double().numpy() - bary) ** 2).sum(1).mean())
    if isinstance(src, Gaussian) and isinstance(tgt, Gaussian):
        A, b = dot.gaussian_map(src.mean, src.cov, tgt.mean, tgt.cov)
        t_star = x.double().numpy() @ A + b
        var_q = float(np.trace(tgt.cov))
        out["l2_uvp"] = dot.l2_uvp(mean_tx, t_star, var_q)
        out["l2_uvp_discrete"] = dot.l2_uvp(bary, t_star, var_q)
        # the W2 benchmark's baselines: the identity, and the best linear map, i.e. the
        # closed-form map between Gaussians fitted to n_eval samples of each side
        out["l2_uvp_identity"] = dot.l2_uvp(x, t_star, var_q)
        xs, ys = x.double().numpy(), y1.double().numpy()
        A_fit, b_fit = dot.gaussian_map(xs.mean(0), np.cov(xs.T), ys.mean(0), np.cov(ys.T))
        out["l2_uvp_linear"] = dot.l2_uvp(xs @ A_fit + b_fit, t_star, var_q)
        if cost.name in ("strong", "weak", "none"):  # none (WGAN): its map still has a quadratic cost
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
    gen = torch.Generator().manual_seed(seed + TOY_PLOT)
    x, y = setup.source(n_plot, gen), setup.target(n_plot, gen)
    tx = setup.trainer.infer(x, 1, gen)[:, 0]
    xb, yb = setup.source(n_batch, gen), setup.target(n_batch, gen)
    txb = setup.trainer.infer(xb, 1, gen)[:, 0]
    plan, _, _ = dot.emd(setup.cost.pairwise(xb, yb), emd_max_iter)
    out = {"x": x, "y": y, "tx": tx, "xb": xb, "txb": txb, "yb": yb, "plan": plan}
    if setup.trainer.noise is not None:
        x_fixed = setup.source(n_fixed, gen)
        out["x_fixed"] = x_fixed
        out["ys_fixed"] = setup.trainer.infer(x_fixed, n_draws, gen)
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in out.items()}
