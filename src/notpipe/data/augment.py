"""A fresh random resized crop and random flips per drawn image (Kernel NOT's textures).

Kernel NOT loads DTD through torchvision's ``Resize(300)``, ``RandomResizedCrop(s,
scale=(128/300, 1), ratio=(1, 1))``, ``RandomHorizontalFlip(0.5)`` and
``RandomVerticalFlip(0.5)`` (docs/datasets.md#dtd-textures). Here the data stage does the
deterministic part once: every image is resized so that its shorter side is ``resize``
(torchvision's rule, PIL bilinear) and kept at that size in a *ragged store*, one flat uint8
array plus an ``(N, 3)`` index of ``offset, height, width``, both memory-mappable. The random
part is drawn per image and per batch from the trainer's generator:

1. :func:`crop_params`, torchvision's ``RandomResizedCrop.get_params``: up to 10 tries of an
   area fraction in ``scale`` of the *whole* image and a log-uniform aspect ratio in ``ratio``,
   the first box that fits wins, with its top-left corner uniform; else the fallback (the
   largest centred box of the ratio range);
2. one uniform draw per flip, flipped when below 0.5 (horizontal first, then vertical);
3. the box is cut and resized to the image size with PIL bilinear, as torchvision does on PIL
   images.

The draws of one image come in torchvision's order from a :class:`torch.Generator`, so the same
generator state gives the same batch, and a resumed generator continues where it stopped.

``augment`` block of a data set (registry or config)::

    augment: {name: random_resized_crop, resize: 300, scale: [0.4267, 1.0], ratio: [1.0, 1.0],
              flips: [h, v]}
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from notpipe.io import atomic_path, sha256_file

if TYPE_CHECKING:
    import torch

#: the augmentations known by name
NAMES = ("random_resized_crop",)
#: flips: ``h`` horizontal (left-right), ``v`` vertical (top-bottom), drawn in this order
FLIPS = ("h", "v")
#: tries of torchvision's RandomResizedCrop before its centred fallback
TRIES = 10


class AugmentError(ValueError):
    """An ``augment`` block is malformed."""

    one_line = True  # stage.entry prints it without a traceback on the command line


# ----------------------------------------------------------------- the transform
@dataclass(frozen=True)
class RandomResizedCrop:
    """The augmentation of one data set: shorter side ``resize`` (data stage), then per draw a
    random resized crop with area fraction in ``scale`` and aspect ratio in ``ratio``, and the
    flips of ``flips`` (each with probability 0.5)."""

    resize: int = 300
    scale: tuple[float, float] = (128 / 300, 1.0)
    ratio: tuple[float, float] = (1.0, 1.0)
    flips: tuple[str, ...] = FLIPS

    @classmethod
    def from_spec(cls, block: dict, where: str = "augment") -> RandomResizedCrop:
        """Validated transform of an ``augment`` block; ``where`` names it in the one-line errors."""
        if not isinstance(block, dict) or block.get("name") not in NAMES:
            name = block.get("name") if isinstance(block, dict) else block
            raise AugmentError(f"{where}.name: {name!r} is not an augmentation; allowed: {', '.join(NAMES)}")
        unknown = sorted(set(block) - {"name", "resize", "scale", "ratio", "flips"})
        if unknown:
            raise AugmentError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: resize, scale, ratio, flips")
        resize = block.get("resize", cls.resize)
        if not isinstance(resize, int) or resize < 1:
            raise AugmentError(f"{where}.resize: {resize!r} must be a positive integer (the shorter side in px)")
        scale = _pair(block.get("scale", cls.scale), f"{where}.scale")
        ratio = _pair(block.get("ratio", cls.ratio), f"{where}.ratio")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise AugmentError(f"{where}.scale: {list(scale)} must be [low, high] with 0 < low <= high <= 1 "
                               "(area fractions of the whole image)")
        if not 0 < ratio[0] <= ratio[1]:
            raise AugmentError(f"{where}.ratio: {list(ratio)} must be [low, high] with 0 < low <= high")
        flips = tuple(block.get("flips", cls.flips))
        if any(f not in FLIPS for f in flips) or len(set(flips)) != len(flips):
            raise AugmentError(f"{where}.flips: {list(flips)} must be distinct values of {', '.join(FLIPS)}")
        return cls(resize, scale, ratio, tuple(f for f in FLIPS if f in flips))

    def as_block(self) -> dict:
        """The ``augment`` block of this transform (what a manifest records)."""
        return {"name": NAMES[0], "resize": self.resize, "scale": list(self.scale),
                "ratio": list(self.ratio), "flips": list(self.flips)}

    def draw(self, shapes: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """``(n, 6)`` int64 parameters ``top, left, height, width, hflip, vflip`` of ``n`` images
        whose ``(height, width)`` are the rows of ``shapes``: per image the crop's draws, then one
        draw per flip of ``flips``."""
        import torch  # here: the registry validates augment blocks without torch

        out = np.zeros((len(shapes), 6), np.int64)
        for k, (height, width) in enumerate(np.asarray(shapes)):
            out[k, :4] = crop_params(int(height), int(width), self.scale, self.ratio, generator)
            for f in self.flips:
                out[k, 4 + FLIPS.index(f)] = bool(torch.rand(1, generator=generator).item() < 0.5)
        return out

    @staticmethod
    def apply(images, params: np.ndarray, size: int, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
        """uint8 ``(n, size, size, 3)``: image ``k`` of ``images`` cut and flipped by ``params[k]``
        (on the threads of ``pool`` when given: PIL resizes without the GIL; same result)."""
        out = np.empty((len(params), size, size, 3), np.uint8)

        def one(k: int) -> None:
            p = params[k]
            out[k] = flip(resized_crop(images[k], *(int(v) for v in p[:4]), size), bool(p[4]), bool(p[5]))
        if pool is None or len(params) < 2:
            for k in range(len(params)):
                one(k)
        else:
            list(pool.map(one, range(len(params))))
        return out


def _pair(v, where: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise AugmentError(f"{where}: {v!r} must be a list of two numbers [low, high]") from None
    return lo, hi


def crop_params(height: int, width: int, scale, ratio, generator: torch.Generator) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random crop: ``RandomResizedCrop.get_params`` of
    torchvision with its random numbers drawn from ``generator`` in the same order.

    Up to 10 tries: area ``A * U(scale)`` of the whole image (area ``A``), aspect ratio
    ``exp(U(log ratio))``, sides ``round(sqrt(area * r))`` and ``round(sqrt(area / r))``; the first
    box inside the image gets a uniform top-left corner. Else the largest centred box whose
    aspect ratio is within ``ratio``.
    """
    import torch

    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision
    for _ in range(TRIES):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]),
                                                   generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def shorter_side(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``Resize(size)`` of a PIL image: the shorter side becomes ``size``, the longer
    ``int(size * long / short)``; PIL bilinear (antialiased when shrinking)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR)


