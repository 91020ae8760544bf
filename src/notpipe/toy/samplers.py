"""Seeded samplers of the toy distributions P (input) and Q (target).

Every sampler draws ``(n, dim)`` float32 tensors with an explicit
``torch.Generator`` so that a run is reproducible and its sampling state can be
checkpointed. Samplers with known modes (8gaussians, circles, discrete,
gaussian_mixture) also assign points to their nearest mode, which the toy
metrics use for ``modes_covered``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAMPLERS = ("gaussian", "moons", "8gaussians", "swissroll", "circles", "discrete", "gaussian_mixture")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def random_spd(dim: int, seed: int, low: float = -0.5, high: float = 0.5) -> np.ndarray:
    """Random SPD matrix ``Q diag(10**u) Q^T`` with ``u ~ U(low, high)`` (float64)."""
    g = _gen(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed rotation
    eig = 10 ** (low + (high - low) * torch.rand(dim, generator=g, dtype=torch.float64))
    cov = (q * eig) @ q.T
    return ((cov + cov.T) / 2).numpy()


class Sampler:
    """Base class: ``sample(n, generator)`` -> ``(n, dim)`` float32 tensor."""

    dim: int = 2
    modes: torch.Tensor | None = None  # (M, dim) mode centres, when the target has modes
    mode_weights: torch.Tensor | None = None  # (M,) mass of each mode

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def assign_modes(self, y: torch.Tensor) -> torch.Tensor:
        """Index of the nearest mode of every row of ``y``."""
        if self.modes is None:
            raise ValueError(f"{type(self).__name__} has no modes")
        return torch.cdist(y.float(), self.modes.float()).argmin(dim=1)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample(n, generator)


class Gaussian(Sampler):
    def __init__(self, dim: int = 2, mean=None, cov="identity", seed: int = 0):
        self.dim = int(dim if mean is None else len(mean))
        self.mean = np.zeros(self.dim) if mean is None else np.asarray(mean, dtype=np.float64)
        if isinstance(cov, str):
            if cov == "random":
                cov = random_spd(self.dim, seed)
            elif cov == "identity":
                cov = np.eye(self.dim)
            else:
                raise ValueError(f"gaussian: unknown cov {cov!r}; allowed: random, identity or a matrix")
        self.cov = np.asarray(cov, dtype=np.float64)
        if self.cov.shape != (self.dim, self.dim):
            raise ValueError(f"gaussian: cov shape {self.cov.shape} does not match dim {self.dim}")
        self._mean = torch.tensor(self.mean, dtype=torch.float32)
        self._chol = torch.linalg.cholesky(torch.tensor(self.cov)).float().T.contiguous()

    def sample(self, n, generator=None):
        z = torch.randn(n, self.dim, generator=generator)
        return z @ self._chol + self._mean


class Moons(Sampler):
    """Two interleaved half circles (as sklearn's ``make_moons``), centred."""

    def __init__(self, scale: float = 1.0, noise: float = 0.05):
        self.scale, self.noise = scale, noise

    def sample(self, n, generator=None):
        t = math.pi * torch.rand(n, generator=generator)
        lower = torch.rand(n, generator=generator) < 0.5
        x = torch.where(lower, 1 - torch.cos(t), torch.cos(t)) - 0.5
        y = torch.where(lower, 0.5 - torch.sin(t), torch.sin(t)) - 0.25
        pts = torch.stack([x, y], 1) + self.noise * torch.randn(n, 2, generator=generator)
        return self.scale * pts


class EightGaussians(Sampler):
    """Eight Gaussians on a circle of radius ``scale`` (the authors' raw sampler: r = 12, std 1).

    ``whiten``: divide by the population std, so the covariance is the identity. The
    covariance is ``(r²/2 + std²)·I`` (mean 0), so the authors' whitened target, on which
    their notebook trains, is radius 12/√73 = 1.4045 with std 1/√73 = 0.1170.
    """

    def __init__(self, scale: float = 12.0, noise: float = 1.0, whiten: bool = False):
        if whiten:
            s = math.sqrt(scale**2 / 2 + noise**2)
            scale, noise = scale / s, noise / s
        ang = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
        self.modes = scale * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
        self.mode_weights = torch.full((8,), 1 / 8)
        self.noise = noise

    def sample(self, n, generator=None):
        idx = torch.randint(0, 8, (n,), generator=generator)
        return self.modes[idx] + self.noise * torch.randn(n, 2, generator=generator)


class SwissRoll(Sampler):
    """2-D Swiss roll (sklearn's parametrisation, authors' /7.5 scale), optionally whitened.

    ``whiten``: ``(y - mean) @ Σ^{-1/2}`` (ZCA), the authors' ``StandardNormalScaler``,
    with mean and covariance from 200 000 fixed-seed samples (theirs: 1000). A
    per-coordinate standardisation would keep the roll's correlation of about 0.09.
    """

    def __init__(self, scale: float = 1 / 7.5, noise: float = 0.8, whiten: bool = False):
        self.scale, self.noise = scale, noise
        self.shift, self.white = torch.zeros(2), torch.eye(2)
        if whiten:
            ref = self.sample(200_000, _gen(12345)).double()
            evals, evecs = torch.linalg.eigh(torch.cov(ref.T))
            self.shift = ref.mean(0).float()
            self.white = (evecs @ torch.diag(evals.rsqrt()) @ evecs.T).float()

    def sample(self, n, generator=None):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1)
        pts = self.scale * (pts + self.noise * torch.randn(n, 2, generator=generator))
        return (pts - self.shift) @ self.white


