r"""Transport costs of NOT: strong quadratic, γ-weak quadratic, kernel (energy).

Each cost works on tensors of any shape ``(B, *shape)`` (points or images):

* ``ground(x, y)`` -> ``(B,)``: the ground cost :math:`c(x_i, y_i)`;
* ``pairwise(x, y)`` -> ``(n, m)``: the ground-cost matrix (for POT);
* ``cost(x, ys, gamma)`` -> ``(B,)``: the (weak) cost :math:`C(x, T(x,\cdot))`
  estimated from ``ys`` of shape ``(B, Z, *shape)``, ``Z = z_size`` draws per input.

Scaling (``scaling=``):

* ``"sum"``: :math:`c(x,y) = \tfrac12\|x-y\|^2` (kernel: :math:`\tfrac12\|x-y\|`);
* ``"mean"``: per-coordinate mean as the authors' image code (``F.mse_loss``):
  :math:`\|x-y\|^2 / D` (kernel: :math:`\tfrac12\|x-y\|/\sqrt D`);
* ``"raw"``: no factor: :math:`\|x-y\|^2` (kernel: :math:`\|x-y\|`, the raw
  Euclidean norm of the authors' Kernel NOT image code, whose T loss is
  ``mean ||x - T(x,z)|| - gamma * 1/2 * mean_{z != z'} ||T(x,z) - T(x,z')||``);
* ``"half_mean"``: :math:`\tfrac12\|x-y\|^2 / D`, half the per-coordinate mean (quadratic costs
  only): the scale of OTM's transport term ``mean(Q(x) * G(x))``.

The strong cost also has an inner-product form (``form="inner"``, OTM's): with the quadratic
factor :math:`s` above, :math:`c(x, y) = -2s\langle x, y\rangle`, which is
:math:`s\|x-y\|^2` minus :math:`s\|x\|^2` and :math:`s\|y\|^2`. The term in x alone does not
depend on the map and the term in y alone is absorbed by the potential, so both forms have the
same optimal map; the potential (and every loss value) differs by those terms. With
``"half_mean"`` it is OTM's ``-mean(x * y)``. ``ground``/``pairwise`` (evaluation, exact OT)
stay the quadratic distance of the same scaling.

The scaling sets the balance between the cost and the potential ``f``; for D = 2
both quadratic scalings coincide.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise squared distance over all but the first dimension."""
    return (x - y).flatten(1).pow(2).sum(1)


def _dist(sq: torch.Tensor) -> torch.Tensor:
    """Distance from squared distance with a zero (not NaN) gradient at 0."""
    return sq.clamp_min(1e-12).sqrt()


#: the cost scalings (module docstring)
SCALINGS = ("sum", "mean", "raw", "half_mean")
_FACTOR = {"sum": 0.5, "raw": 1.0}
#: per-coordinate scalings: the factor divided by the coordinates D
_PER_COORD = {"mean": 1.0, "half_mean": 0.5}
#: forms of the strong quadratic cost (module docstring)
FORMS = ("distance", "inner")


