"""Random image batches from a prepared split (uint8 NHWC ``.npy``) for the trainer.

:class:`ImageSampler` is a trainer sampler ``(n, generator) -> tensor``: indices
are drawn (with replacement) from the trainer's generator, so the data order is
part of the checkpointed RNG state and a resumed run sees the same batches. The
batch is gathered from the memory-mapped array, copied as uint8 (4x fewer bytes
than float) into a pinned buffer, sent with a non-blocking copy and converted to
float in [-1, 1] NCHW on the device. Nothing on this path waits for the GPU: the
CPU gathers the next batch while the GPU still runs the previous step. Pinned
buffers are recycled through a small ring guarded by CUDA events.

A data set prepared with an augmentation (:mod:`notpipe.data.augment`) loads as an
:class:`~notpipe.data.augment.AugmentedSplit`: the sampler then draws, after the indices and
from the same generator, a fresh crop and flips for every image of the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from notpipe.data.augment import AugmentedSplit


def load_split(data_dir: str | Path, split: str = "train", mmap: bool = True) -> np.ndarray | AugmentedSplit:
    """The uint8 ``(N, H, W, 3)`` array of a prepared data set (memory-mapped); for a data set
    with an augmentation an :class:`~notpipe.data.augment.AugmentedSplit`, sliced like that array."""
    d = Path(data_dir)
    manifest = d / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} missing: build it with "
                                f"`snakemake --cores 2 {manifest}` (data stage)")
    files = json.loads(manifest.read_text())["files"]
    fixed = np.load(d / files[split], mmap_mode="r" if mmap else None)
    return AugmentedSplit.load(d, split, fixed, mmap) or fixed


def to_float(batch: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (on the batch's device). A float batch is already
    a model input (NCHW: a generation run's noise, :mod:`notpipe.data.noise_source`): kept as it is."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if batch.dtype != torch.uint8:
        return batch.float().contiguous(memory_format=fmt)
    nchw = batch.permute(0, 3, 1, 2)
    # one conversion pass into the final layout, then two in-place passes (no extra copy)
    x = torch.empty(nchw.shape, dtype=torch.float32, device=batch.device, memory_format=fmt)
    return x.copy_(nchw).mul_(1 / 127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC numpy (clamped, rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class ImageSampler:
    """Draw random batches of a prepared split as float tensors in [-1, 1].

    Parameters
    ----------
    array : np.ndarray or AugmentedSplit
        uint8 ``(N, H, W, C)`` (a memmap from :func:`load_split`); an ``AugmentedSplit`` gives
        each drawn image a fresh crop and flips from the same generator.
    device : torch device of the returned batches.
    channels_last : bool
        Return batches in channels-last memory format (faster convolutions on CUDA).
    ring : int
        Pinned host buffers in flight (CUDA only).
    """

    def __init__(self, array: np.ndarray | AugmentedSplit, device: str | torch.device = "cpu",
                 channels_last: bool = False, ring: int = 4):
        if array.ndim != 4 or array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (N, H, W, C) array, got {array.dtype} {array.shape}")
        self.array, self.n = array, len(array)
        self.augmented = isinstance(array, AugmentedSplit)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.cuda = self.device.type == "cuda"
        self._ring: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        self._ring_size, self._next = ring, 0

    def __len__(self) -> int:
        return self.n

    def indices(self, n: int, generator: torch.Generator) -> np.ndarray:
        return torch.randint(self.n, (n,), generator=generator).numpy()

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """uint8 batch of the given indices, in the given order."""
        return self.array[idx]

    def _pinned(self, shape) -> torch.Tensor:
        """A free pinned buffer of ``shape`` (waits only if the GPU is ``ring`` batches behind)."""
        k = self._next
        self._next = (k + 1) % self._ring_size
        if k < len(self._ring):
            buf, ev = self._ring[k]
            if tuple(buf.shape) == tuple(shape):
                ev.synchronize()
                return buf
        buf = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        entry = (buf, torch.cuda.Event())
        if k < len(self._ring):
            self._ring[k] = entry
        else:
            self._ring.append(entry)
        return buf

    #: the trainer may ask for some rows of a draw only (a data-parallel rank's slice)
    takes_rows = True

    def __call__(self, n: int, generator: torch.Generator, rows: np.ndarray | None = None) -> torch.Tensor:
        """``n`` random images (``rows``: only these positions of the ``n`` drawn, gathered alone)."""
        idx = self.indices(n, generator)
        if self.augmented:  # crops and flips of all n drawn after the indices (ranks stay in step)
            batch = self.array.sample(idx, generator, rows)
        else:
            batch = self.gather(idx if rows is None else idx[rows])
        if not self.cuda:
            return to_float(torch.from_numpy(batch), self.channels_last)
        k = self._next
        host = self._pinned(batch.shape)
        host.numpy()[...] = batch
        dev = host.to(self.device, non_blocking=True)
        self._ring[k][1].record()
        return to_float(dev, self.channels_last)
