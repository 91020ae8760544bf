"""notpipe.data.augment: torchvision's RandomResizedCrop and flips, drawn from the trainer's generator."""

import json

import numpy as np
import pytest
import torch
from data_fixtures import encode, write_tar
from PIL import Image
from torchvision import transforms as tvt

from notpipe.data.augment import (
    AugmentedSplit,
    RandomResizedCrop,
    crop_params,
    flip,
    resized_crop,
    shorter_side,
)
from notpipe.data.datasets import DatasetError, resolve_datasets
from notpipe.data.loader import ImageSampler, load_split, to_uint8
from notpipe.data.prepare import prepare, split_indices

SCALE = (128 / 300, 1.0)


def smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 RGB image without symmetries (gradients plus seeded noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + 2 * yy) % 256], -1)
    return np.clip(base + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("hw,scale", [((300, 300), SCALE), ((300, 451), SCALE), ((640, 300), SCALE),
                                      ((300, 1000), (0.9, 1.0)), ((7, 5), (0.05, 0.3))])
def test_crop_params_are_torchvisions_get_params_on_the_same_stream(hw, scale):
    h, w = hw
    img = torch.zeros(3, h, w)
    fallbacks = 0
    for seed in range(40):
        torch.manual_seed(seed)
        want = tvt.RandomResizedCrop.get_params(img, list(scale), [1.0, 1.0])
        after = torch.rand(1).item()  # the stream continues at the same place
        g = torch.Generator().manual_seed(seed)
        assert crop_params(h, w, scale, (1.0, 1.0), g) == want
        assert torch.rand(1, generator=g).item() == after
        fallbacks += want == ((h - min(h, w)) // 2, (w - min(h, w)) // 2, min(h, w), min(h, w))
    if hw == (300, 1000):  # 90 % of the area never fits as a square: torchvision's centred fallback
        assert fallbacks == 40


def test_other_ratios_match_torchvision_too():
    img = torch.zeros(3, 50, 80)
    for seed in range(30):
        torch.manual_seed(seed)
        want = tvt.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        assert crop_params(50, 80, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed)) == want


def test_whole_chain_equals_torchvisions_compose_image_by_image():
    """Resize(r) once (data stage) + our draws and crops == the authors' Compose applied per image."""
    resize, size = 30, 12
    tv = tvt.Compose([tvt.Resize(resize), tvt.RandomResizedCrop((size, size), scale=(size / resize, 1.0),
                                                                ratio=(1.0, 1.0)),
                      tvt.RandomHorizontalFlip(0.5), tvt.RandomVerticalFlip(0.5)])
    originals = [smooth(h, w, i) for i, (h, w) in enumerate([(40, 52), (64, 33), (30, 30), (45, 90), (31, 47)])]
    full = [np.asarray(shorter_side(Image.fromarray(a), resize)) for a in originals]
    for a, f in zip(originals, full):  # the data stage's resize is torchvision's Resize(r)
        np.testing.assert_array_equal(f, np.asarray(tvt.Resize(resize)(Image.fromarray(a))))
    t = RandomResizedCrop(resize, (size / resize, 1.0), (1.0, 1.0), ("h", "v"))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        want = np.stack([np.asarray(tv(Image.fromarray(a))) for a in originals])
        g = torch.Generator().manual_seed(seed)
        params = t.draw(np.array([f.shape[:2] for f in full]), g)
        np.testing.assert_array_equal(t.apply(full, params, size), want)
        seen |= {tuple(p) for p in params[:, 4:]}
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}  # every flip combination occurred


def test_flips_and_resized_crop():
    img = smooth(9, 7, 3)
    np.testing.assert_array_equal(flip(img, True, False), img[:, ::-1])
    np.testing.assert_array_equal(flip(img, False, True), img[::-1])
    np.testing.assert_array_equal(flip(img, True, True), img[::-1, ::-1])
    np.testing.assert_array_equal(resized_crop(img, 1, 2, 4, 4, 4), img[1:5, 2:6])  # same size: the box
    t = RandomResizedCrop(7, (1.0, 1.0), (1.0, 1.0), ("h", "v"))
    out = t.apply([img], np.array([[1, 0, 7, 7, 1, 0]]), 7)
    np.testing.assert_array_equal(out[0], img[1:8, ::-1])
    # no flips configured: no flip is ever drawn, and fewer numbers are taken from the stream
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    p = RandomResizedCrop(7, (0.5, 1.0), (1.0, 1.0), ()).draw(np.array([[9, 7]] * 50), g1)
    assert not p[:, 4:].any()
    q = RandomResizedCrop(7, (0.5, 1.0), (1.0, 1.0), ("h", "v")).draw(np.array([[9, 7]] * 50), g2)
    assert 10 < q[:, 4].sum() < 40 and 10 < q[:, 5].sum() < 40  # p = 0.5 each


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
    """A prepared image_folder_tar data set with the textures augmentation at resize 30, size 12."""
    d = tmp_path_factory.mktemp("aug")
    shapes = [(40, 52), (64, 33), (30, 30), (45, 90), (31, 47), (50, 40), (33, 60), (70, 35), (30, 41), (48, 48)]
    originals = [smooth(h, w, i) for i, (h, w) in enumerate(shapes)]
    write_tar(d / "dtd.tar.gz", {f"dtd/images/c{i // 5}/img_{i:02d}.png": encode(a, "PNG")
                                 for i, a in enumerate(originals)})
    aug = {"name": "random_resized_crop", "resize": 30, "scale": [12 / 30, 1.0], "flips": ["h", "v"]}
    spec = resolve_datasets({"tex": {"path": "dtd.tar.gz", "format": "image_folder_tar", "split": "random",
                                     "split_seed": 0, "augment": aug}})["tex"]
    m = prepare("tex", spec, 12, d / "tex_12", d, progress=False)
    return d / "tex_12", originals, m


