"""Degradations drawn anew for every batch, in the sampler (OTM's restoration scripts).

A derived data set whose ``degrade`` block has ``fresh: true`` is stored clean (the data stage
writes its half undegraded, :mod:`notpipe.data.derive`); the degradation is applied to each
float batch in [-1, 1] as it is drawn, so a training image is degraded differently every time
it is drawn, and nothing is clipped or rounded. The prepared-once variant (``fresh`` absent or
false) degrades the stored uint8 arrays instead.

On float NCHW batches in [-1, 1] (what the authors' ``Degrade`` gets after ``Normalize(0.5, 0.5)``):

* ``noise``: ``x + 2 sigma e``, e ~ N(0, 1) (``sigma`` on the [0, 1] scale, so 2 sigma on
  [-1, 1]: OTM's ``sigma = 0.3`` on [-1, 1] is ``sigma: 0.15``), unclipped;
* ``gray``: ``0.299 r + 0.587 g + 0.114 b`` in all three channels (the weights sum to 1, so this
  is the BT.601 luminance on either scale), not rounded;
* ``mask``: the box set to its ``fill``: ``grey`` 0 (mid-grey, OTM's zero in normalised space),
  ``black`` -1; ``box: right_half`` is OTM's ``y[:, :, :, size // 2:] = 0``, ``center`` and
  ``random`` a square of side ``size``.

Randomness (the noise, a random box's corners) comes from the trainer's generator, after the
sampler's indices: it is part of the checkpointed RNG state, so a resumed run draws the same.
:class:`DegradingSampler` wraps the data set's :class:`~notpipe.data.loader.ImageSampler`.

The *test split* of such a data set (:class:`DegradedSplit`) is degraded once, from a seed per
image: fixed inputs for evaluation, as float32 NCHW arrays (they cannot be stored as uint8
without clipping), which :func:`~notpipe.data.loader.to_float` passes through unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

#: luminance weights (ITU-R BT.601), as OTM's colorization script and notpipe.data.derive
LUMA = (0.299, 0.587, 0.114)
#: the mask's fill values in [-1, 1]
FILL = {"black": -1.0, "grey": 0.0}
#: seed stream of the test split's degradation (distinct from the halving permutation's)
TEST_STREAM = 2


def is_fresh(spec: dict | None) -> bool:
    """Whether a ``degrade`` block is applied per batch (``fresh: true``)."""
    return bool(spec) and bool(spec.get("fresh", False))


def _box(spec: dict, size: int, n: int, corners: torch.Tensor | None):
    """Per image ``(top, left, height, width)`` of the mask (``corners``: drawn random boxes)."""
    box = spec.get("box", "center")
    if box == "right_half":
        return [(0, size // 2, size, size - size // 2)] * n
    side = int(spec["size"])
    if side >= size:
        raise ValueError(f"mask size {side} must be smaller than the image ({size} px)")
    if box == "center":
        c = (size - side) // 2
        return [(c, c, side, side)] * n
    if box == "random":
        return [(int(t), int(left), side, side) for t, left in corners.tolist()]
    raise ValueError(f"unknown mask box {box!r}; allowed: center, random, right_half")


def apply(x: torch.Tensor, spec: dict, noise: torch.Tensor | None = None,
          corners: torch.Tensor | None = None) -> torch.Tensor:
    """The degraded copy of float NCHW ``x`` in [-1, 1] (``noise``: e ~ N(0, 1) of x's shape for
    ``noise``; ``corners``: ``(N, 2)`` top-left corners for a random mask)."""
    name = spec["name"]
    if name == "noise":
        return x + (2 * float(spec["sigma"])) * noise.to(x.device, x.dtype)
    if name == "gray":
        y = x[:, 0] * LUMA[0] + x[:, 1] * LUMA[1] + x[:, 2] * LUMA[2]
        return y.unsqueeze(1).repeat(1, x.shape[1], 1, 1)
    if name == "mask":
        out = x.clone()
        fill = FILL[spec.get("fill", "black")]
        for img, (top, left, h, w) in zip(out, _box(spec, x.shape[-1], len(x), corners)):
            img[:, top:top + h, left:left + w] = fill
        return out
    raise ValueError(f"unknown degradation {name!r}; allowed: noise, gray, mask")


class DegradingSampler:
    """A trainer sampler ``(n, generator[, rows])``: ``inner``'s clean batch, degraded (``spec``).

    The draws for all ``n`` images are made whether or not ``rows`` asks for a slice (a
    data-parallel rank), so every rank's generator stays in step.
    """

    #: the trainer may ask for some rows of a draw only (a data-parallel rank's slice)
    takes_rows = True

    def __init__(self, inner, spec: dict):
        self.inner, self.spec = inner, dict(spec)
        if self.spec["name"] not in ("noise", "gray", "mask"):
            raise ValueError(f"unknown degradation {self.spec['name']!r}; allowed: noise, gray, mask")

    def __len__(self) -> int:
        return len(self.inner)

    def noise(self, shape: tuple, generator: torch.Generator) -> torch.Tensor:
        """e ~ N(0, 1) of ``shape`` on the CPU: the noise degradation's only draw."""
        return torch.randn(shape, generator=generator)

    def corners(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, 2)`` top-left corners of random mask squares."""
        return torch.randint(0, size - int(self.spec["size"]) + 1, (n, 2), generator=generator)

    def __call__(self, n: int, generator: torch.Generator, rows: np.ndarray | None = None) -> torch.Tensor:
        x = self.inner(n, generator, rows) if rows is not None else self.inner(n, generator)
        pick = (lambda t: t) if rows is None else (lambda t: t[torch.as_tensor(rows)])  # noqa: E731
        name, noise, corners = self.spec["name"], None, None
        if name == "noise":
            noise = pick(self.noise((n,) + tuple(x.shape[1:]), generator))
        elif name == "mask" and self.spec.get("box", "center") == "random":
            corners = pick(self.corners(n, x.shape[-1], generator))
        return apply(x, self.spec, noise, corners)


class DegradedSplit:
    """A clean uint8 NHWC split degraded once: image i from the seed ``(spec.seed, 2, i)``.

    Slicing gives float32 NCHW arrays in [-1, 1] (unclipped); ``len`` and slicing as the array.
    """

    def __init__(self, array: np.ndarray, spec: dict):
        self.array, self.spec = array, dict(spec)
        self.seed = int(self.spec.get("seed", 0))

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple:
        n, h, w, c = self.array.shape
        return (n, c, h, w)

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(self.array[idx], dtype=np.float32)).permute(0, 3, 1, 2)
        x = x.mul(1 / 127.5).sub(1.0)
        noise = corners = None
        gens = [np.random.default_rng([self.seed, TEST_STREAM, int(i)]) for i in idx]
        if self.spec["name"] == "noise":
            noise = torch.from_numpy(np.stack([g.standard_normal(x.shape[1:], dtype=np.float32) for g in gens]))
        elif self.spec["name"] == "mask" and self.spec.get("box", "center") == "random":
            hi = x.shape[-1] - int(self.spec["size"]) + 1
            corners = torch.from_numpy(np.stack([g.integers(0, hi, size=2) for g in gens]))
        return apply(x, self.spec, noise, corners).contiguous().numpy()

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._rows(np.array([int(key) % len(self)]))[0]
        return self._rows(np.arange(len(self))[key])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
