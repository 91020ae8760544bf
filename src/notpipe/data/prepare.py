"""Preprocess one data set: decode, crop, resize, split, store as uint8 NHWC ``.npy``.

``prepare(name, spec, size, out_dir, raw_dir)`` reads the source in *source
order* (sorted member names of an archive or folder, array order of an hdf5
file), decodes every image in parallel workers (grayscale -> RGB, RGBA/LA/P with
transparency composited on white), applies the registry's crop, resizes to
``size`` x ``size`` (the registry's ``resample``: PIL bilinear by default), skips and lists
corrupt or truncated images, splits train/test deterministically and writes::

    {out_dir}/train.npy, test.npy     uint8 (N, size, size, 3), memory-mappable
    {out_dir}/attributes.csv          (synthetic shapes only)
    {out_dir}/manifest.json           written last: the stage's success marker

The same inputs always give byte-identical outputs (no timestamps, no absolute
paths, sorted JSON keys).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from notpipe import __version__
from notpipe.data import shapes
from notpipe.data.augment import RaggedWriter, RandomResizedCrop, center_view, shorter_side
from notpipe.data.datasets import (
    RESAMPLE,
    DatasetError,
    file_name,
    missing_local_message,
    sources,
)
from notpipe.data.locks import DEFAULT_WAIT, build_conflict, build_record, held
from notpipe.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class PrepareError(RuntimeError):
    """Too many bad images, or an unreadable source."""

    one_line = True  # stage.entry prints it without a traceback on the command line


# ----------------------------------------------------------------- per image
def to_rgb(img: Image.Image) -> Image.Image:
    """RGB image; transparent pixels are composited on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


