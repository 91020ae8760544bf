"""The idx format (MNIST, Fashion-MNIST, KMNIST read natively): train file then test file, the
data set's own split (split: files), the decompressed content's sha256, refusals; and the registry
entries against the offline copies in ../shared/data when they are there."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from notpipe.data.datasets import DEFAULT_DATASETS, DatasetError, resolve_datasets
from notpipe.data.prepare import PrepareError, prepare

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def idx_bytes(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return b"\0\0\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.astype(np.uint8).tobytes()


def write_idx(path: Path, images: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(images)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def _pair(tmp_path: Path, gz: bool = True) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (7, 6, 6), dtype=np.uint8), rng.integers(0, 256, (3, 6, 6), dtype=np.uint8)
    ext = ".gz" if gz else ""
    paths = [write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", train, gz),
             write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", test, gz)]
    return train, test, paths


def _spec(paths, **over) -> dict:
    return resolve_datasets({"d": {"path": [str(p) for p in paths], "format": "idx", "split": "files",
                                   "crop": "none", **over}})["d"]


@pytest.mark.parametrize("gz", [True, False])
def test_idx_train_file_then_test_file_grey_as_rgb(tmp_path, gz):
    train, test, paths = _pair(tmp_path, gz)
    shas = [hashlib.sha256(idx_bytes(a)).hexdigest() for a in (train, test)]
    m = prepare("d", _spec(paths, content_sha256=shas), 8, tmp_path / "out", tmp_path / "raw", progress=False)
    assert (m["n_train"], m["n_test"], m["n_skipped"]) == (7, 3, 0) and m["split"]["rule"] == "files"
    got = np.load(tmp_path / "out" / "test.npy")
    want = np.stack([np.asarray(Image.fromarray(a).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
                     for a in test])
    np.testing.assert_array_equal(got, want)  # the test file's images, in order, grey replicated to RGB
    assert np.load(tmp_path / "out" / "train.npy").shape == (7, 8, 8, 3)


def test_idx_refusals_are_one_line(tmp_path):
    train, test, paths = _pair(tmp_path)
    with pytest.raises(PrepareError, match=r"t10k-images-idx3-ubyte.gz: decompressed content has sha256 .* "
                                           r"\(content_sha256 of the data set\)"):
        prepare("d", _spec(paths, content_sha256=[None, "0" * 64]), 8, tmp_path / "o1", tmp_path / "raw",
                progress=False)
    short = tmp_path / "short"
    short.write_bytes(gzip.compress(idx_bytes(test)[:-5]))
    with pytest.raises(PrepareError, match="declares 3 images of 6x6 \\(108 bytes\\) but holds 103"):
        prepare("d", _spec([paths[0], short]), 8, tmp_path / "o2", tmp_path / "raw", progress=False)
    labels = tmp_path / "labels"
    labels.write_bytes(b"\0\0\x08\x01" + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(PrepareError, match="not an idx file of uint8 images .*give the images file, not the labels"):
        prepare("d", _spec([paths[0], labels]), 8, tmp_path / "o3", tmp_path / "raw", progress=False)
    bomb = tmp_path / "bomb.gz"  # 40 bytes of gzip declaring 10^6 images of 28x28
    bomb.write_bytes(gzip.compress(b"\0\0\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (10**6, 28, 28))))
    with pytest.raises(PrepareError, match="more than data.max_expansion"):
        prepare("d", _spec([paths[0], bomb]), 8, tmp_path / "o4", tmp_path / "raw", progress=False)
    for out in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / out / "manifest.json").exists()


def test_split_files_needs_the_idx_format():
    with pytest.raises(DatasetError, match="datasets.x.split: files .* needs format idx"):
        resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "split": "files"}})


def test_registry_entries():
    for name in ("mnist", "fashion_mnist", "kmnist"):
        spec = DEFAULT_DATASETS[name]
        assert spec["format"] == "idx" and spec["split"] == "files" and len(spec["url"]) == 2
        assert [u.rsplit("/", 1)[1] for u in spec["url"]] == ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    assert "fashion_mnist" in resolve_datasets()


@pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "fashion-mnist").is_dir(),
                    reason=f"the offline MNIST / Fashion-MNIST copies are not at {SHARED}")
@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
def test_offline_copies_match_the_registry_and_prepare(tmp_path, name, folder):
    files = [SHARED / folder / u.rsplit("/", 1)[1] for u in DEFAULT_DATASETS[name]["url"]]
    spec = resolve_datasets({name: {"path": [str(f) for f in files]}})[name]
    assert spec["content_sha256"] == DEFAULT_DATASETS[name]["content_sha256"]  # a path keeps the content pin
    m = prepare(name, spec, 32, tmp_path / name, tmp_path / "raw", threads=1, progress=False)
    assert (m["n_train"], m["n_test"]) == (60000, 10000)
    assert json.loads((tmp_path / name / "manifest.json").read_text())["image_size"] == 32
