import pytest
import torch

from notpipe.core.costs import (
    GammaSchedule,
    KernelEnergy,
    StrongQuadratic,
    WeakQuadratic,
    make_cost,
)


def g():
    return torch.Generator().manual_seed(0)


def test_strong_scalings():
    x, y = torch.randn(8, 3, 4, 4, generator=g()), torch.randn(8, 3, 4, 4, generator=g())
    s_sum, s_mean = StrongQuadratic("sum"), StrongQuadratic("mean")
    sq = ((x - y) ** 2).flatten(1).sum(1)
    assert torch.allclose(s_sum.ground(x, y), 0.5 * sq)
    assert torch.allclose(s_mean.ground(x, y), sq / 48)
    # per-pixel mean scaling is F.mse_loss, the authors' image cost
    assert torch.allclose(s_mean(x, y.unsqueeze(1)).mean(), torch.nn.functional.mse_loss(y, x))
    assert torch.allclose(s_sum.pairwise(x[:3], y[:2]).float()[1, 0], s_sum.ground(x[1:2], y[:1])[0])


def test_weak_cost_matches_definition_in_expectation():
    # C(x, mu) = 1/2 E|x-y|^2 - gamma/2 Var(mu); mu = N(m, s^2 I) in d dims
    d, gamma, m, s = 3, 0.4, 2.0, 0.7
    x = torch.zeros(20000, d)
    ys = m + s * torch.randn(20000, 4, d, generator=g())
    est = WeakQuadratic(gamma, 4)(x, ys).mean()
    exact = 0.5 * (d * m ** 2 + d * s ** 2) - gamma / 2 * d * s ** 2
    assert abs(float(est) - exact) < 0.03
    # gamma = 0 with a point mass equals the strong cost
    ys0 = torch.ones(5, 4, d)
    assert torch.allclose(WeakQuadratic(0.0, 4)(torch.zeros(5, d), ys0), StrongQuadratic()(torch.zeros(5, d), ys0[:, :1]))


def test_kernel_cost_matches_definition_and_has_finite_grad_at_collapse():
    d, gamma = 2, 0.5
    x = torch.zeros(20000, d)
    ys = torch.randn(20000, 4, d, generator=g())
    est = KernelEnergy(gamma, 4)(x, ys).mean()
    ref_y = torch.randn(400000, d, generator=g())
    e_xy = ref_y.norm(dim=1).mean()
    e_yy = (ref_y[:200000] - ref_y[200000:]).norm(dim=1).mean()
    exact = 0.5 * e_xy - gamma / 2 * 0.5 * e_yy
    assert abs(float(est - exact)) < 0.02
    ys = torch.zeros(3, 4, d, requires_grad=True)  # every draw identical: |y - y'| = 0
    KernelEnergy(gamma, 4)(torch.zeros(3, d), ys).sum().backward()
    assert torch.isfinite(ys.grad).all()


def test_make_cost_and_validation():
    assert isinstance(make_cost({"name": "strong"}), StrongQuadratic)
    c = make_cost({"name": "weak", "gamma": 0.66, "z_size": 8, "scaling": "mean"})
    assert (c.gamma_max, c.z_size, c.scaling, c.stochastic) == (0.66, 8, "mean", True)
    assert isinstance(make_cost({"name": "kernel", "gamma": 0.3}), KernelEnergy)
    with pytest.raises(ValueError, match="ill-posed"):
        WeakQuadratic(1.2)
    with pytest.raises(ValueError, match="unknown cost 'energy'"):
        make_cost({"name": "energy"})
    with pytest.raises(ValueError, match="gamma=1.5 > 1 is unbounded below"):
        KernelEnergy(1.5)


def test_kernel_cost_above_gamma_one_is_unbounded_below():
    """9 of 10 draws at x, one at distance R: the estimate is R/20 (1 - gamma), so
    gamma <= 1 keeps it >= 0 and gamma > 1 sends it to -inf as R grows (why > 1 is refused)."""
    cost = KernelEnergy(1.0, z_size=10)
    x = torch.zeros(1, 2, dtype=torch.float64)
    def draws(r):
        ys = torch.zeros(1, 10, 2, dtype=torch.float64)
        ys[0, 0, 0] = r
        return ys
    for r in (10.0, 100.0):
        assert float(cost(x, draws(r))) == pytest.approx(0.0, abs=1e-5)  # distances clamp at 1e-6
        assert float(cost(x, draws(r), gamma=1.5)) == pytest.approx(-r / 40, abs=1e-5)