def resized_crop(img: np.ndarray, top: int, left: int, height: int, width: int, size: int) -> np.ndarray:
    """The box of a uint8 HWC image resized to ``size`` x ``size`` (PIL bilinear, as torchvision's
    ``resized_crop`` of a PIL image)."""
    box = Image.fromarray(np.ascontiguousarray(img[top:top + height, left:left + width]))
    if box.size != (size, size):
        box = box.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(box, dtype=np.uint8)


def center_view(img: np.ndarray, size: int) -> np.ndarray:
    """The centred square of a uint8 HWC image resized to ``size`` (torchvision's ``CenterCrop``
    then ``Resize((size, size))``): the fixed view of an augmented data set, its ``train.npy`` /
    ``test.npy`` (grids, LPIPS, anything without a generator)."""
    h, w = img.shape[:2]
    s = min(h, w)
    return resized_crop(img, int(round((h - s) / 2)), int(round((w - s) / 2)), s, s, size)


def flip(img: np.ndarray, horizontal: bool, vertical: bool) -> np.ndarray:
    if horizontal:
        img = img[:, ::-1]
    if vertical:
        img = img[::-1]
    return img


# ----------------------------------------------------------------- ragged store
class RaggedImages:
    """Images of different sizes in one flat uint8 array; ``index[k] = offset, height, width``."""

    def __init__(self, flat: np.ndarray, index: np.ndarray):
        if flat.ndim != 1 or flat.dtype != np.uint8 or index.ndim != 2 or index.shape[1] != 3:
            raise ValueError(f"expected a flat uint8 array and an (N, 3) index, got {flat.dtype} {flat.shape} "
                             f"and {index.shape}")
        self.flat, self.index = flat, np.asarray(index, np.int64)

    @classmethod
    def load(cls, pixels: str | Path, index: str | Path, mmap: bool = True) -> RaggedImages:
        return cls(np.load(pixels, mmap_mode="r" if mmap else None), np.load(index))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shapes(self) -> np.ndarray:
        """``(N, 2)`` heights and widths."""
        return self.index[:, 1:]

    def __getitem__(self, k: int) -> np.ndarray:
        off, h, w = (int(v) for v in self.index[k])
        return self.flat[off:off + h * w * 3].reshape(h, w, 3)


