"""notpipe.data.derive: OTM's restoration halves (disjoint, deterministic) and the degradations."""

import json

import numpy as np
import pytest

from notpipe.data.datasets import DatasetError, resolve_datasets
from notpipe.data.derive import box_corners, degrade, derive, halves
from notpipe.data.prepare import prepare


def test_halves_are_disjoint_cover_everything_and_are_deterministic():
    a, b = halves(101, 0, "train")
    assert len(a) == 50 and len(b) == 51 and not set(a) & set(b) and set(a) | set(b) == set(range(101))
    assert np.array_equal(halves(101, 0, "train")[0], a)  # same seed: same halves
    assert not np.array_equal(halves(101, 1, "train")[0], a)  # another seed: other halves
    assert not np.array_equal(halves(101, 0, "test")[0], a)  # the splits are halved independently


def _base(tmp_path, n=60, size=16):
    spec = resolve_datasets({})["shapes_squares"] | {"n": n}
    prepare("shapes_squares", spec, size, tmp_path / f"shapes_squares_{size}", tmp_path, progress=False)
    return tmp_path / f"shapes_squares_{size}"


def _derived(tmp_path, base_dir, name, half, deg=None, size=16):
    spec = resolve_datasets({name: {"format": "derived", "base": "shapes_squares", "half": half,
                                    **({"degrade": deg} if deg else {})}})[name]
    derive(name, spec, size, tmp_path / f"{name}_{size}", base_dir)
    out = tmp_path / f"{name}_{size}"
    return out, json.loads((out / "manifest.json").read_text())


def _rows(a):
    return {r.tobytes() for r in a}


def test_derived_halves_share_no_image_and_keep_the_originals(tmp_path):
    base = _base(tmp_path)
    clean, mc = _derived(tmp_path, base, "clean", 1)
    noisy, mn = _derived(tmp_path, base, "noisy", 0, {"name": "noise", "sigma": 0.1, "seed": 0})
    for split in ("train", "test"):
        b = np.load(base / f"{split}.npy")
        c = np.load(clean / f"{split}.npy")
        assert len(c) + mn[f"n_{split}"] == len(b)
    orig = np.load(noisy / "test_original.npy")
    base_test, clean_test = np.load(base / "test.npy"), np.load(clean / "test.npy")
    # the degraded half's originals and the clean half are disjoint and together the base split
    assert not _rows(orig) & _rows(clean_test)
    assert _rows(orig) | _rows(clean_test) == _rows(base_test)
    assert mn["degrade"] == {"name": "noise", "sigma": 0.1, "seed": 0} and mn["half"] == 0
    assert mn["files"]["test_original"] == "test_original.npy" and "test_original" not in mc["files"]
    # deterministic: a second derivation is byte-identical
    again, m2 = _derived(tmp_path / "again", base, "noisy", 0, {"name": "noise", "sigma": 0.1, "seed": 0})
    assert m2["array_sha256"] == mn["array_sha256"]


def test_noise_has_the_configured_sigma():
    gray = np.full((64, 16, 16, 3), 128, np.uint8)
    out = degrade(gray, {"name": "noise", "sigma": 0.1}, seed=0)
    diff = (out.astype(float) - gray) / 255.0
    assert abs(diff.std() - 0.1) < 0.005 and abs(diff.mean()) < 0.005
    assert np.array_equal(out, degrade(gray, {"name": "noise", "sigma": 0.1}, seed=0))


def test_gray_has_equal_channels_holding_the_luminance():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    out = degrade(x, {"name": "gray"}, seed=0)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0] - (x @ [0.299, 0.587, 0.114])).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("box", ["center", "random"])
def test_mask_zeroes_its_box_and_nothing_else(box):
    x = np.full((20, 16, 16, 3), 200, np.uint8)
    out = degrade(x, {"name": "mask", "size": 6, "box": box, "seed": 3}, seed=0)
    corners = box_corners(20, 16, 6, box, np.random.default_rng([3, 0]))
    for img, (top, left) in zip(out, corners):
        assert (img[top:top + 6, left:left + 6] == 0).all()
        assert (img == 0).all(axis=-1).sum() == 36  # exactly the box
    if box == "center":
        assert (corners == 5).all()
    else:
        assert len({tuple(c) for c in corners}) > 1 and corners.min() >= 0 and corners.max() <= 10
    with pytest.raises(ValueError, match="smaller than the image"):
        degrade(x, {"name": "mask", "size": 16}, seed=0)


def test_derived_base_must_be_a_plain_data_set():
    with pytest.raises(DatasetError, match="datasets.d.base: 'nope'"):
        resolve_datasets({"d": {"format": "derived", "base": "nope", "half": 0}})
    with pytest.raises(DatasetError, match="noise"):
        resolve_datasets({"noise": {"format": "shapes", "shape": "circle", "n": 4, "seed": 0}})