class Cost:
    name = "base"
    z_size = 1

    def __init__(self, scaling: str = "sum", gamma: float = 0.0, z_size: int = 1):
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; allowed: {', '.join(SCALINGS)}")
        self.scaling, self.gamma_max, self.z_size = scaling, float(gamma), int(z_size)

    @property
    def stochastic(self) -> bool:
        """Whether the map needs noise input (several draws per x)."""
        return self.z_size > 1

    def _quad_factor(self, x: torch.Tensor) -> float:
        return _FACTOR[self.scaling] if self.scaling in _FACTOR else _PER_COORD[self.scaling] / x[0].numel()

    def ground(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._quad_factor(x) * _sqdist(x, y)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x2, y2 = x.flatten(1).double(), y.flatten(1).double()
        return self._quad_factor(x) * torch.cdist(x2, y2).pow(2)

    def __call__(self, x: torch.Tensor, ys: torch.Tensor, gamma: float | torch.Tensor = 0.0) -> torch.Tensor:
        raise NotImplementedError

    def batch_mean(self, x: torch.Tensor, ys: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
        """Mean cost over the batch (what the T loss uses); subclasses may fuse it."""
        return self(x, ys, gamma).mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling={self.scaling!r}, gamma={self.gamma_max}, z_size={self.z_size})"


class StrongQuadratic(Cost):
    r""":math:`C(x, \mu) = \int c(x, y)\,d\mu(y)` with the quadratic ground cost.

    ``form="inner"``: :math:`c(x, y) = -2s\langle x, y\rangle` (module docstring), OTM's
    transport term; ``"distance"`` (default): :math:`s\|x-y\|^2`.
    """

    name = "strong"

    def __init__(self, scaling: str = "sum", form: str = "distance"):
        if form not in FORMS:
            raise ValueError(f"unknown cost form {form!r}; allowed: {', '.join(FORMS)}")
        super().__init__(scaling, 0.0, 1)
        self.form = form

    @property
    def inner(self) -> bool:
        """Whether this is the inner-product form (OTM's)."""
        return self.form == "inner"

    def __call__(self, x, ys, gamma=0.0):
        if self.inner:
            s = 2 * self._quad_factor(x)
            return -s * (x.unsqueeze(1) * ys).flatten(2).sum(2).mean(1)
        return self.ground(x.unsqueeze(1).expand_as(ys).flatten(0, 1), ys.flatten(0, 1)).view(
            ys.shape[0], ys.shape[1]).mean(1)

    def batch_mean(self, x, ys, gamma=0.0):
        scale = self._quad_factor(x) * x[0].numel()
        if self.inner:  # -2 s <x, y> averaged over the batch: -2 s D * mean(x * y)
            prod = ys[:, 0] * x if ys.shape[1] == 1 else ys * x.unsqueeze(1)
            return -2 * scale * prod.mean()
        # one fused op (forward and backward): factor * D * mean squared error
        if ys.shape[1] == 1:
            return scale * F.mse_loss(ys[:, 0], x)
        return scale * F.mse_loss(ys, x.unsqueeze(1).expand_as(ys))

    def __repr__(self) -> str:
        return f"StrongQuadratic(scaling={self.scaling!r}, form='inner')" if self.inner else super().__repr__()


class WeakQuadratic(Cost):
    r"""γ-weak quadratic cost :math:`\tfrac12\int\|x-y\|^2 d\mu - \tfrac{\gamma}2 \mathrm{Var}(\mu)`.

    Unbiased estimate from Z draws (sample mean :math:`\bar y`, unbiased variance):

    .. math:: s\,[\|x-\bar y\|^2 + (1-\gamma-1/Z)\,\textstyle\sum_d \widehat{\mathrm{Var}}_z y_d]

    with :math:`s = 1/2` (sum) or :math:`1/D` (mean). γ = 0 is strong OT; γ > 1 is
    ill-posed; γ < 0 penalises variance (seed report 002).
    """

    name = "weak"

    def __init__(self, gamma: float, z_size: int = 4, scaling: str = "sum"):
        if gamma > 1:
            raise ValueError(f"weak cost: gamma={gamma} > 1 is ill-posed")
        if z_size < 2:
            raise ValueError("weak cost: z_size (|Z_x|) must be >= 2 to estimate the variance")
        super().__init__(scaling, gamma, z_size)

    def __call__(self, x, ys, gamma=None):
        gamma = self.gamma_max if gamma is None else gamma
        z = ys.shape[1]
        mean = ys.mean(1)
        var = ys.flatten(2).var(1).sum(1)
        return self._quad_factor(x) * (_sqdist(x, mean) + (1 - gamma - 1 / z) * var)


class KernelEnergy(Cost):
    r"""Kernel (energy) cost of Kernel NOT:

    .. math:: C(x,\mu) = \tfrac12\int\|x-y\|d\mu(y) - \tfrac{\gamma}{2}\cdot\tfrac12\iint\|y-y'\|d\mu d\mu

    estimated with the U-statistic over the Z draws (pairs z ≠ z').
    """

    name = "kernel"

    def __init__(self, gamma: float, z_size: int = 4, scaling: str = "sum"):
        if gamma > 1:  # mass p at x and p at distance R: cost pR/2 (1 - gamma (1-p)) -> -inf
            raise ValueError(f"kernel cost: gamma={gamma} > 1 is unbounded below")
        if z_size < 2:
            raise ValueError("kernel cost: z_size (|Z_x|) must be >= 2")
        super().__init__(scaling, gamma, z_size)
        self._check_scaling()

    def _dist_factor(self, x: torch.Tensor) -> float:
        return _FACTOR[self.scaling] if self.scaling in _FACTOR else 0.5 / math.sqrt(x[0].numel())

    def _check_scaling(self) -> None:
        if self.scaling == "half_mean":
            raise ValueError("kernel cost: scaling half_mean is for quadratic costs; use mean, sum or raw")

    def ground(self, x, y):
        return self._dist_factor(x) * _dist(_sqdist(x, y))

    def pairwise(self, x, y):
        return self._dist_factor(x) * torch.cdist(x.flatten(1).double(), y.flatten(1).double())

    def __call__(self, x, ys, gamma=None):
        gamma = self.gamma_max if gamma is None else gamma
        b, z = ys.shape[:2]
        flat = ys.flatten(2)
        to_x = _dist((flat - x.flatten(1).unsqueeze(1)).pow(2).sum(2)).mean(1)
        pair_sq = (flat.unsqueeze(1) - flat.unsqueeze(2)).pow(2).sum(3)
        off = ~torch.eye(z, dtype=torch.bool, device=ys.device)
        inter = _dist(pair_sq[:, off]).mean(1)
        return self._dist_factor(x) * (to_x - 0.5 * gamma * inter)


class NoCost(Cost):
    """No transport cost in the T loss (the WGAN baseline): T only maximises ``f(T(x))``.

    ``ground``/``pairwise`` stay quadratic, so evaluation still measures the map's
    transport cost against exact OT.
    """

    name = "none"

    def __init__(self, scaling: str = "sum"):
        super().__init__(scaling, 0.0, 1)

    def __call__(self, x, ys, gamma=0.0):
        return x.new_zeros(x.shape[0])

    def batch_mean(self, x, ys, gamma=0.0):
        return x.new_zeros(())


def make_cost(spec: dict) -> Cost:
    """Build a cost from its config block ``{name, gamma, z_size, scaling, form}``."""
    name = spec["name"]
    scaling = spec.get("scaling", "sum")
    form = spec.get("form", "distance")
    if form != "distance" and name != "strong":
        raise ValueError(f"cost form {form!r} is a form of the strong cost, not of the {name} cost")
    if name == "strong":
        return StrongQuadratic(scaling, form)
    if name == "weak":
        return WeakQuadratic(spec.get("gamma", 0.0), spec.get("z_size", 4), scaling)
    if name == "kernel":
        return KernelEnergy(spec.get("gamma", 0.0), spec.get("z_size", 4), scaling)
    if name == "none":
        return NoCost(scaling)
    raise ValueError(f"unknown cost {name!r}; allowed: strong, weak, kernel, none")


class GammaSchedule:
    """Linear warm-up ``gamma(step) = gamma_max * min(1, step / warmup)`` (authors)."""

    def __init__(self, gamma_max: float, warmup: int = 0):
        self.gamma_max, self.warmup = float(gamma_max), int(warmup)

    def __call__(self, step: int) -> float:
        if self.warmup <= 0:
            return self.gamma_max
        return self.gamma_max * min(1.0, step / self.warmup)
