"""FID/KID library: offline extractors, clean-fid equivalence, monotonicity, stats cache.

All with the seeded random ("smoke") Inception: no weights can be downloaded here.
"""


import cleanfid.fid as cf_fid
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from cleanfid.utils import ResizeDataset
from PIL import Image

from notpipe.evaluate import fid
from notpipe.evaluate import weights as W

N = 12  # images per set: the random Inception runs ~9 img/s on one CPU thread


def blobs(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Gradient backgrounds with three coloured discs, float NCHW in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        tilt, level = torch.rand(3, 1, 1, generator=g) * 0.6 - 0.3, torch.rand(3, 1, 1, generator=g) * 0.4 - 0.6
        img = tilt * (xx + yy) / 2 + level
        for _ in range(3):
            c, p = torch.rand(3, generator=g) * 2 - 1, torch.rand(2, generator=g) * 1.4 - 0.7
            r = 0.15 + 0.4 * torch.rand(1, generator=g)
            m = (((xx - p[0]) ** 2 + (yy - p[1]) ** 2) < r ** 2).float()
            img = img * (1 - m) + c[:, None, None] * m
        out.append(img)
    return torch.stack(out).clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_pngs(folder, imgs: np.ndarray):
    folder.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return folder


def chunks(a, k):
    return [a[i:i + k] for i in range(0, len(a), k)]


class Stub:
    """Cheap duck-typed extractor (cache mechanics only)."""

    tag, smoke, calls = "stub", False, 0

    def features(self, batch):
        self.calls += 1
        return np.repeat(np.asarray(batch, np.float64).reshape(len(batch), -1)[:, :64], 32, axis=1)


pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def ext():
    return fid.build_extractor("random", seed=0)


@pytest.fixture(scope="module")
def feats(ext):
    x = blobs(N)
    out = {"base": ext.features(x)}
    for s in (0.2, 0.5, 0.9):
        out["bright", s] = ext.features(x + s)  # not clamped, like map outputs
    for s in (1.0, 2.5):
        out["blur", s] = ext.features(TF.gaussian_blur(x, kernel_size=2 * int(3 * s) + 1, sigma=s))
    return out


def test_random_extractor_is_deterministic_and_smoke(ext):
    state = torch.random.get_rng_state()
    a, b = fid.build_extractor("random", seed=0), fid.build_extractor("random", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # building leaves the global RNG alone
    sa, sb, s0 = a.backbone.state_dict(), b.backbone.state_dict(), ext.backbone.state_dict()
    assert all(torch.equal(sa[k], s0[k]) for k in s0)
    assert not all(torch.equal(sb[k], s0[k]) for k in s0 if sb[k].is_floating_point())
    x = blobs(2, seed=5)
    np.testing.assert_allclose(a.features(x), ext.features(x), rtol=1e-5, atol=1e-6)
    assert ext.smoke and ext.tag == "random_seed0_smoke" and ext.mode == "legacy_pytorch"


def test_tensor_path_matches_cleanfid_in_memory_path(ext):
    """[-1, 1] tensors == cleanfid.fid.get_model_features fed the same images in [0, 255]."""
    x = blobs(4, seed=3) * 1.1  # a little out of range: clean-fid clips after the resize
    theirs = cf_fid.get_model_features(lambda z: (x + 1) * 127.5, ext, mode="legacy_pytorch", z_dim=1,
                                       num_gen=4, batch_size=4, device=torch.device("cpu"), verbose=False)
    np.testing.assert_allclose(ext.features(x), theirs, rtol=1e-5, atol=1e-6)
    batched = fid.build_extractor("random", resize="batched")
    torch.testing.assert_close(batched.preprocess(x), ext.preprocess(x), rtol=0, atol=1e-3)


def test_uint8_preprocessing_matches_cleanfid_folder_dataset(ext, tmp_path):
    u = to_uint8(blobs(3, seed=4))
    files = [str(p) for p in sorted(write_pngs(tmp_path / "png", u).glob("*.png"))]
    ds = ResizeDataset(files, mode="legacy_pytorch")
    torch.testing.assert_close(ext.preprocess(u), torch.stack([ds[i] for i in range(3)]), rtol=0, atol=0)
    grey = ext.preprocess(u[..., 0])  # NHW grey -> replicated channels
    assert grey.shape == (3, 3, 299, 299) and torch.equal(grey[:, 0], grey[:, 2])


def test_streaming_fid_matches_cleanfid_compute_fid(ext, tmp_path, monkeypatch):
    a, b = to_uint8(blobs(N, seed=1)), to_uint8(blobs(N, seed=2))
    seen = []

    def spy(mu1, s1, mu2, s2, eps=1e-6):  # clean-fid's own stats, distance via the exact projection
        seen.append((mu1, s1, mu2, s2))
        return fid.fid_from_stats(mu1, s1, mu2, s2)
    monkeypatch.setattr(cf_fid, "frechet_distance", spy)
    theirs = fid.fid_folders_like_cleanfid(write_pngs(tmp_path / "a", a), write_pngs(tmp_path / "b", b),
                                           extractor=ext, batch_size=8)
    mu1, s1, n1 = fid.feature_stats(chunks(a, 5), ext, progress=False)
    mu2, s2, n2 = fid.feature_stats(chunks(b, 5), ext, progress=False)
    ours = fid.fid_from_stats(mu1, s1, mu2, s2)
    assert (n1, n2) == (N, N) and len(seen) == 1
    assert ours > 0 and abs(ours - theirs) / theirs < 1e-3
    np.testing.assert_allclose(mu1, seen[0][0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s2, seen[0][3], rtol=1e-3, atol=1e-6 * np.abs(s2).max())


def test_projection_is_exact_against_unprojected_cleanfid():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(20, 256)) @ rng.normal(size=(256, 256)) * 0.1
    f2 = rng.normal(size=(30, 256)) + 0.3
    full = fid.fid_from_features(f1, f2, project=False)
    stats = fid.fid_from_stats(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert abs(fid.fid_from_features(f1, f2) - full) < 1e-6 * full and abs(stats - full) < 1e-6 * full
    g1, g2 = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) * 1.5  # full rank: untouched
    assert fid.fid_from_features(g1, g2) == pytest.approx(fid.fid_from_features(g1, g2, project=False), rel=1e-9)


def test_fid_zero_on_itself_and_monotone_in_brightness_and_blur(feats):
    base = feats["base"]
    bright = [fid.fid_from_features(base, feats["bright", s]) for s in (0.2, 0.5, 0.9)]
    blur = [fid.fid_from_features(base, feats["blur", s]) for s in (1.0, 2.5)]
    self_fid = fid.fid_from_features(base, base)
    assert abs(self_fid) < 1e-3 * min(bright[0], blur[0])
    assert 0 < bright[0] < bright[1] < bright[2], bright
    assert 0 < blur[0] < blur[1], blur


def test_kid_grows_with_shift_and_is_reproducible(feats):
    base = feats["base"]
    kids = [fid.kid_from_features(base, feats["bright", s]) for s in (0.2, 0.5, 0.9)]
    assert kids[0] < kids[1] < kids[2] and kids[2] > 0, kids
    state = np.random.get_state()
    k1 = fid.kid_from_features(base[:10], feats["bright", 0.5])  # unequal sizes: random subsets
    assert k1 == fid.kid_from_features(base[:10], feats["bright", 0.5])
    assert np.array_equal(state[1], np.random.get_state()[1])  # global RNG restored


def test_reference_stats_cache_and_compute_fid_kid(ext, tmp_path):
    npy = tmp_path / "test.npy"
    np.save(npy, to_uint8(blobs(6, seed=7)))
    key = fid.stats_key("blobs", 64, "test", ext)
    assert key == "blobs_64_test_random_seed0_smoke"
    calls = ext.calls
    ref = fid.reference_stats(npy, tmp_path / "cache", key, ext, batch_size=4)
    assert ext.calls == calls + 2 and ref["n"] == 6 and ref["smoke"]
    assert ref["path"] == tmp_path / "cache" / f"{key}.npz" and ref["features"].shape == (6, 2048)
    mtime = ref["path"].stat().st_mtime_ns
    again = fid.reference_stats(npy, tmp_path / "cache", "blobs_64_test", ext)  # tag appended
    assert ext.calls == calls + 2 and ref["path"].stat().st_mtime_ns == mtime  # loaded, not recomputed
    np.testing.assert_array_equal(again["sigma"], ref["sigma"])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"{key}.npz"]
    other = fid.reference_stats(npy, tmp_path / "cache", "blobs_64_test", Stub())  # another mode
    assert other["path"].name == "blobs_64_test_stub.npz"
    res = fid.compute_fid_kid(chunks(blobs(6, seed=8), 3), ref, ext)
    assert res["smoke"] and res["n"] == 6 and res["fid"] > 0 and res["kid"] is not None and res["seconds"] > 0
    with pytest.raises(ValueError, match="reference stats"):
        fid.compute_fid_kid([blobs(2)], other, ext)


def test_reference_stats_written_atomically(tmp_path, monkeypatch):
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((4, 8, 8, 3), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None])
    real_savez = np.savez

    def broken(fh, **d):
        fh.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError):
        fid.reference_stats(npy, tmp_path / "c", "k", Stub())
    assert list((tmp_path / "c").iterdir()) == []  # no half-written file, no temp left
    monkeypatch.setattr(np, "savez", real_savez)
    moves = []
    import os

    real_replace = os.replace  # the one atomic writer (notpipe.io) renames a temp file beside the target
    monkeypatch.setattr(os, "replace", lambda a, b: (moves.append((a, b)), real_replace(a, b)))
    fid.reference_stats(npy, tmp_path / "c", "k", Stub())
    (src, dst), = moves
    assert str(dst).endswith("k_stub.npz") and fid.Path(src).parent == fid.Path(dst).parent


