r"""Reference solutions with POT: exact and entropic discrete OT, closed forms.

These are the yardsticks the toy stage compares NOT against. Conventions:

* point clouds are uniform empirical measures of ``n`` points;
* ``M`` is a ground-cost matrix (float64), e.g. from ``Cost.pairwise``;
* the exact solver must converge: a POT warning raises :class:`OTSolverError`
  (docs/pitfalls.md#emd-iteration-limit: ``numItermax`` too small silently returns a wrong cost).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import ot
import torch


class OTSolverError(RuntimeError):
    """POT did not reach an optimal solution."""


def _uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.ascontiguousarray(a, dtype=np.float64)


def emd(M, max_iter: int = 10_000_000) -> tuple[np.ndarray, float, float]:
    r"""Exact OT between uniform measures: ``(plan, cost, seconds)``.

    .. math:: \min_{\pi \in \Pi(a, b)} \langle \pi, M \rangle

    Raises
    ------
    OTSolverError
        if POT reports that ``numItermax`` was reached or the problem is infeasible.
    """
    M = _np(M)
    n, m = M.shape
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported through the log instead
        plan, log = ot.emd(_uniform(n), _uniform(m), M, numItermax=int(max_iter), log=True)
    seconds = time.perf_counter() - t0
    if log.get("warning"):
        raise OTSolverError(f"ot.emd did not converge on a {n}x{m} problem with "
                            f"numItermax={max_iter}: {log['warning']} (raise toy.emd_max_iter)")
    return plan, float(log["cost"]), seconds


def sinkhorn_cost(M, reg: float, max_iter: int = 2000, tol: float = 1e-6) -> tuple[float, float]:
    r"""Transport cost :math:`\langle \pi_\varepsilon, M\rangle` of the log-domain
    Sinkhorn plan, ``(cost, seconds)``. Runs on torch (float64) for speed."""
    Mt = torch.as_tensor(_np(M))
    n, m = Mt.shape
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cost = ot.sinkhorn2(a, b, Mt, reg, method="sinkhorn_log", numItermax=max_iter, stopThr=tol)
    return float(cost), time.perf_counter() - t0


def w2(x, y, max_iter: int = 10_000_000) -> float:
    r"""Exact :math:`W_2 = (\min_\pi \sum \pi_{ij}\|x_i-y_j\|^2)^{1/2}` between point clouds."""
    x, y = _np(x), _np(y)
    M = ot.dist(x, y, metric="sqeuclidean")
    return float(np.sqrt(max(emd(M, max_iter)[1], 0.0)))


def barycentric_map(plan: np.ndarray, y) -> np.ndarray:
    r"""Barycentric projection :math:`T(x_i) = \sum_j \pi_{ij} y_j / \sum_j \pi_{ij}`."""
    y = _np(y)
    return (plan @ y) / plan.sum(1, keepdims=True)


def gaussian_map(mean_s, cov_s, mean_t, cov_t):
    r"""Closed-form OT map between Gaussians: ``T*(x) = x @ A + b`` with

    .. math:: A = \Sigma_s^{-1/2}(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2})^{1/2}\Sigma_s^{-1/2}

    (``ot.gaussian.bures_wasserstein_mapping``). Returns ``(A, b)``.
    """
    A, b = ot.gaussian.bures_wasserstein_mapping(_np(mean_s), _np(mean_t), _np(cov_s), _np(cov_t))
    return np.asarray(A), np.asarray(b)


def gaussian_w2_squared(mean_s, cov_s, mean_t, cov_t) -> float:
    """Closed-form :math:`W_2^2` between two Gaussians (Bures-Wasserstein)."""
    w = ot.gaussian.bures_wasserstein_distance(_np(mean_s), _np(mean_t), _np(cov_s), _np(cov_t))
    return float(w) ** 2


def l2_uvp(t_hat, t_star, var_target: float) -> float:
    r"""Unexplained variance percentage :math:`100\,\mathbb{E}\|\hat T(x) - T^*(x)\|^2/\mathrm{Var}(Q)`."""
    diff = _np(t_hat) - _np(t_star)
    return float(100.0 * (diff ** 2).sum(1).mean() / var_target)
