"""Evaluation stage: FID/KID, LPIPS, transport cost and attributes of one trained map.

``evaluate_snapshot`` rebuilds T from a snapshot, pushes the *source test split*
through it batch by batch and streams the outputs into the FID extractor (no
image files unless ``save_images``), against cached statistics of the *target
test split* (the papers' protocol, docs/evaluation.md#fid-protocol-of-the-authors). Stochastic maps are pushed
``fid_z_draws`` times with fresh z and reported as mean ± std. A source data set with an
augmentation (Kernel NOT's textures) is measured the authors' way instead: each FID pools
``fid_passes`` passes of the test split, every pass with a fresh crop and flips of every image
and fresh z, and the measurement is repeated ``fid_repeats`` times (mean ± population std;
docs/evaluation.md#kernel-not-fid-on-textures). Every row carries
the extractor tag and a ``smoke`` flag: random-weight extractors give smoke
numbers that are never comparable with published ones.

Rows (long format, one per metric and map): ``run, step, metric, map, value,
std, n_images, extractor, smoke, seconds``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from notpipe import seeds
from notpipe.data import shapes
from notpipe.data.augment import AugmentedSplit
from notpipe.data.datasets import NOISE_SOURCE, dataset_dir
from notpipe.data.loader import load_split, to_float, to_uint8
from notpipe.evaluate import fid as fidlib
from notpipe.evaluate import paired
from notpipe.evaluate.lpips import build_lpips, lpips_content, lpips_diversity
from notpipe.evaluate.weights import LEGACY_FILE, inception_source
from notpipe.train.run import load_map

log = logging.getLogger(__name__)

#: seed offset of the evaluation noise (never a training stream)
EVAL_SEED_OFFSET = seeds.IMAGE_EVAL
#: LPIPS' AlexNet needs about 32 px; smaller images are upsampled (bilinear) to this size
LPIPS_MIN_SIZE = 64


def extractor_from_config(ev: dict, device) -> fidlib.FeatureExtractor:
    kind = ev["feature_extractor"]
    weights = ev["inception_weights"] if kind != "random" else None
    legacy = inception_source(ev, weights)[1] if kind == "legacy_pytorch" and weights is not None else LEGACY_FILE
    return fidlib.build_extractor(kind, weights, device, seed=ev["seed"],
                                  allow_unpinned=ev.get("allow_unpinned_code_weights", False), legacy_file=legacy)


def lpips_from_config(ev: dict, device):
    return build_lpips(ev["lpips_net"], ev["lpips_weights"], device,
                       random_smoke=ev["lpips_backbone"] == "random", seed=ev["seed"],
                       allow_unpinned=ev.get("allow_unpinned_code_weights", False))


def test_split_batches(array: np.ndarray, n: int | None, batch: int):
    """uint8 batches of the first ``n`` test images (all when None)."""
    n = len(array) if n is None else min(n, len(array))
    for i in range(0, n, batch):
        yield np.array(array[i:min(i + batch, n)])  # a writable copy of the memmap slice


def augmented_seed(seed: int, repeat: int, pass_: int, batch: int) -> int:
    """Seed of the generator of one batch of an augmented FID pass (its crops, flips and z)."""
    return int(np.random.SeedSequence([int(seed), repeat, pass_, batch]).generate_state(1)[0])


def fid_plan(source_test, ev: dict, stochastic: bool) -> tuple[int, int]:
    """``(repeats, passes)`` of the FID of a map: an augmented source test split gets
    ``fid_repeats`` x ``fid_passes``; else a stochastic map ``fid_z_draws`` x 1, a deterministic one 1 x 1."""
    if isinstance(source_test, AugmentedSplit):
        return int(ev.get("fid_repeats", 1)), int(ev.get("fid_passes", 1))
    return (ev["fid_z_draws"] if stochastic else 1), 1


def _for_lpips(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] >= LPIPS_MIN_SIZE:
        return x
    return F.interpolate(x.flatten(0, -4), size=(LPIPS_MIN_SIZE, LPIPS_MIN_SIZE), mode="bilinear",
                         align_corners=False).view(*x.shape[:-2], LPIPS_MIN_SIZE, LPIPS_MIN_SIZE)


def evaluate_snapshot(path: str | Path, data_dir: str | Path, ref: dict, ev: dict, device="cpu",
                      extractor: fidlib.FeatureExtractor | None = None, lp=None,
                      save_images: str | Path | None = None, expected: dict | None = None) -> pd.DataFrame:
    """Every metric of one snapshot (see module docstring); ``ref`` from ``fidlib.reference_stats``.

    ``expected``: the run block the snapshot must have been trained with (else
    :class:`~notpipe.fingerprint.FingerprintMismatch`, before any metric is computed).
    """
    device = torch.device(device)
    setup, state = load_map(path, data_dir, device, expected=expected)
    tr, run = setup.trainer, setup.run
    step = int(state["step"] if "step" in state else state["trainer"]["step"])  # snapshot or checkpoint
    name = state["name"]
    extractor = extractor or extractor_from_config(ev, device)
    lp = lp if lp is not None else lpips_from_config(ev, device)
    stochastic = tr.noise is not None
    draws, passes = fid_plan(setup.source_test, ev, stochastic)
    augmented = isinstance(setup.source_test, AugmentedSplit)
    seed = run["seed"] + EVAL_SEED_OFFSET
    rows: list[dict] = []

    fid_tag = extractor.tag
    lpips_tag = f"lpips_{ev['lpips_net']}" + ("_random_smoke" if lp.smoke else "")

    def add(metric, value, std=None, n=None, seconds=None, mapname="T", tag=None, smoke=False):
        rows.append({"run": name, "step": step, "metric": metric, "map": mapname, "value": value,
                     "std": std, "n_images": n, "extractor": tag, "smoke": smoke, "seconds": seconds,
                     "passes": passes})  # passes of the test split per FID: part of the protocol

    fids, kids, costs, scores = [], [], [], []
    n_images, spent = 0, 0.0
    clean = paired.originals(run, data_dir)  # restoration: the degraded test images' originals
    generation = run["source"] == NOISE_SOURCE
    for d in range(draws):
        t0 = time.perf_counter()
        sq, count = 0.0, 0
        score = paired.PairedScore()

        def batches():
            """``(uint8 inputs, generator of their z)`` of every pass of this repeat."""
            for p in range(passes):
                start = 0
                for b, xb in enumerate(test_split_batches(setup.source_test, ev["n_test"], ev["batch"])):
                    if not augmented:
                        yield p, xb, torch.Generator().manual_seed(seed + 1000 * d + b)
                        continue
                    g = torch.Generator().manual_seed(augmented_seed(seed, d, p, b))
                    yield p, setup.source_test.sample(np.arange(start, start + len(xb)), g), g
                    start += len(xb)

        def outputs():
            nonlocal sq, count
            for p, xb, g in batches():
                x = to_float(torch.from_numpy(xb)).to(device)
                y = tr.infer(x, 1, g)[:, 0]
                sq += float((y - x).pow(2).mean(dim=(1, 2, 3)).sum())
                if clean is not None:
                    score.add(y, clean[count:count + len(x)])
                count += len(x)
                if save_images and d == 0 and p == 0:
                    _save_pngs(to_uint8(y), Path(save_images), count - len(x))
                yield y
        res = fidlib.compute_fid_kid(outputs(), ref, extractor, kid=ev["kid"])
        fids.append(res["fid"])
        kids.append(res["kid"])
        costs.append(sq / count)
        scores.append(score)
        n_images = res["n"]
        spent += time.perf_counter() - t0
        log.info("%s step %d draw %d (%d pass(es), %d images): FID %.3f KID %s cost %.4f (%.1f s)", name, step,
                 d, passes, res["n"], res["fid"], res["kid"], costs[-1], time.perf_counter() - t0)
    sd = (lambda v: float(np.std(v)) if draws > 1 else None)  # noqa: E731
    add("fid", float(np.mean(fids)), sd(fids), n_images, spent, tag=fid_tag, smoke=extractor.smoke)
    if ev["kid"] and kids[0] is not None:
        add("kid", float(np.mean(kids)), sd(kids), n_images, tag=fid_tag, smoke=extractor.smoke)
    add("transport_cost", float(np.mean(costs)), sd(costs), n_images)
    if clean is not None:  # paired PSNR / MSE of T(degraded) and of the degraded input itself
        res = [sc.result() for sc in scores]
        for metric in ("psnr", "mse"):
            vals = [r[metric] for r in res]
            add(metric, float(np.mean(vals)), sd(vals), res[0]["n"])
        floor, start = paired.PairedScore(), 0
        for xb in test_split_batches(setup.source_test, ev["n_test"], ev["batch"]):
            floor.add(xb, clean[start:start + len(xb)])
            start += len(xb)
        r = floor.result()
        for metric in ("psnr", "mse"):
            add(metric, r[metric], n=r["n"], mapname="input")
        # the degraded input's own FID against the clean half (OTM's "Input" row)
        inputs = (to_float(torch.from_numpy(xb)).to(device)
                  for xb in test_split_batches(setup.source_test, ev["n_test"], ev["batch"]))
        res = fidlib.compute_fid_kid(inputs, ref, extractor, kid=False)
        add("fid", res["fid"], n=res["n"], tag=fid_tag, smoke=extractor.smoke, mapname="input")

    # LPIPS on the first lpips_inputs test inputs
    t0 = time.perf_counter()
    xs = to_float(torch.from_numpy(np.array(setup.source_test[: ev["lpips_inputs"]]))).to(device)
    first = tr.infer(xs, 1, torch.Generator().manual_seed(seed))[:, 0]
    if not generation:  # noise inputs have no content to keep: no LPIPS content term
        add("lpips_content", lpips_content(_for_lpips(xs), _for_lpips(first), lp), n=len(xs),
            seconds=time.perf_counter() - t0, tag=lpips_tag, smoke=lp.smoke)
    if stochastic:
        t0 = time.perf_counter()
        sample = lambda xb, m: _for_lpips(tr.infer(xb, m, torch.Generator().manual_seed(seed + 7)))  # noqa: E731
        add("lpips_diversity", lpips_diversity(sample, xs, ev["lpips_samples"], lp), n=len(xs),
            seconds=time.perf_counter() - t0, tag=lpips_tag, smoke=lp.smoke)

    if not generation and _is_shapes(run, data_dir):
        inputs = np.asarray(setup.source_test[: ev["lpips_inputs"]])
        others = np.asarray(setup.target_test[: len(inputs)])
        maps = [("T", first.cpu().numpy()), ("identity", inputs), ("random_target", others)]
        oracle = _oracle(run, data_dir, len(inputs))
        if oracle is not None:  # the optimal map: the target shape drawn with the input's attributes
            maps.append(("oracle", oracle))
        for mapname, out in maps:
            for k, v in shapes.attribute_errors(inputs, out).items():
                add(f"attr_{k}", v, n=len(inputs), mapname=mapname)
    return pd.DataFrame(rows)


def _oracle(run: dict, data_dir, n: int) -> np.ndarray | None:
    size = run["image_size"]
    src = dataset_dir(data_dir, run["source"], size)
    tgt = json.loads((dataset_dir(data_dir, run["target"], size) / "manifest.json").read_text())
    if not (src / "attributes.csv").exists() or not tgt.get("shape"):
        return None
    attrs = pd.read_csv(src / "attributes.csv")
    attrs = attrs[attrs.split == "test"].sort_values("index").head(n)
    return shapes.render(tgt["shape"], attrs, size)


def _is_shapes(run: dict, data_dir) -> bool:
    for side in ("source", "target"):
        m = dataset_dir(data_dir, run[side], run["image_size"]) / "manifest.json"
        if json.loads(m.read_text())["format"] != "shapes":
            return False
    return True


def _save_pngs(batch: np.ndarray, out: Path, start: int) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(batch):
        Image.fromarray(img).save(out / f"{start + i:06d}.png")


def reference(target: str, size: int, data_dir, cache_dir, ev: dict, device="cpu",
              extractor: fidlib.FeatureExtractor | None = None) -> dict:
    """Cached statistics of the target test split (its first ``eval.n_ref`` images; computed once per
    data set, size and mode)."""
    extractor = extractor or extractor_from_config(ev, device)
    npy = dataset_dir(data_dir, target, size) / "test.npy"
    load_split(npy.parent, "test")  # clear error when the data stage has not run
    key = fidlib.stats_key(target, size, "test", extractor)
    return fidlib.reference_stats(npy, cache_dir, key, extractor, batch_size=ev["batch"], keep_features=ev["kid"],
                                  n=ev.get("n_ref"))