@pytest.mark.parametrize("kind,name", [("legacy_pytorch", fid.LEGACY_FILE), ("clean", fid.CLEAN_FILE)])
def test_missing_weights_message(kind, name, tmp_path):
    for weights, where in ((tmp_path / "nope" / name, str(tmp_path / "nope" / name)), (tmp_path, str(tmp_path / name))):
        with pytest.raises(fid.MissingWeightsError) as e:
            fid.build_extractor(kind, weights)
        msg = str(e.value)
        assert name in msg and where in msg and "https://" in msg and "\n" not in msg
    with pytest.raises(fid.MissingWeightsError, match=name):
        fid.build_extractor(kind, None)


def test_legacy_pytorch_loads_local_file_without_hub(ext, tmp_path, monkeypatch):
    torch.save(ext.backbone.state_dict(), tmp_path / fid.LEGACY_FILE)  # stand-in "pytorch-fid" weights
    with pytest.raises(fid.WeightsError, match="is not the published pt_inception.*allow_unpinned_code_weights"):
        fid.build_extractor("legacy_pytorch", tmp_path)  # not the pinned file: refused
    sha = W.check(tmp_path / fid.LEGACY_FILE, fid.LEGACY_FILE, allow_unpinned=True)
    monkeypatch.setitem(W.PINNED, fid.LEGACY_FILE, sha[:8])  # as if it were the published file
    legacy = fid.build_extractor("legacy_pytorch", tmp_path)
    assert not legacy.smoke and legacy.tag == "legacy_pytorch" and legacy.weights == tmp_path / fid.LEGACY_FILE
    x = blobs(2, seed=9)
    np.testing.assert_allclose(legacy.features(x), ext.features(x), rtol=1e-5, atol=1e-6)


