import math

import numpy as np
import pytest
import torch

from notpipe.toy.samplers import SAMPLERS, Circles, Gaussian, make_sampler, random_spd

SPECS = [
    {"name": "gaussian", "dim": 3}, {"name": "gaussian", "dim": 4, "cov": "random"},
    {"name": "moons"}, {"name": "8gaussians"}, {"name": "swissroll", "whiten": True},
    {"name": "circles"}, {"name": "discrete", "n": 5, "dim": 3}, {"name": "gaussian_mixture", "dim": 2},
]


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_shape_dtype_and_seeded(spec):
    s = make_sampler(spec, seed=1)
    a, b, c = s(256, g(0)), s(256, g(0)), s(256, g(1))
    assert a.dtype == torch.float32 and a.shape == (256, s.dim if hasattr(s, "dim") else 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_every_sampler_name_is_buildable():
    built = {spec["name"] for spec in SPECS}
    assert built == set(SAMPLERS)


def test_unknown_sampler_and_params_rejected():
    with pytest.raises(ValueError, match="unknown sampler 'moon'; allowed: gaussian"):
        make_sampler({"name": "moon"})
    with pytest.raises(ValueError, match="does not take"):
        make_sampler({"name": "moons", "radii": [1]})


def test_gaussian_moments_and_random_spd():
    cov = random_spd(4, seed=3)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0.3
    assert np.allclose(random_spd(4, 3), cov) and not np.allclose(random_spd(4, 4), cov)
    s = Gaussian(mean=[1, 2, 3, 4], cov=cov)
    x = s(200_000, g()).double().numpy()
    assert np.allclose(x.mean(0), [1, 2, 3, 4], atol=0.02)
    assert np.allclose(np.cov(x.T), cov, atol=0.03)


def test_whitened_swissroll_is_standardised():
    x = make_sampler({"name": "swissroll", "whiten": True})(100_000, g(5))
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.02)
    assert torch.allclose(x.std(0), torch.ones(2), atol=0.02)
    # full-covariance (ZCA) whitening as the authors: the raw roll's correlation (~0.09) is gone
    assert abs(float(torch.corrcoef(x.T)[0, 1])) < 0.01
    raw = make_sampler({"name": "swissroll"})(100_000, g(5))
    assert float(torch.corrcoef(raw.T)[0, 1]) > 0.05


def test_whitened_8gaussians_is_the_authors_target():
    s = make_sampler({"name": "8gaussians", "whiten": True})
    assert s.modes.norm(dim=1) == pytest.approx([12 / 73**0.5] * 8, abs=1e-5)  # radius 1.4045
    assert s.noise == pytest.approx(1 / 73**0.5)  # std 0.1170
    x = s(200_000, g(6)).double()
    assert torch.allclose(torch.cov(x.T), torch.eye(2, dtype=torch.float64), atol=0.02)


def test_mode_assignment_recovers_modes():
    for spec in [{"name": "8gaussians"}, {"name": "discrete", "n": 6}, {"name": "circles"},
                 {"name": "circles", "radii": [0.5], "centers": [[-3, 0], [3, 0]]}]:
        s = make_sampler(spec)
        y = s(4000, g())
        frac = torch.bincount(s.assign_modes(y), minlength=len(s.mode_weights)) / 4000.0
        assert torch.allclose(frac, s.mode_weights, atol=0.04), spec


def test_circles_radii():
    s = Circles(radii=[1.0, 3.0], noise=0.0)
    r = s(1000, g()).norm(dim=1)
    assert torch.all(((r - 1).abs() < 1e-5) | ((r - 3).abs() < 1e-5))
    assert math.isclose(float((r < 2).double().mean()), 0.5, abs_tol=0.06)
