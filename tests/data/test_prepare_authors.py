"""notpipe.data.prepare against the authors' preprocessing, each written here from their code:
iGAN ``F.interpolate``, CelebA's whole-image ``Resize((s, s))``, the anime notebook's Pillow
defaults, the 10 % split sizes and Kernel NOT's DTD shuffle in ``ImageFolder`` order."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import encode, write_igan_zip, write_tar, write_zip
from PIL import Image
from torchvision import transforms as tvt
from torchvision.datasets import ImageFolder

from notpipe.data.datasets import resolve_datasets
from notpipe.data.prepare import prepare, split_indices


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth content plus noise: resize filters differ on it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 5.0) * 90 + 120, np.cos(yy / 7.0) * 90 + 120, (xx + yy) % 200 + 20], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def test_igan_at_64_is_the_authors_f_interpolate(tmp_path):
    arr = write_igan_zip(tmp_path / "shoes_128.zip", n=10, size=128)
    s = resolve_datasets({"shoes": {"path": "shoes_128.zip"}})["shoes"]
    m = prepare("shoes", s, 64, tmp_path / "shoes_64", tmp_path, progress=False)
    ours = np.concatenate([np.load(tmp_path / "shoes_64/train.npy"), np.load(tmp_path / "shoes_64/test.npy")])
    # h5py_to_dataset: 2 * (float32 / 255.) - 1, NCHW, F.interpolate(data, img_size, mode='bilinear')
    data = 2 * (torch.tensor(arr, dtype=torch.float32) / 255.).permute(0, 3, 1, 2) - 1
    theirs = F.interpolate(data, 64, mode="bilinear").permute(0, 2, 3, 1).numpy()
    err = np.abs(ours / 127.5 - 1 - theirs)
    assert err.max() <= 0.5 / 127.5 + 1e-6  # uint8 storage: within half a level
    assert m["resample"] == "interpolate"


def test_celeba_is_the_whole_image_resized_to_a_square(tmp_path):
    names = [f"{i:06d}.jpg" for i in range(1, 11)]
    imgs = [photo(218, 178, i) for i in range(10)]
    write_zip(tmp_path / "celeba.zip", {f"img_align_celeba/{n}": encode(a, "PNG") for n, a in zip(names, imgs)})
    (tmp_path / "attrs.txt").write_text("10\nMale\n" + "".join(f"{n} {1 if i % 2 else -1}\n"
                                                               for i, n in enumerate(names)))
    for name in ("celeba", "celeba_female"):
        s = resolve_datasets({name: {"path": ["celeba.zip", "attrs.txt"]}})[name]
        prepare(name, s, 32, tmp_path / name, tmp_path, progress=False)
        keep = [a for i, a in enumerate(imgs) if name == "celeba" or i % 2 == 0]
        ours = np.concatenate([np.load(tmp_path / name / "train.npy"), np.load(tmp_path / name / "test.npy")])
        theirs = np.stack([np.asarray(tvt.Resize((32, 32))(Image.fromarray(a))) for a in keep])  # ImageFolder
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("size", [128, 64])
def test_anime_is_the_notebooks_pillow_default_resizes(tmp_path, size):
    imgs = [photo(600, 560, i) for i in range(10)]
    write_zip(tmp_path / "anime_faces.zip", {f"faces/{i}.png": encode(a, "PNG") for i, a in enumerate(imgs)})
    s = resolve_datasets({"anime": {"path": "anime_faces.zip"}})["anime"]
    prepare("anime", s, size, tmp_path / "anime", tmp_path, progress=False)
    ours = np.concatenate([np.load(tmp_path / "anime/train.npy"), np.load(tmp_path / "anime/test.npy")])

    def preprocess_anime_face(im):  # datasets/preprocess.ipynb, verbatim apart from the file I/O
        im = im.resize((512, 512))
        left, upper = int(im.size[0] / 2 - 256 / 2) + 0, int(im.size[1] / 2 - 256 / 2) - 14
        return im.crop((left, upper, left + 256, upper + 256)).resize((128, 128))
    # their loader: ImageFolder + Resize((s, s)) of the stored 128-px PNGs
    theirs = np.stack([np.asarray(tvt.Resize((size, size))(preprocess_anime_face(Image.fromarray(a))))
                       for a in imgs])
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("n", [11, 15, 101, 5640, 138567])
def test_split_sizes_and_dtd_shuffle_are_the_authors(n):
    test_size = int(n * 0.1)  # load_dataset: test_ratio=0.1; test_size = int(len(idx) * test_ratio)
    idx = list(range(n))
    tr, te = split_indices(n, "tail", 0.1, 0)
    assert (tr.tolist(), te.tolist()) == (idx[:-test_size], idx[-test_size:])
    np.random.seed(0x000000)  # Kernel NOT, name == 'dtd'
    np.random.shuffle(idx)
    tr, te = split_indices(n, "random", 0.1, 0)
    assert set(tr) == set(idx[:-test_size]) and set(te) == set(idx[-test_size:])
    assert len(te) == test_size


def test_dtd_test_split_holds_the_authors_images(tmp_path):
    """Source order = ImageFolder's (classes sorted, then files): same test images after the shuffle."""
    classes = ["banded", "polka-dotted", "porous", "zigzagged"]
    files, k = {}, 0
    for c in classes:
        for j in (3, 1, 10, 2, 7, 5, 9, 4, 8, 6):
            files[f"dtd/images/{c}/{c}_{j:04d}.png"] = encode(photo(30 + j, 32, k), "PNG")
            k += 1
    files["dtd/labels/train1.txt"] = b"banded/banded_0001.jpg\n"
    write_tar(tmp_path / "dtd.tar.gz", files)
    aug = {"name": "random_resized_crop", "resize": 20, "scale": [0.5, 1.0]}
    s = resolve_datasets({"textures": {"path": "dtd.tar.gz", "augment": aug}})["textures"]
    prepare("textures", s, 8, tmp_path / "t", tmp_path, progress=False)
    import tarfile

    with tarfile.open(tmp_path / "dtd.tar.gz") as tf:
        tf.extractall(tmp_path / "x", filter="data")
    folder = ImageFolder(str(tmp_path / "x/dtd/images"), transform=tvt.Resize(20))
    idx = list(range(len(folder)))
    np.random.seed(0)
    np.random.shuffle(idx)
    test_idx = sorted(idx[-int(len(idx) * 0.1):])
    full = np.load(tmp_path / "t/test_full.npy")
    index = np.load(tmp_path / "t/test_full_index.npy")
    ours = [full[o:o + h * w * 3].reshape(h, w, 3) for o, h, w in index]
    assert len(ours) == len(test_idx) == 4
    for a, i in zip(ours, test_idx):
        np.testing.assert_array_equal(a, np.asarray(folder[i][0]))
