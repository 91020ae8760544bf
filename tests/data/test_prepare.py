"""notpipe.data.prepare: decoding, cropping, skipping bad images, splits, byte-identical outputs."""

import json

import numpy as np
import pandas as pd
import pytest
from data_fixtures import (
    encode,
    folder_images,
    rgb,
    write_igan_zip,
    write_tar,
    write_zip,
)
from PIL import Image

from notpipe.data.datasets import DatasetError, resolve_datasets
from notpipe.data.prepare import (
    PrepareError,
    crop_resize,
    prepare,
    split_indices,
    to_rgb,
)


def spec(**over):
    return resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", **over}})["x"]


def test_image_folder_zip_skips_and_lists_bad_images(tmp_path):
    write_zip(tmp_path / "x.zip", folder_images(8))
    m = prepare("x", spec(crop="none"), 16, tmp_path / "out", tmp_path, max_bad_fraction=0.2, progress=False)
    assert m["n_source"] == 13 and m["n_skipped"] == 2
    assert {s["name"] for s in m["skipped"]} == {"imgs/900_truncated.jpg", "imgs/901_garbage.png"}
    assert m["n_train"] + m["n_test"] == 11 and m["n_test"] == int(11 * 0.1)  # authors: test_size = int(n * 0.1)
    assert m["image_size"] == 16 and set(m) >= {"n_train", "n_test", "skipped", "sha256", "image_size"}
    assert len(m["sha256"]["x.zip"]) == 64
    train = np.load(tmp_path / "out/train.npy")
    assert train.dtype == np.uint8 and train.shape == (m["n_train"], 16, 16, 3)
    # source order: 000..007, 100_gray, 101_rgba, 102_photo; gray is position 8 -> train
    assert np.all(train[8] == 77)
    assert json.loads((tmp_path / "out/manifest.json").read_text()) == m


def test_rgba_on_white_and_grayscale_to_rgb():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[:2, :, 3] = 255
    out = np.asarray(to_rgb(Image.fromarray(a)))
    assert out[:2].tolist() == [[[200, 0, 0]] * 4] * 2 and np.all(out[2:] == 255)
    gray = np.asarray(to_rgb(Image.fromarray(np.full((3, 3), 9, np.uint8))))
    assert gray.shape == (3, 3, 3) and np.all(gray == 9)


def test_too_many_bad_images_fails_without_manifest(tmp_path):
    write_zip(tmp_path / "x.zip", folder_images(8))
    with pytest.raises(PrepareError, match="2 of 13 images unreadable"):
        prepare("x", spec(), 16, tmp_path / "out", tmp_path, max_bad_fraction=0.1, progress=False)
    assert not (tmp_path / "out/manifest.json").exists()


@pytest.mark.parametrize("threads", [1, 2])
def test_outputs_are_byte_identical_across_runs(tmp_path, threads):
    write_zip(tmp_path / "x.zip", folder_images(30))
    outs = []
    for k in range(2):
        prepare("x", spec(), 16, tmp_path / f"o{k}", tmp_path, threads=threads, max_bad_fraction=0.1,
                progress=False)
        outs.append([(tmp_path / f"o{k}" / f).read_bytes() for f in ("train.npy", "test.npy", "manifest.json")])
    assert outs[0] == outs[1]


def test_igan_hdf5_zip_keeps_arrays_and_tail_split(tmp_path):
    arr = write_igan_zip(tmp_path / "shoes_128.zip", n=20, size=16)
    s = resolve_datasets({"shoes": {"path": "shoes_128.zip"}})["shoes"]
    m = prepare("shoes", s, 16, tmp_path / "out", tmp_path, progress=False)
    assert (m["n_train"], m["n_test"]) == (18, 2)
    np.testing.assert_array_equal(np.load(tmp_path / "out/train.npy"), arr[:18])
    np.testing.assert_array_equal(np.load(tmp_path / "out/test.npy"), arr[18:])  # last 10 %
    m8 = prepare("shoes", s, 8, tmp_path / "out8", tmp_path, progress=False)
    assert np.load(tmp_path / "out8/train.npy").shape == (18, 8, 8, 3) and m8["image_size"] == 8


def test_split_rules():
    tr, te = split_indices(100, "tail", 0.1, 0)
    assert list(te) == list(range(90, 100))
    a = split_indices(100, "random", 0.1, 3)
    b = split_indices(100, "random", 0.1, 3)
    c = split_indices(100, "random", 0.1, 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[1], c[1])
    assert sorted(np.concatenate(a)) == list(range(100)) and list(a[1]) != list(range(90, 100))


def test_crops():
    img = Image.fromarray(rgb(0, 20, 40))
    centre = crop_resize(img, "center", 20)
    np.testing.assert_array_equal(centre, np.asarray(img)[:, 10:30])
    box = crop_resize(img, [2, 3, 10, 10], 10)
    np.testing.assert_array_equal(box, np.asarray(img)[2:12, 3:13])
    assert crop_resize(img, "none", 8).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="outside"):
        crop_resize(img, [15, 0, 10, 10], 10)


def test_tar_and_celeba_formats(tmp_path):
    files = {f"dtd/images/c{i}.jpg": encode(rgb(i, 30, 30), "JPEG") for i in range(10)}
    write_tar(tmp_path / "dtd.tar.gz", files)
    s = resolve_datasets({"t": {"path": "dtd.tar.gz", "format": "image_folder_tar"}})["t"]
    assert prepare("t", s, 8, tmp_path / "t", tmp_path, progress=False)["n_source"] == 10
    names = [f"{i:06d}.jpg" for i in range(1, 11)]
    write_zip(tmp_path / "celeba.zip", {f"img_align_celeba/{n}": encode(rgb(i, 24, 20), "JPEG")
                                        for i, n in enumerate(names)})
    male = [1 if i % 3 == 0 else -1 for i in range(10)]
    (tmp_path / "attrs.txt").write_text("10\n5_o_Clock_Shadow Male\n" + "".join(
        f"{n} -1 {v}\n" for n, v in zip(names, male)))
    s = resolve_datasets({"celeba_male": {"path": ["celeba.zip", "attrs.txt"]}})["celeba_male"]
    m = prepare("celeba_male", s, 8, tmp_path / "c", tmp_path, progress=False)
    assert m["n_source"] == male.count(1) == 4 and m["filter"] == {"attribute": "Male", "value": 1}


def test_missing_local_source_is_one_clear_line(tmp_path):
    s = resolve_datasets()["anime"]
    with pytest.raises(DatasetError) as err:
        prepare("anime", s, 16, tmp_path / "out", tmp_path / "raw", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "raw" / "anime_faces.zip") in msg and "Kaggle" in msg


def test_shapes_dataset_writes_attributes(tmp_path):
    s = resolve_datasets({"shapes_circles": {"n": 50}})["shapes_circles"]
    m = prepare("shapes_circles", s, 16, tmp_path / "s", tmp_path, progress=False)
    attrs = pd.read_csv(tmp_path / "s/attributes.csv")
    assert len(attrs) == 50 and (attrs.split == "test").sum() == m["n_test"] == 5
    assert m["files"]["attributes"] == "attributes.csv"
