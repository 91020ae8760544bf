"""The other sources of prepare: iGAN's HDF5 inside a zip (refusing external storage, virtual
data sets and shapes the file does not hold), CelebA with its attributes, torchvision sets, idx files."""

from __future__ import annotations

import logging
import math
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from notpipe.data.archives import (
    PrepareError,
    _check_members,
    _open_zip,
    _read_folder,
    _read_zip_images,
    _size,
)
from notpipe.data.datasets import (
    DatasetError,
)
from notpipe.data.images import Limits

log = logging.getLogger(__name__)

def check_hdf5_images(fh, key: str, label: str, limits: Limits = Limits()):
    """The image dataset ``fh[key]`` of an open ``h5py.File``, checked before any of it is read.

    Refused (one line): a link on the way to it that is external; a virtual dataset; external
    storage (its bytes would come from other files); not uint8 NHW[C]; images over the pixel
    cap; and a declared shape the file does not hold (unwritten chunks or storage smaller
    than the shape says, e.g. a tiny file declaring a million images), or that expands more
    than ``max_expansion`` times its stored size.
    """
    import h5py

    parts = [p for p in key.split("/") if p]
    for i in range(len(parts)):
        sub = "/".join(parts[:i + 1])
        if sub not in fh:
            break
        if isinstance(fh.get(sub, getlink=True), h5py.ExternalLink):
            raise PrepareError(f"{label}: hdf5 '{sub}' is an external link to another file; refused: only "
                               f"self-contained hdf5 files are read")
    if key not in fh:
        raise PrepareError(f"{label}: hdf5 has no key {key!r}; keys: {list(fh)}")
    data = fh[key]
    if not isinstance(data, h5py.Dataset):
        raise PrepareError(f"{label}: hdf5 '{key}' is a group, not an image array")
    if data.is_virtual:
        raise PrepareError(f"{label}: hdf5 '{key}' is a virtual dataset (its data lives in other files); "
                           f"refused: only self-contained hdf5 files are read")
    if data.external:
        raise PrepareError(f"{label}: hdf5 '{key}' uses external storage ({data.external[0][0]!r}); refused: "
                           f"only self-contained hdf5 files are read")
    shape = tuple(int(s) for s in data.shape)
    if data.dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        raise PrepareError(f"{label}: hdf5 '{key}' is {data.dtype} {shape}; expected uint8 images (N, H, W[, C])")
    if shape[1] * shape[2] > limits.max_image_pixels:
        raise PrepareError(f"{label}: hdf5 '{key}' holds {shape[1]}x{shape[2]} images, over "
                           f"data.max_image_pixels={limits.max_image_pixels}")
    nbytes, stored = math.prod(shape), data.id.get_storage_size()
    if data.chunks is None:
        short = stored < nbytes
    else:
        expected = math.prod(-(-s // c) for s, c in zip(shape, data.chunks))
        short = data.id.get_num_chunks() < expected
    what = f"declares {shape[0]} images of {'x'.join(map(str, shape[1:]))} ({_size(nbytes)})"
    if short:
        raise PrepareError(f"{label}: hdf5 '{key}' {what} but the file stores only {_size(stored)} of them; "
                           f"refused: the archive is damaged or crafted, download it again")
    if nbytes > limits.max_expansion * max(stored, 1):
        raise PrepareError(f"{label}: hdf5 '{key}' {what} from {_size(stored)} stored, more than "
                           f"data.max_expansion={limits.max_expansion:g} times; refused (raise it only for a file "
                           f"you trust)")
    return data


def _read_hdf5_zip(path: Path, key: str, tmp: Path, limits: Limits = Limits()) -> tuple[int, Iterator]:
    """The image array ``key`` of the first .hdf5 member of an iGAN zip (extracted to ``tmp``)."""
    import h5py

    with _open_zip(path) as zf:
        members = [n for n in zf.namelist() if n.endswith((".hdf5", ".h5"))]
        if not members:
            raise PrepareError(f"{path.name}: no .hdf5 file inside the zip (iGAN format expected)")
        _check_members(path, [(members[0], zf.getinfo(members[0]).file_size)],
                       Limits(math.inf, limits.max_expansion))
        tmp.mkdir(parents=True, exist_ok=True)
        h5path = tmp / "source.hdf5"  # one flat name: the member's own path is never used
        try:
            with zf.open(members[0]) as src, open(h5path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as err:
            h5path.unlink(missing_ok=True)
            raise PrepareError(f"{path}: member {members[0]!r} cannot be read ({err}); the archive is damaged: "
                               f"download or copy it again") from None
    try:
        fh = h5py.File(h5path, "r")
    except OSError as err:
        h5path.unlink(missing_ok=True)
        raise PrepareError(f"{path}: {members[0]} is not a readable hdf5 file ({err}); download it again") from None
    try:
        data = check_hdf5_images(fh, key, f"{path.name}: {members[0]}", limits)
    except PrepareError:
        fh.close()
        h5path.unlink(missing_ok=True)
        raise

    def gen(chunk=1024):
        with fh:
            for start in range(0, len(data), chunk):
                block = data[start:start + chunk]
                for i, arr in enumerate(block):
                    yield str(start + i), arr
    return len(data), gen()


def _read_celeba(paths: list[Path], filt: dict | None, limits: Limits = Limits()) -> tuple[int, Iterator]:
    archive, attr_file = paths
    lines = attr_file.read_text().splitlines()
    header = lines[1].split()
    keep = None
    if filt:
        if filt["attribute"] not in header:
            raise PrepareError(f"{attr_file.name}: no attribute {filt['attribute']!r}")
        col = header.index(filt["attribute"]) + 1  # first field of a row is the file name
        keep = {row.split()[0] for row in lines[2:] if row.strip()
                and int(row.split()[col]) == int(filt["value"])}
    if archive.is_dir():
        n, it = _read_folder(archive, limits)
        items = [(k, b) for k, b in it if keep is None or Path(k).name in keep]
        return len(items), iter(items)
    return _read_zip_images(archive, keep, limits)


def _read_torchvision(name: str, raw_dir: Path, offline: bool) -> tuple[int, Iterator]:
    import torchvision

    cls = getattr(torchvision.datasets, name, None)
    if cls is None:
        raise DatasetError(f"torchvision has no data set {name!r}")
    root = raw_dir / "torchvision"
    try:
        parts = [cls(root=str(root), train=t, download=not offline) for t in (True, False)]
    except RuntimeError as err:
        raise DatasetError(f"torchvision {name} not found under {root} and data.offline is set: "
                           f"download it once with network access ({err})") from None
    arrays = [np.asarray(p.data) for p in parts]  # train then test, in their order
    data = np.concatenate(arrays)
    return len(data), ((str(i), a) for i, a in enumerate(data))


#: idx type codes (the third byte of the magic number) -> numpy dtype; images are unsigned bytes
_IDX_UBYTE = 0x08


class _Items:
    """An iterator of ``(key, image)`` that also says how many come from the source's last file
    (``last_file``: the test split of ``split: files``)."""

    def __init__(self, it: Iterator, last_file: int):
        self.it, self.last_file = it, last_file

    def __iter__(self):
        return self.it

    def __next__(self):
        return next(self.it)


def _idx_array(path: Path, expected_sha256: str | None, limits: Limits = Limits()) -> np.ndarray:
    """The uint8 ``(N, H, W)`` array of one idx image file (``.gz`` or plain), the LeCun format of MNIST,
    Fashion-MNIST and KMNIST: magic ``00 00 08 03``, three big-endian int32 sizes, the bytes. The
    decompressed content must hold exactly the declared bytes and, when given, have sha256
    ``expected_sha256`` (the data sets publish it of the decompressed file, not of a gzip)."""
    import gzip

    if not path.is_file():
        raise PrepareError(f"{path}: is not a file; give the idx file (train-images-idx3-ubyte[.gz])")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            head = fh.read(16)
            if len(head) < 16 or head[:2] != b"\0\0" or head[2] != _IDX_UBYTE or head[3] != 3:
                raise PrepareError(f"{path}: not an idx file of uint8 images (magic {head[:4].hex() or 'none'}, "
                                   f"expected 00000803); give the images file, not the labels")
            n, h, w = (int.from_bytes(head[i:i + 4], "big") for i in (4, 8, 12))
            if h * w > limits.max_image_pixels:
                raise PrepareError(f"{path}: {h}x{w} images, over data.max_image_pixels={limits.max_image_pixels}")
            want = n * h * w
            if gz and want > limits.max_expansion * max(path.stat().st_size, 1):
                raise PrepareError(f"{path}: declares {_size(want)} of images, more than data.max_expansion="
                                   f"{limits.max_expansion:g} times the file's {_size(path.stat().st_size)}; refused")
            body = fh.read(want + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise PrepareError(f"{path}: not a readable idx file ({err}); it is truncated or damaged: download or "
                           f"copy it again") from None
    if len(body) != want:
        raise PrepareError(f"{path}: declares {n} images of {h}x{w} ({want} bytes) but holds "
                           f"{'more' if len(body) > want else len(body)}; download or copy it again")
    if expected_sha256:
        import hashlib

        got = hashlib.sha256(head + body).hexdigest()
        if got != expected_sha256.lower():
            raise PrepareError(f"{path}: decompressed content has sha256 {got}, expected {expected_sha256} "
                               f"(content_sha256 of the data set); download or copy it again")
    return np.frombuffer(body, np.uint8).reshape(n, h, w)


def _read_idx(paths: list[Path], shas: list, limits: Limits = Limits()) -> tuple[int, _Items]:
    """Images of idx files, file after file (train then test); grey, 1 channel."""
    arrays = [_idx_array(p, shas[i] if i < len(shas) else None, limits) for i, p in enumerate(paths)]
    if len({a.shape[1:] for a in arrays}) > 1:
        raise PrepareError(f"{paths[0].parent}: idx files of different image sizes "
                           f"({', '.join(f'{p.name}: {a.shape[1]}x{a.shape[2]}' for p, a in zip(paths, arrays))})")

    def gen():
        for p, a in zip(paths, arrays):
            for i in range(len(a)):
                yield f"{p.name}:{i}", a[i]
    return sum(len(a) for a in arrays), _Items(gen(), len(arrays[-1]))


# ----------------------------------------------------------------- split / store