def test_gamma_schedule_linear_warmup():
    s = GammaSchedule(0.66, 25000)
    assert s(0) == 0 and abs(s(12500) - 0.33) < 1e-12 and s(25000) == 0.66 and s(10 ** 6) == 0.66
    assert GammaSchedule(0.5, 0)(0) == 0.5


@pytest.mark.parametrize("z", [1, 3])
@pytest.mark.parametrize("scaling", ["sum", "mean"])
def test_fused_batch_mean_equals_definition(z, scaling):
    c = StrongQuadratic(scaling)
    x = torch.randn(6, 5, generator=g())
    ys = torch.randn(6, z, 5, generator=g()).requires_grad_()
    fused = c.batch_mean(x, ys)
    (gf,) = torch.autograd.grad(fused, ys)
    plain = c(x, ys).mean()
    (gp,) = torch.autograd.grad(plain, ys)
    assert torch.allclose(fused, plain) and torch.allclose(gf, gp)


def test_kernel_raw_scaling_is_the_authors_energy_loss():
    """Kernel NOT's T loss term, written as their notebook does (KNOT_training_weak, cell 17):
    mean ||X - T_XZ|| - gamma * .5 * cdist(T_XZ, T_XZ).mean() * Z / (Z - 1), on images."""
    import torch

    from notpipe.core.costs import make_cost

    g = torch.Generator().manual_seed(3)
    b, z, shape = 5, 4, (3, 8, 8)
    x = torch.randn(b, *shape, generator=g)
    ys = torch.randn(b, z, *shape, generator=g)
    gamma = 0.333
    X = x[:, None].repeat(1, z, 1, 1, 1)
    var = .5 * torch.cdist(ys.flatten(start_dim=2), ys.flatten(start_dim=2)).mean() * z / (z - 1)
    theirs = (X - ys).flatten(start_dim=2).norm(dim=2).mean() - gamma * var
    cost = make_cost({"name": "kernel", "gamma": gamma, "z_size": z, "scaling": "raw"})
    assert torch.allclose(cost.batch_mean(x, ys, gamma), theirs, rtol=1e-6)
    # the per-pixel "mean" scaling weighs it 2 sqrt(D) times less: 443x at 3x128x128
    mean = make_cost({"name": "kernel", "gamma": gamma, "z_size": z, "scaling": "mean"})
    ratio = cost.batch_mean(x, ys, gamma) / mean.batch_mean(x, ys, gamma)
    assert torch.allclose(ratio, torch.tensor(2 * (3 * 8 * 8) ** 0.5), rtol=1e-5)
    assert round(2 * (3 * 128 * 128) ** 0.5) == 443


def test_inner_product_form_is_otms_transport_term():
    """form inner with half_mean: OTM's -mean(x * y); it is the half-mean quadratic cost minus the terms in x
    alone and in y alone (so the map's gradient differs only by the y term, which the potential absorbs)."""
    import torch

    from notpipe.core.costs import StrongQuadratic, make_cost

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 1, 3, 4, 4, generator=g)
    inner = make_cost({"name": "strong", "form": "inner", "scaling": "half_mean"})
    dist = StrongQuadratic("half_mean")
    d = x[0].numel()
    assert torch.allclose(inner.batch_mean(x, y), -(x * y[:, 0]).mean())
    assert torch.allclose(inner(x, y), -(x * y[:, 0]).flatten(1).mean(1))
    gap = dist(x, y) - inner(x, y)
    assert torch.allclose(gap, 0.5 * (x.flatten(1).pow(2).sum(1) + y[:, 0].flatten(1).pow(2).sum(1)) / d, atol=1e-6)
    assert torch.equal(inner.ground(x, y[:, 0]), dist.ground(x, y[:, 0]))  # evaluation: the distance
    assert torch.allclose(StrongQuadratic("sum", "inner").batch_mean(x, y), -(x * y[:, 0]).flatten(1).sum(1).mean())
    with pytest.raises(ValueError, match="form of the strong cost"):
        make_cost({"name": "weak", "gamma": 0.5, "form": "inner"})
    with pytest.raises(ValueError, match="half_mean is for quadratic costs"):
        make_cost({"name": "kernel", "gamma": 0.5, "scaling": "half_mean"})