class RaggedWriter:
    """Collects ``(fixed view, full image)`` pairs of a prepare run in a temporary flat file and
    writes each split's ragged store (``{split}_full.npy`` and ``{split}_full_index.npy``)."""

    def __init__(self, tmp: str | Path, transform: RandomResizedCrop):
        self.transform = transform
        self.path = Path(tmp) / "full.bin"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")
        self._offset = 0
        self.index: dict[int, tuple[int, int, int]] = {}

    def add(self, i: int, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Keep item ``i``'s full image; return its fixed view."""
        fixed, full = pair
        full = np.ascontiguousarray(full, np.uint8)
        self._fh.write(full.tobytes())
        self.index[i] = (self._offset, full.shape[0], full.shape[1])
        self._offset += full.nbytes
        return fixed

    def write(self, out_dir: str | Path, splits: dict[str, np.ndarray]) -> tuple[dict, dict]:
        """Write the stores of ``{split: item indices}``; return ``(files, sha256)`` for the manifest."""
        self._fh.close()
        src = np.memmap(self.path, np.uint8, "r") if self._offset else np.zeros(0, np.uint8)
        files, digests = {}, {}
        for split, idx in splits.items():
            rows = np.array([self.index[int(i)] for i in idx], np.int64).reshape(-1, 3)
            sizes = rows[:, 1] * rows[:, 2] * 3
            offsets = np.zeros(len(rows), np.int64)
            offsets[1:] = np.cumsum(sizes)[:-1]
            index = np.column_stack([offsets, rows[:, 1:]])
            name, index_name = f"{split}_full.npy", f"{split}_full_index.npy"
            with atomic_path(Path(out_dir) / name, suffix=".npy") as part:
                out = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(int(sizes.sum()),))
                for (off, _, _), new, n in zip(rows, index[:, 0], sizes):
                    out[new:new + n] = src[off:off + n]
                out.flush()
                del out
                digests[f"{split}_full"] = sha256_file(part, 1 << 22)
            with atomic_path(Path(out_dir) / index_name, suffix=".npy") as part:
                np.save(part, index)
            files[f"{split}_full"], files[f"{split}_full_index"] = name, index_name
        del src
        self.path.unlink(missing_ok=True)
        return files, digests


# ----------------------------------------------------------------- a split with its augmentation
class AugmentedSplit:
    """A prepared split of an augmented data set.

    Sliced like the ``(N, size, size, 3)`` uint8 array of any data set (it *is* its fixed centre
    view, ``train.npy`` / ``test.npy``), so grids, LPIPS and the collapse monitor use it
    unchanged; :meth:`sample` gives the augmented images, drawn from a generator, cut on
    ``threads`` threads (default: the usable cores, at most 8).
    """

    def __init__(self, fixed: np.ndarray, full: RaggedImages, transform: RandomResizedCrop,
                 threads: int | None = None):
        if len(fixed) != len(full):
            raise ValueError(f"fixed view has {len(fixed)} images, the full store {len(full)}: prepare the "
                             "data set again")
        self.fixed, self.full, self.transform = fixed, full, transform
        self.size = int(fixed.shape[1])
        self.threads = threads or min(8, len(os.sched_getaffinity(0)))
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # threads are not pickled; a copy starts its own

    @classmethod
    def load(cls, data_dir: str | Path, split: str, fixed: np.ndarray, mmap: bool = True) -> AugmentedSplit | None:
        """The augmented split of a prepared data set, or None when its manifest has no augmentation."""
        d = Path(data_dir)
        manifest = json.loads((d / "manifest.json").read_text())
        files = manifest.get("files", {})
        if not manifest.get("augment") or f"{split}_full" not in files:
            return None
        full = RaggedImages.load(d / files[f"{split}_full"], d / files[f"{split}_full_index"], mmap)
        return cls(fixed, full, RandomResizedCrop.from_spec(manifest["augment"], f"{d / 'manifest.json'}: augment"))

    # the array face: the fixed view
    shape = property(lambda self: self.fixed.shape)
    dtype = property(lambda self: self.fixed.dtype)
    ndim = property(lambda self: self.fixed.ndim)

    def __len__(self) -> int:
        return len(self.fixed)

    def __getitem__(self, key):
        return self.fixed[key]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.fixed, dtype=dtype)

    def sample(self, idx: np.ndarray, generator: torch.Generator, rows: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``(n, size, size, 3)``: images ``idx``, each with fresh crop and flips drawn from
        ``generator`` (all of ``idx`` are drawn; ``rows``: only these positions are made)."""
        idx = np.asarray(idx)
        params = self.transform.draw(self.full.shapes[idx], generator)
        if rows is not None:
            idx, params = idx[rows], params[rows]
        if self._pool is None and self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="augment")
        return self.transform.apply([self.full[int(i)] for i in idx], params, self.size, self._pool)