class _Layers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2048, 3, stride=8)

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 1)


class _Base(torch.nn.Module):
    """Stand-in for clean-fid's TorchScript Inception (same ``layers`` attribute)."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x, return_features: bool = False):
        return self.layers(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_clean_mode_loads_torchscript_from_our_path(tmp_path):
    torch.jit.script(_Base()).save(str(tmp_path / fid.CLEAN_FILE))  # stand-in torchscript Inception
    clean = fid.build_extractor("clean", tmp_path / fid.CLEAN_FILE, allow_unpinned=True)
    u = to_uint8(blobs(2, seed=6))
    files = [str(p) for p in sorted(write_pngs(tmp_path / "png", u).glob("*.png"))]
    ds = ResizeDataset(files, mode="clean")  # PIL bicubic on float channels
    torch.testing.assert_close(clean.preprocess(u), torch.stack([ds[0], ds[1]]), rtol=0, atol=0)
    assert clean.features(u).shape == (2, 2048) and clean.mode == "clean" and not clean.smoke


class _WritesOnLoad(torch.nn.Module):
    """TorchScript whose ``__setstate__`` -- run by ``torch.jit.load`` -- writes a file."""

    def __init__(self, target: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.target = target

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return self.w, self.target, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.w, self.target, self.training = state
        torch.save(torch.ones(1), self.target)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated", "ignore:`torch.jit.load` is deprecated")
def test_torchscript_that_runs_code_is_not_loaded_without_opt_in(tmp_path):
    """clean's TorchScript has no published sha256: nothing runs unless the user opts in."""
    marker = tmp_path / "written_by_the_weight_file"
    torch.jit.script(_WritesOnLoad(str(marker))).save(str(tmp_path / fid.CLEAN_FILE))
    assert not marker.exists()
    with pytest.raises(fid.WeightsError) as e:
        fid.build_extractor("clean", tmp_path)
    msg = str(e.value)
    assert "runs code" in msg and "eval.allow_unpinned_code_weights" in msg and str(tmp_path) in msg
    assert "\n" not in msg and not marker.exists()
    torch.jit.load(str(tmp_path / fid.CLEAN_FILE))  # what the check prevents: loading runs the file's code
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_config_key_opts_in_to_the_unpinned_torchscript(tmp_path):
    from notpipe.config import validate_config
    from notpipe.evaluate.snapshot import extractor_from_config

    torch.jit.script(_Base()).save(str(tmp_path / fid.CLEAN_FILE))
    ev = {"feature_extractor": "clean", "inception_weights": str(tmp_path)}
    default = validate_config({"eval": ev})["eval"]
    assert default["allow_unpinned_code_weights"] is False
    with pytest.raises(fid.WeightsError, match="eval.allow_unpinned_code_weights"):
        extractor_from_config(default, "cpu")
    opted = validate_config({"eval": {**ev, "allow_unpinned_code_weights": True}})["eval"]
    assert extractor_from_config(opted, "cpu").mode == "clean"
