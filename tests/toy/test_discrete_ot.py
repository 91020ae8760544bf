import numpy as np
import ot
import pytest
import torch

from notpipe.toy import discrete_ot as dot


def test_emd_identity_and_permutation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    perm = rng.permutation(50)
    plan, cost, seconds = dot.emd(ot.dist(x, x[perm]))
    assert cost == pytest.approx(0.0, abs=1e-12) and seconds >= 0
    assert np.allclose(plan.sum(1), 1 / 50) and np.allclose(dot.barycentric_map(plan, x[perm]), x)


def test_emd_fails_loudly_when_not_converged():
    rng = np.random.default_rng(1)
    M = ot.dist(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)))
    with pytest.raises(dot.OTSolverError, match="did not converge"):
        dot.emd(M, max_iter=10)


def test_sinkhorn_close_to_exact_for_small_eps():
    rng = np.random.default_rng(2)
    M = ot.dist(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 1)
    exact = dot.emd(M)[1]
    cost, _ = dot.sinkhorn_cost(M, reg=0.01 * M.mean())
    assert exact <= cost + 1e-9 and cost == pytest.approx(exact, rel=0.05)


def test_w2_shift():
    x = np.random.default_rng(3).normal(size=(100, 3))
    assert dot.w2(x, x + np.array([3.0, 4.0, 0.0])) == pytest.approx(5.0, rel=1e-9)


def test_gaussian_closed_form_and_l2_uvp():
    A = np.array([[2.0, 0.3], [0.3, 1.0]])
    m1, m2 = np.zeros(2), np.array([1.0, -1.0])
    S1, S2 = np.eye(2), A @ A
    Am, b = dot.gaussian_map(m1, S1, m2, S2)
    assert np.allclose(Am, A) and np.allclose(b, m2)  # S1 = I: T*(x) = m2 + S2^{1/2} x
    w2sq = dot.gaussian_w2_squared(m1, S1, m2, S2)
    assert w2sq == pytest.approx(2.0 + np.trace(S1 + S2 - 2 * A))
    x = torch.randn(10, 2).numpy()
    assert dot.l2_uvp(x, x, 1.0) == 0.0
    assert dot.l2_uvp(x + 1, x, 4.0) == pytest.approx(50.0)
