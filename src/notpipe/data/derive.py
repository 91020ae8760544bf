"""Derived data sets for OTM's unpaired restoration: two disjoint halves of a prepared base set,
one of them degraded.

A data set of format ``derived`` names its ``base`` (a prepared data set at the same size), the
``half`` it takes (0 or 1) and, optionally, a degradation. Each split of the base (train, test) is
cut in two by one seeded permutation (``split_seed``), so half 0 and half 1 never share an image
and the pair is unpaired: the degraded half is the source, the clean other half the target.

Degradations (uint8 NHWC in, uint8 NHWC out):

* ``noise``: additive Gaussian noise of std ``sigma`` on the [0, 1] intensity scale, clipped and
  rounded (denoising);
* ``gray``: the ITU-R 601 luminance in all three channels (colorization);
* ``mask``: a square of side ``size``, centred or at a seeded random place, or the right half of
  the image (``box: right_half``, OTM's inpainting), set to its ``fill``: black (0, default) or
  grey (128, the uint8 nearest to OTM's mid-grey 127.5) (inpainting).

A degraded half also stores ``test_original.npy``, the clean originals of its test images in the
same order, so evaluation can report paired PSNR/MSE. Written as the data stage writes every data
set: arrays first (atomically), ``manifest.json`` last, with the degradation's parameters in it.

A degradation with ``fresh: true`` is not applied here: the half is stored clean and the sampler
degrades every batch anew (:mod:`notpipe.data.fresh_degrade`); ``test_original`` then names the
clean ``test.npy`` itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from notpipe import __version__
from notpipe.data.prepare import write_npy
from notpipe.io import write_json

log = logging.getLogger(__name__)

#: seed streams of the halving permutation per split (train and test are halved independently)
SPLIT_STREAM = {"train": 0, "test": 1}
#: luminance weights (ITU-R BT.601, PIL's "L" conversion)
LUMA = np.array([0.299, 0.587, 0.114])
#: uint8 value of a mask's fill
FILL = {"black": 0, "grey": 128}


def halves(n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of half 0 and half 1 of ``n`` images (disjoint, covering all, each sorted)."""
    perm = np.random.default_rng([int(seed), SPLIT_STREAM[split]]).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def box_corners(n: int, image: int, side: int, box: str, rng: np.random.Generator) -> np.ndarray:
    """``(n, 2)`` top-left corners of the mask squares (the square always lies inside the image)."""
    if side >= image:
        raise ValueError(f"mask size {side} must be smaller than the image ({image} px)")
    if box == "center":
        return np.full((n, 2), (image - side) // 2)
    if box == "random":
        return rng.integers(0, image - side + 1, size=(n, 2))
    raise ValueError(f"unknown mask box {box!r}; allowed: center, random")


def degrade(images: np.ndarray, spec: dict, seed: int) -> np.ndarray:
    """The degraded copy of uint8 ``(N, H, W, 3)`` images; ``spec`` is a ``degrade`` block."""
    name = spec["name"]
    rng = np.random.default_rng([int(spec.get("seed", 0)), int(seed)])
    x = np.asarray(images)
    if name == "noise":
        noisy = x / 255.0 + rng.normal(0.0, float(spec["sigma"]), size=x.shape)
        return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
    if name == "gray":
        y = np.round(x.astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)
        return np.repeat(y[..., None], 3, axis=-1)
    if name == "mask":
        out = x.copy()
        fill = FILL[spec.get("fill", "black")]
        if spec.get("box", "center") == "right_half":
            out[:, :, x.shape[2] // 2:] = fill
            return out
        side = int(spec["size"])
        for img, (top, left) in zip(out, box_corners(len(x), x.shape[1], side, spec.get("box", "center"), rng)):
            img[top:top + side, left:left + side] = fill
        return out
    raise ValueError(f"unknown degradation {name!r}; allowed: noise, gray, mask")


class _Degraded:
    """``src[idx]`` degraded on access, for :func:`~notpipe.data.prepare.write_npy`'s chunks: the
    rows ``r`` of a chunk use the seed stream of ``(split, r[0])``, so the output is fixed by the
    seeds and write_npy's chunk size, and no more than one chunk is degraded at a time."""

    def __init__(self, src: np.ndarray, idx: np.ndarray, spec: dict, split: str):
        self.src, self.idx, self.spec, self.stream = src, idx, spec, SPLIT_STREAM[split]
        self.shape = (len(idx),) + tuple(src.shape[1:])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return degrade(self.src[self.idx[rows]], self.spec, seed=self.stream * 1_000_003 + int(rows[0]))


def _load(base_dir: Path, split: str) -> np.ndarray:
    manifest = base_dir / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} missing: the base data set is prepared first (data stage)")
    files = json.loads(manifest.read_text())["files"]
    return np.load(base_dir / files[split], mmap_mode="r")


def derive(name: str, spec: dict, size: int, out_dir: str | Path, base_dir: str | Path) -> dict:
    """Write ``out_dir/{train,test}.npy`` (+ ``test_original.npy`` when degraded) and the manifest."""
    out_dir, base_dir = Path(out_dir), Path(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    half, deg, seed = int(spec["half"]), spec.get("degrade"), int(spec.get("split_seed", 0))
    digests, counts, files = {}, {}, {}
    for split in ("train", "test"):
        src = _load(base_dir, split)  # fails with one line when the base is not prepared
        idx = halves(len(src), seed, split)[half]
        counts[split] = len(idx)
        files[split] = f"{split}.npy"
        if deg and deg.get("fresh"):  # stored clean: the sampler degrades every batch (fresh_degrade)
            digests[split] = write_npy(out_dir / files[split], src, idx)
            if split == "test":
                files["test_original"] = files["test"]
                digests["test_original"] = digests["test"]
        elif deg:  # degraded chunk by chunk while written (a half of CelebA does not fit in memory as float)
            digests[split] = write_npy(out_dir / files[split], _Degraded(src, idx, deg, split), np.arange(len(idx)))
            if split == "test":
                files["test_original"] = "test_original.npy"
                digests["test_original"] = write_npy(out_dir / files["test_original"], src, idx)
        else:
            digests[split] = write_npy(out_dir / files[split], src, idx)
    manifest = {
        "name": name, "format": "derived", "image_size": size, "layout": "NHWC", "dtype": "uint8",
        "base": spec["base"],
        "base_array_sha256": json.loads((base_dir / "manifest.json").read_text()).get("array_sha256"), "half": half,
        "split": {"rule": "halves", "seed": seed}, "degrade": deg,
        "n_train": counts["train"], "n_test": counts["test"], "n_skipped": 0, "skipped": [],
        "files": files, "array_sha256": digests, "notpipe_version": __version__,
    }
    write_json(out_dir / "manifest.json", manifest)
    log.info("%s: half %d of %s (%s): %d train, %d test -> %s", name, half, spec["base"],
             (deg["name"] + (", applied per batch" if deg.get("fresh") else "")) if deg else "clean",
             counts["train"], counts["test"], out_dir)
    return manifest