class Circles(Sampler):
    """Rings of equal mass: concentric by default, or one ring per entry of ``centers``."""

    def __init__(self, radii=(1.0, 2.0, 3.0), centers=None, noise: float = 0.02, scale: float = 1.0):
        radii = list(radii)
        if centers is None:
            centers = [[0.0, 0.0]] * len(radii)
        elif len(radii) == 1:
            radii = radii * len(centers)
        if len(radii) != len(centers):
            raise ValueError(f"circles: {len(radii)} radii for {len(centers)} centers")
        self.radii = scale * torch.tensor(radii, dtype=torch.float32)
        self.centers = scale * torch.tensor(centers, dtype=torch.float32)
        self.noise = noise
        k = len(radii)
        self.mode_weights = torch.full((k,), 1 / k)
        # a representative point per ring (rings may share a centre)
        self.modes = self.centers + torch.stack([self.radii, torch.zeros(k)], 1)

    def sample(self, n, generator=None):
        idx = torch.randint(0, len(self.radii), (n,), generator=generator)
        ang = 2 * math.pi * torch.rand(n, generator=generator)
        ring = torch.stack([torch.cos(ang), torch.sin(ang)], 1) * self.radii[idx, None]
        return self.centers[idx] + ring + self.noise * torch.randn(n, 2, generator=generator)

    def assign_modes(self, y):
        d = (torch.cdist(y.float(), self.centers) - self.radii[None]).abs()
        return d.argmin(dim=1)


class Discrete(Sampler):
    """Uniform distribution on ``n`` atoms (given, or drawn from ``seed``)."""

    def __init__(self, dim: int = 2, n: int = 4, atoms=None, scale: float = 1.0, seed: int = 0):
        if atoms is None:
            atoms = scale * torch.randn(n, dim, generator=_gen(seed))
        self.modes = torch.as_tensor(atoms, dtype=torch.float32)
        self.dim = self.modes.shape[1]
        self.mode_weights = torch.full((len(self.modes),), 1 / len(self.modes))

    def sample(self, n, generator=None):
        idx = torch.randint(0, len(self.modes), (n,), generator=generator)
        return self.modes[idx]


class GaussianMixture(Sampler):
    """Equal-weight isotropic Gaussian mixture (centres given or drawn from ``seed``)."""

    def __init__(self, dim: int = 2, n: int = 4, centers=None, std: float = 0.3,
                 scale: float = 3.0, seed: int = 0):
        if centers is None:
            centers = scale * torch.randn(n, dim, generator=_gen(seed))
        self.modes = torch.as_tensor(centers, dtype=torch.float32)
        self.dim = self.modes.shape[1]
        self.mode_weights = torch.full((len(self.modes),), 1 / len(self.modes))
        self.std = std

    def sample(self, n, generator=None):
        idx = torch.randint(0, len(self.modes), (n,), generator=generator)
        return self.modes[idx] + self.std * torch.randn(n, self.dim, generator=generator)


def make_sampler(spec: dict, seed: int = 0) -> Sampler:
    """Build a sampler from a config block ``{name: ..., **params}``.

    ``seed`` seeds random parameters (random covariance, atoms, centres) unless
    the block sets its own ``seed``.
    """
    spec = dict(spec)
    name = spec.pop("name")
    seed = spec.pop("seed", seed)
    allowed = {
        "gaussian": ({"dim", "mean", "cov"}, lambda p: Gaussian(seed=seed, **p)),
        "moons": ({"scale", "noise", "dim"}, lambda p: Moons(**_drop_dim(p))),
        "8gaussians": ({"scale", "noise", "whiten", "dim"}, lambda p: EightGaussians(**_drop_dim(p))),
        "swissroll": ({"scale", "noise", "whiten", "dim"}, lambda p: SwissRoll(**_drop_dim(p))),
        "circles": ({"radii", "centers", "noise", "scale", "dim"}, lambda p: Circles(**_drop_dim(p))),
        "discrete": ({"dim", "n", "atoms", "scale"}, lambda p: Discrete(seed=seed, **p)),
        "gaussian_mixture": ({"dim", "n", "centers", "std", "scale"},
                             lambda p: GaussianMixture(seed=seed, **p)),
    }
    if name not in allowed:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    keys, build = allowed[name]
    extra = set(spec) - keys
    if extra:
        raise ValueError(f"sampler {name!r} does not take {sorted(extra)}; allowed: {sorted(keys)}")
    return build(spec)


def _drop_dim(p: dict) -> dict:
    if p.pop("dim", 2) != 2:
        raise ValueError("this sampler is 2-D only")
    return p
