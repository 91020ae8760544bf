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

import itertools
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from notpipe import __version__
from notpipe.data import shapes
from notpipe.data.augment import RaggedWriter
from notpipe.data.datasets import (
    DatasetError,
    file_name,
    missing_local_message,
    sources,
)
from notpipe.data.download_checks import check_md5
from notpipe.data.locks import DEFAULT_WAIT, build_conflict, build_record, held
from notpipe.io import atomic_path, sha256_file, write_json

# the readers, checks and image work live in their own modules; re-exported: part of this API
from notpipe.data.archives import (  # noqa: E402,F401
    Limits, PrepareError, _check_members, _extract_tar_images, _is_image, _open_zip, _read_folder, _read_tar,
    _read_zip_images, _size)
from notpipe.data.images import (  # noqa: E402,F401
    IMAGE_EXTS, _check_pixels, _is_ready, _work, crop_resize, process, resize_rule, resize_square, to_rgb)
from notpipe.data.readers import (  # noqa: E402,F401
    _read_celeba, _read_hdf5_zip, _read_idx, _read_torchvision, check_hdf5_images)

log = logging.getLogger(__name__)

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
        if f.get("md5") and f["path"].is_file():  # the published MD5, before the file is read
            check_md5(f["path"], f["path"], f["url"], f["md5"], f"expected (datasets.{name}.md5)")
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