_PIL_FILTER = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resize_square(img: Image.Image, size: int, resample: str = "bilinear") -> Image.Image:
    """``img`` resized to ``size`` x ``size``.

    ``bilinear`` / ``bicubic``: PIL's filters (antialiased when shrinking), as torchvision's
    ``Resize`` on PIL images. ``interpolate``: the authors' iGAN loader, ``F.interpolate`` bilinear
    (no antialiasing, ``align_corners=False``) of ``2 * x / 255 - 1`` in float32, rounded back to uint8.
    """
    if resample == "interpolate":
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.array(img, dtype=np.uint8)).to(torch.float32).permute(2, 0, 1)[None]
        y = F.interpolate(2 * (x / 255.) - 1, size=(size, size), mode="bilinear", align_corners=False)
        u = ((y[0].permute(1, 2, 0) + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return Image.fromarray(u.numpy())
    if resample not in _PIL_FILTER:
        raise ValueError(f"unknown resample {resample!r}; allowed: {', '.join(RESAMPLE)}")
    return img.resize((size, size), _PIL_FILTER[resample])


def resize_rule(spec: dict) -> dict:
    """How a data set is resized: ``resample`` filter, ``stored_size`` and the ``augment`` transform."""
    aug = spec.get("augment")
    return {"resample": spec.get("resample") or "bilinear", "stored_size": spec.get("stored_size"),
            "augment": RandomResizedCrop.from_spec(aug) if aug else None}


def crop_resize(img: Image.Image, crop, size: int, pre_resize: int | None = None, resample: str = "bilinear",
                stored_size: int | None = None) -> np.ndarray:
    """Apply ``pre_resize`` (square), the crop rule and the final resize (filter ``resample``); uint8 HWC.

    ``stored_size``: the size of the authors' preprocessed files; at another ``size`` the image
    is made at ``stored_size`` first, rounded to uint8, then resized with PIL bilinear (their
    loader's ``Resize((size, size))``).
    """
    if pre_resize:
        img = resize_square(img, pre_resize, resample)
    w, h = img.size
    if crop == "center":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif isinstance(crop, (list, tuple)):
        top, left, ch, cw = (int(v) for v in crop)
        if top < 0 or left < 0 or top + ch > h or left + cw > w:
            raise ValueError(f"crop box {list(crop)} outside the {w}x{h} image")
        img = img.crop((left, top, left + cw, top + ch))
    elif crop != "none":
        raise ValueError(f"unknown crop {crop!r}; allowed: center, none, [top, left, height, width]")
    if stored_size and size != stored_size and img.size != (stored_size, stored_size):
        img = resize_square(img, stored_size, resample)
    if stored_size and size != stored_size:
        resample = "bilinear"
    if img.size != (size, size):
        img = resize_square(img, size, resample)
    return np.asarray(img, dtype=np.uint8)


def process(item: tuple, crop, size: int, pre_resize: int | None,
            rule: dict | None = None) -> tuple[np.ndarray | tuple | None, str | None]:
    """Decode + crop + resize one ``(key, bytes | array)``; ``(None, reason)`` if unusable.

    ``rule``: :func:`resize_rule`; with an augmentation the result is the pair ``(fixed view,
    image at the augmentation's shorter side)``.
    """
    _, payload = item
    rule = rule or {}
    aug = rule.get("augment")
    try:
        if isinstance(payload, np.ndarray):
            arr = payload if payload.ndim == 3 else payload[..., None]
            if _is_ready(arr, size) and crop == "none" and not pre_resize and aug is None:
                return np.ascontiguousarray(arr, dtype=np.uint8), None
            img = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
        else:
            img = Image.open(io.BytesIO(payload))
            _check_pixels(img, rule.get("max_pixels", Limits.max_image_pixels))  # header read, not decoded
            img.load()  # truncated files raise here
        if aug is not None:
            full = np.asarray(shorter_side(to_rgb(img), aug.resize), dtype=np.uint8)
            return (center_view(full, size), full), None
        return crop_resize(to_rgb(img), crop, size, pre_resize, rule.get("resample", "bilinear"),
                           rule.get("stored_size")), None
    except Exception as err:  # noqa: BLE001 - any decoding problem means: skip and count
        # no object addresses in the reason: manifests must be byte-identical across runs
        return None, re.sub(r" at 0x[0-9a-f]+", "", f"{type(err).__name__}: {err}")


def _is_ready(payload, size: int) -> bool:
    return isinstance(payload, np.ndarray) and payload.shape == (size, size, 3)


def _work(args):
    return process(*args)


# ----------------------------------------------------------------- readers
@dataclass(frozen=True)
class Limits:
    """What one source may expand to (config keys ``data.max_member_bytes``,
    ``data.max_expansion``, ``data.max_image_pixels``), checked before anything is
    read or extracted; :meth:`from_config` takes them from a validated ``data`` block."""

    max_member_bytes: int = 64 << 20   # one image file (in an archive or a folder)
    max_expansion: float = 50.0        # all members read from an archive / the archive's size
    max_image_pixels: int = 1 << 24    # width x height of one image (PIL's own cap: 89 M)

    @classmethod
    def from_config(cls, data: dict) -> "Limits":
        return cls(**{k: data[k] for k in ("max_member_bytes", "max_expansion", "max_image_pixels") if k in data})


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS and "__MACOSX" not in name \
        and not Path(name).name.startswith(".")


def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Refuse an opened (not yet decoded) image larger than ``max_pixels``: PIL has read its header only."""
    w, h = img.size
    if w * h > max_pixels:
        raise ValueError(f"{w}x{h} = {w * h} pixels, over data.max_image_pixels={max_pixels}")


def _check_members(path: Path, members: list[tuple[str, int]], limits: Limits) -> None:
    """Declared member sizes against ``limits`` (one line naming the member or the total)."""
    for name, size in members:
        if size > limits.max_member_bytes:
            raise PrepareError(f"{path}: member {name!r} expands to {_size(size)}, over data.max_member_bytes="
                               f"{limits.max_member_bytes}; refused (raise it only for an archive you trust)")
    total, cap = sum(s for _, s in members), limits.max_expansion * max(path.stat().st_size, 1)
    if total > cap:
        raise PrepareError(f"{path}: its members expand to {_size(total)}, more than data.max_expansion="
                           f"{limits.max_expansion:g} times the archive's {_size(path.stat().st_size)}; refused "
                           f"(raise it only for an archive you trust)")


def _open_zip(path: Path) -> zipfile.ZipFile:
    if path.is_dir():
        raise PrepareError(f"{path}: is a folder, not a zip archive; give the .zip file, or set the data "
                           f"set's format to image_folder")
    if not path.is_file():  # a device or pipe: zipfile would read it without end
        raise PrepareError(f"{path}: is not a regular file; give the .zip file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise PrepareError(f"{path}: not a readable zip archive ({err}); it is truncated or damaged: "
                           f"download or copy it again") from None


def _read_member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return zf.read(name)  # never more than the declared size (checked), CRC-checked at the end
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as err:
        raise PrepareError(f"{path}: member {name!r} cannot be read ({err}); the archive is damaged: "
                           f"download or copy it again") from None


def _read_zip_images(path: Path, keep=None, limits: Limits = Limits()) -> tuple[int, Iterator]:
    """Image members of a zip, by sorted name; sizes checked before any is read."""
    zf = _open_zip(path)
    names = sorted(n for n in zf.namelist() if _is_image(n) and (keep is None or Path(n).name in keep))
    try:
        _check_members(path, [(n, zf.getinfo(n).file_size) for n in names], limits)
    except PrepareError:
        zf.close()
        raise

    def gen():
        with zf:
            for n in names:
                yield n, _read_member(zf, path, n)
    return len(names), gen()


def _read_folder(path: Path, limits: Limits = Limits()) -> tuple[int, Iterator]:
    """Image files under a folder (regular files only, by sorted relative path)."""
    if not path.is_dir():
        raise PrepareError(f"{path}: is not a folder; give the folder of images, or set the data set's "
                           f"format to the archive's (image_folder_zip, image_folder_tar)")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(str(p.relative_to(path))))
    _check_members(path, [(str(p.relative_to(path)), p.stat().st_size) for p in files],
                   Limits(limits.max_member_bytes, math.inf, limits.max_image_pixels))
    return len(files), ((str(p.relative_to(path)), p.read_bytes()) for p in files)


def _escapes(name: str) -> bool:
    """A member name that leaves the folder it is extracted to (absolute, or with ``..``)."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or ".." in PurePosixPath(norm).parts


def _extract_tar_images(path: Path, out: Path, limits: Limits) -> None:
    """Extract only the regular image members of a tar (any compression) to ``out``, checking each
    member's name and size before it is written; a member that leaves the archive's folder
    (absolute, ``..``), an image that is a link, and a truncated or damaged archive are refused."""
    if path.is_dir():
        raise PrepareError(f"{path}: is a folder, not a tar archive; give the .tar/.tar.gz file, or set the "
                           f"data set's format to image_folder")
    if not path.is_file():  # a device or pipe: tarfile would read it without end
        raise PrepareError(f"{path}: is not a regular file; give the .tar/.tar.gz file")
    cap, total = limits.max_expansion * max(path.stat().st_size, 1), 0
    try:
        with tarfile.open(path) as tf:
            for m in tf:  # streamed: a .tar.gz is read once, front to back
                if _escapes(m.name) or ((m.issym() or m.islnk()) and _escapes(m.linkname)):
                    raise PrepareError(f"{path}: member {m.name!r} points outside the archive; refused: "
                                       f"rebuild the archive with relative member names")
                if not _is_image(m.name):
                    continue
                if m.issym() or m.islnk():
                    raise PrepareError(f"{path}: image member {m.name!r} is a link; refused: rebuild the "
                                       f"archive without links (tar --dereference)")
                if not m.isfile():
                    continue
                total += m.size
                _check_members(path, [(m.name, m.size)], Limits(limits.max_member_bytes, math.inf))
                if total > cap:
                    _check_members(path, [(m.name, total)], Limits(math.inf, limits.max_expansion))
                dest = out / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as err:
        raise PrepareError(f"{path}: not a readable tar archive ({err or type(err).__name__}); it is truncated "
                           f"or damaged: download or copy it again") from None
    except OSError as err:
        if err.errno is not None:  # writing the extracted file (disk full, permissions)
            raise PrepareError(f"{path}: extracting to {out} failed ({err})") from None
        raise PrepareError(f"{path}: not a readable tar archive ({err}); it is truncated or damaged: "
                           f"download or copy it again") from None


def _read_tar(path: Path, tmp: Path, limits: Limits = Limits()) -> tuple[int, Iterator]:
    out = tmp / "tar"
    try:
        _extract_tar_images(path, out, limits)
    except PrepareError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return _read_folder(out, limits)


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
def split_indices(n: int, rule: str, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices (each part sorted), the authors' rules: the test part has
    ``int(n * test_fraction)`` images (at least 1 when ``n > 1``): ``tail`` = the last ones in
    source order; ``random`` = the last ones after ``np.random.seed(seed); np.random.shuffle``."""
    n_test = min(max(int(n * test_fraction), 1), n - 1) if n > 1 else 0
    n_train = n - n_test
    if rule == "tail":
        idx = np.arange(n)
    elif rule == "random":
        idx = np.arange(n)
        np.random.RandomState(seed).shuffle(idx)  # the legacy global stream of np.random.seed(seed)
    else:
        raise ValueError(f"unknown split {rule!r}; allowed: tail, random")
    return np.sort(idx[:n_train]), np.sort(idx[n_train:])


def write_npy(path: Path, src: np.ndarray, idx: np.ndarray, chunk: int = 4096) -> str:
    """``src[idx]`` as a uint8 ``.npy`` written atomically; its sha256."""
    with atomic_path(path, suffix=".npy") as part:
        out = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(len(idx),) + src.shape[1:])
        for s in range(0, len(idx), chunk):
            out[s:s + chunk] = src[idx[s:s + chunk]]
        out.flush()
        del out
        digest = sha256_file(part, 1 << 22)
    return digest


# ----------------------------------------------------------------- stage
def _open_source(name: str, spec: dict, size: int, raw_dir: Path, tmp: Path, offline: bool,
                 limits: Limits = Limits()):
    fmt = spec["format"]
    if fmt == "shapes":
        imgs, attrs = shapes.generate(spec["shape"], int(spec["n"]), size, int(spec["seed"]))
        return len(imgs), ((str(i), a) for i, a in enumerate(imgs)), attrs, []
    if fmt == "torchvision":
        n, it = _read_torchvision(spec["torchvision"], raw_dir, offline)
        return n, it, None, []
    files = sources(spec, raw_dir)
    for f in files:
        if not f["path"].exists():
            if f["url"]:
                raise DatasetError(f"data set '{name}': {f['path']} missing; download it first "
                                   f"(rule data_download) from {f['url']}")
            raise DatasetError(missing_local_message(name, spec, f["path"]))
        if not (f["path"].is_file() or f["path"].is_dir()):  # a device, pipe or socket: never read
            raise DatasetError(f"data set '{name}': {f['path']} is not a regular file or folder; give the "
                               f"archive file or the folder of images")
    paths = [f["path"] for f in files]
    if fmt == "igan_hdf5_zip":
        n, it = _read_hdf5_zip(paths[0], spec["hdf5_key"], tmp, limits)
    elif fmt == "image_folder_zip":
        n, it = _read_zip_images(paths[0], None, limits)
    elif fmt == "image_folder":
        n, it = _read_folder(paths[0], limits)
    elif fmt == "image_folder_tar":
        n, it = _read_tar(paths[0], tmp, limits)
    elif fmt == "idx":
        shas = spec.get("content_sha256")
        n, it = _read_idx(paths, shas if isinstance(shas, list) else [shas], limits)
    elif fmt == "celeba":
        if len(paths) != 2:
            raise DatasetError(f"data set '{name}': celeba needs [images zip or folder, list_attr_celeba.txt]")
        n, it = _read_celeba(paths, spec.get("filter"), limits)
    else:
        raise DatasetError(f"unknown format {fmt!r}")
    return n, it, None, files


def prepare(name: str, spec: dict, size: int, out_dir: str | Path, raw_dir: str | Path, *,
            threads: int = 1, max_bad_fraction: float = 0.01, offline: bool = False,
            progress: bool = True, suite: str | None = None, lock_wait: float = DEFAULT_WAIT,
            limits: Limits | None = None) -> dict:
    """Build ``out_dir/{train,test}.npy`` and ``manifest.json`` for one data set; return the manifest.

    Several processes may share ``out_dir`` (two clones with one ``data_dir``): the build holds
    a lock on ``out_dir/.lock`` and works in its own temporary folder, so a second process waits
    (at most ``lock_wait`` seconds) and then takes the finished data set instead of building it
    again. The manifest records ``spec`` and ``suite``; a data set built by another suite with
    other parameters is refused (:func:`~notpipe.data.locks.build_conflict`). ``limits``: the caps
    on archives and images (:class:`Limits`; config ``data.max_member_bytes`` and the like).
    """
    out_dir, raw_dir = Path(out_dir), Path(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with held(out_dir / ".lock", f"data set folder {out_dir}", lock_wait) as waited:
        manifest = out_dir / "manifest.json"
        conflict = build_conflict(manifest, name, spec, suite)
        if conflict:
            raise PrepareError(conflict)
        if waited and manifest.is_file():  # built by the process we waited for
            done = json.loads(manifest.read_text())
            if done.get("spec") == build_record(spec) and done.get("image_size") == size:
                log.info("%s: prepared meanwhile by another process; using %s", name, out_dir)
                return done
        for stale in out_dir.glob(".tmp*"):  # left by a killed build: nobody else holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir))
        try:
            return _build(name, spec, size, out_dir, raw_dir, tmp, limits=limits or Limits(), threads=threads,
                          max_bad_fraction=max_bad_fraction, offline=offline, progress=progress,
                          record={"spec": build_record(spec), "suite": suite})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _buffer(path: Path, shape: tuple) -> np.ndarray:
    """A uint8 ``.npy`` memmap of ``shape`` whose blocks are reserved on disk now: a full disk is
    one line here, not a SIGBUS when a page is first written."""
    try:
        buf = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as e:
        n = int(np.prod(shape))
        size = f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"
        raise PrepareError(f"cannot reserve {size} for {path}: "
                           f"{e.strerror or e}; free space there or set data.data_dir to a bigger disk") from None
    return buf


def _build(name: str, spec: dict, size: int, out_dir: Path, raw_dir: Path, tmp: Path, *, limits: Limits,
           threads: int, max_bad_fraction: float, offline: bool, progress: bool, record: dict) -> dict:
    """:func:`prepare`'s work, in the private folder ``tmp``; ``record`` goes into the manifest."""
    n, items, attrs, files = _open_source(name, spec, size, raw_dir, tmp, offline, limits)
    last_file = getattr(items, "last_file", None)  # split: files (idx): the test file's images
    n_source = n
    if spec.get("limit"):
        n = min(n, int(spec["limit"]))
    if n == 0:
        raise PrepareError(f"data set '{name}': the source holds no images")
    crop, pre = spec["crop"], spec.get("pre_resize")
    rule = {**resize_rule(spec), "max_pixels": limits.max_image_pixels}
    tmp.mkdir(parents=True, exist_ok=True)
    store = RaggedWriter(tmp, rule["augment"]) if rule["augment"] else None  # augmentation: full images
    buf = _buffer(tmp / "all.npy", (n, size, size, 3))
    ok = np.zeros(n, bool)
    skipped: list[dict] = []
    keys: list[str] = []
    items = iter(items)
    first = next(items, None)
    items = itertools.chain([first] if first is not None else [], items)
    # arrays already at the target size (iGAN hdf5 at 128, shapes) are only copied: no workers
    copy_only = first is not None and _is_ready(first[1], size) and crop == "none" and not pre and not store
    jobs = _keys(((item, crop, size, pre, rule) for _, item in zip(range(n), items)), keys)
    bar = tqdm(total=n, desc=f"prepare {name}", unit="img", disable=not progress, mininterval=1.0)
    pool = mp.get_context("fork").Pool(threads) if threads > 1 and not copy_only else None
    try:
        results = pool.imap(_work, jobs, chunksize=32) if pool else map(_work, jobs)
        for i, (arr, reason) in enumerate(results):
            if arr is None:
                skipped.append({"name": keys[i], "reason": reason})
            else:
                buf[i], ok[i] = (store.add(i, arr) if store else arr), True
            bar.update(1)
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    bad = len(skipped) / n
    if bad > max_bad_fraction:
        raise PrepareError(f"data set '{name}': {len(skipped)} of {n} images unreadable ({bad:.1%} > "
                           f"data.max_bad_fraction={max_bad_fraction}); first: {skipped[:3]}")
    valid = np.flatnonzero(ok)
    if spec["split"] == "files":  # the source's own split: the last file's images are the test split
        if last_file is None:
            raise PrepareError(f"datasets.{name}.split: files needs a source with its own train and test files "
                               f"(format idx); use tail or random")
        is_test = valid >= n_source - last_file
        tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        if len(te) == 0 or len(tr) == 0:
            raise PrepareError(f"data set '{name}': split files leaves {len(tr)} train and {len(te)} test images "
                               f"(limit {spec.get('limit')}); raise datasets.{name}.limit or drop it")
    else:
        tr, te = split_indices(len(valid), spec["split"], float(spec["test_fraction"]), int(spec["split_seed"]))
    digests = {"train": write_npy(out_dir / "train.npy", buf, valid[tr]),
               "test": write_npy(out_dir / "test.npy", buf, valid[te])}
    full_files, full_digests = store.write(out_dir, {"train": valid[tr], "test": valid[te]}) if store else ({}, {})
    del buf
    if attrs is not None:
        parts = [attrs.iloc[valid[tr]].assign(split="train", index=np.arange(len(tr))),
                 attrs.iloc[valid[te]].assign(split="test", index=np.arange(len(te)))]
        pd.concat(parts).to_csv(out_dir / "attributes.csv", index=False, float_format="%.4f")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = {
        "name": name, "format": spec["format"], "image_size": size, "layout": "NHWC", "dtype": "uint8",
        "n_source": n, "n_train": len(tr), "n_test": len(te), "n_skipped": len(skipped),
        "skipped": skipped, "crop": crop, "pre_resize": pre, "limit": spec.get("limit"),
        "resample": rule["resample"], "stored_size": rule["stored_size"],
        "augment": rule["augment"].as_block() if rule["augment"] else None,
        "filter": spec.get("filter"), "shape": spec.get("shape"),
        "split": {"rule": spec["split"], "test_fraction": spec["test_fraction"], "seed": spec["split_seed"]},
        "source": [f["url"] or file_name(str(f["path"])) for f in files] or spec.get("torchvision")
        or f"synthetic:{spec['format']}",
        "sha256": {file_name(str(f["path"])): (sha256_file(f["path"]) if f["path"].is_file() else None)
                   for f in files},
        "files": {"train": "train.npy", "test": "test.npy",
                  **({"attributes": "attributes.csv"} if attrs is not None else {}), **full_files},
        "array_sha256": {**digests, **full_digests}, "notpipe_version": __version__,
    }
    manifest.update(record)
    write_json(out_dir / "manifest.json", manifest)
    log.info("%s: %d train, %d test, %d skipped -> %s", name, len(tr), len(te), len(skipped), out_dir)
    return manifest


def _keys(jobs, keys: list):
    """Pass jobs through while remembering each item's key (for the skip list)."""
    for job in jobs:
        keys.append(job[0][0])
        yield job