def test_prepare_keeps_the_resized_images_and_the_manifest_says_so(augmented):
    out, originals, m = augmented
    assert m["augment"]["resize"] == 30 and m["files"]["train_full"] == "train_full.npy"
    train = load_split(out, "train")
    assert isinstance(train, AugmentedSplit) and train.shape == (m["n_train"], 12, 12, 3)
    tr, te = split_indices(len(originals), "random", 0.1, 0)
    for k, i in enumerate(tr):  # full images: torchvision's Resize(30); fixed view: their centre square
        want = np.asarray(tvt.Resize(30)(Image.fromarray(originals[i])))
        np.testing.assert_array_equal(train.full[k], want)
        np.testing.assert_array_equal(train[k], np.asarray(tvt.Resize((12, 12))(tvt.CenterCrop(30)(
            Image.fromarray(want)))))
    assert min(train.full.shapes.min(1)) == 30 and load_split(out, "test").full.shapes.tolist() == [
        list(np.asarray(tvt.Resize(30)(Image.fromarray(originals[i]))).shape[:2]) for i in te]
    assert np.load(out / "train_full.npy", mmap_mode="r").ndim == 1  # one flat memory-mappable array


def test_sampler_batches_are_the_authors_transform_of_the_drawn_images(augmented):
    out, originals, _ = augmented
    train = load_split(out, "train")
    tr, _ = split_indices(len(originals), "random", 0.1, 0)
    tv = tvt.Compose([tvt.Resize(30), tvt.RandomResizedCrop((12, 12), scale=(12 / 30, 1.0), ratio=(1.0, 1.0)),
                      tvt.RandomHorizontalFlip(0.5), tvt.RandomVerticalFlip(0.5)])
    torch.manual_seed(5)
    idx = torch.randint(len(tr), (16,))
    want = np.stack([np.asarray(tv(Image.fromarray(originals[tr[i]]))) for i in idx])
    got = to_uint8(ImageSampler(train)(16, torch.Generator().manual_seed(5)))
    np.testing.assert_array_equal(got, want)


def test_same_generator_state_same_batches_and_resume_continues(augmented):
    out, _, _ = augmented
    a, b = ImageSampler(load_split(out, "train")), ImageSampler(load_split(out, "train"))
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = [a(8, ga) for _ in range(3)]
    assert all(torch.equal(x, b(8, gb)) for x in first)
    assert not torch.equal(first[0], first[1])
    saved = ga.get_state()  # a checkpoint after three batches
    later = [a(8, ga) for _ in range(2)]
    resumed = torch.Generator()
    resumed.set_state(saved)
    c = ImageSampler(load_split(out, "train"))  # a new process: fresh sampler, restored generator
    assert all(torch.equal(x, c(8, resumed)) for x in later)
    # the same indices get new crops: the augmentation is drawn per batch
    t = load_split(out, "train")
    idx = np.zeros(8, int)
    assert not np.array_equal(t.sample(idx, torch.Generator().manual_seed(0)),
                              t.sample(idx, torch.Generator().manual_seed(1)))


def test_rows_of_a_draw_are_those_rows_and_keep_the_stream(augmented):
    out, _, _ = augmented
    s = ImageSampler(load_split(out, "train"))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    whole = s(8, g1)
    rows = np.array([1, 4, 6])
    assert torch.equal(s(8, g2, rows), whole[rows])
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))  # ranks stay in step


def test_registry_turns_it_on_for_textures_only_and_refuses_bad_blocks():
    reg = resolve_datasets()
    assert reg["textures"]["augment"] == {"name": "random_resized_crop", "resize": 300, "scale": [128 / 300, 1.0],
                                          "ratio": [1.0, 1.0], "flips": ["h", "v"]}
    assert [n for n, s in reg.items() if s.get("augment")] == ["textures"]
    bad = [({"name": "cutout"}, "datasets.textures.augment.name: 'cutout'"),
           ({"name": "random_resized_crop", "scale": [0.9, 0.2]}, "datasets.textures.augment.scale"),
           ({"name": "random_resized_crop", "flips": ["x"]}, "datasets.textures.augment.flips"),
           ({"name": "random_resized_crop", "size": 3}, "datasets.textures.augment: unknown key(s) size")]
    for block, msg in bad:
        with pytest.raises(DatasetError) as err:
            resolve_datasets({"textures": {"augment": block}})
        assert str(err.value).startswith(msg) and "\n" not in str(err.value)


def test_manifest_without_augment_loads_a_plain_array(tmp_path):
    np.save(tmp_path / "train.npy", np.zeros((3, 4, 4, 3), np.uint8))
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"train": "train.npy"}, "augment": None}))
    assert isinstance(load_split(tmp_path), np.memmap)
