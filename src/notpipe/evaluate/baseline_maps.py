"""What a map's FID is read against: the identity map and the floor of the target itself.

* ``identity``: FID / KID of the source test inputs left as they are (the first ``n_test``, the
  images the map is evaluated on) against the target reference statistics. A map that does not
  beat it has learnt nothing about the target.
* ``target_halves``: FID / KID between two disjoint halves of the target reference images (a
  seeded permutation of its first ``n_ref`` test images): the value two samples of the target
  itself give at half the reference size, below which no map can be told from the target.

Both are computed once per run from cached features (:func:`notpipe.evaluate.fid.reference_stats`
keeps them with ``eval.kid``); features that are missing, or fewer than needed, are computed here.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from notpipe.data.datasets import NOISE_SOURCE
from notpipe.evaluate import fid as fidlib

log = logging.getLogger(__name__)

COLUMNS = ["run", "step", "metric", "map", "value", "std", "n_images", "extractor", "smoke", "seconds"]


#: fewest images of a split (or half) whose FID baseline is computed (np.cov of one image is undefined)
MIN_HALF = 2


def _features(ref: dict | None, array: np.ndarray, n: int, extractor, batch: int) -> np.ndarray:
    """The first ``n`` rows of the cached features of ``array`` (``ref``), else computed from ``array``."""
    f = None if ref is None else ref.get("features")
    if f is not None and len(f) >= n and str(ref["tag"]) == extractor.tag:
        return np.asarray(f[:n])
    batches = (np.asarray(array[i:min(i + batch, n)]) for i in range(0, n, batch))
    return fidlib.feature_stats(batches, extractor, progress=False, return_features=True)[3]


def baselines(run_name: str, run: dict, source_test: np.ndarray | None, target_test: np.ndarray, ref: dict,
              ev: dict, extractor, source_ref: dict | None = None) -> pd.DataFrame:
    """Rows (the columns of :func:`notpipe.evaluate.snapshot.evaluate_snapshot`'s, ``step`` empty)
    of the identity map (unless the source is noise) and of the target halves.

    Parameters
    ----------
    source_test, target_test : uint8 NHWC arrays of the test splits (memory maps are fine)
    ref : the target reference statistics (:func:`~notpipe.evaluate.snapshot.reference`)
    source_ref : the source's reference statistics, whose cached features are reused when they
        cover the first ``n_test`` images
    """
    rows = []

    def add(metric, mapname, value, n, seconds=None):
        rows.append({"run": run_name, "step": None, "metric": metric, "map": mapname, "value": float(value),
                     "std": None, "n_images": n, "extractor": extractor.tag, "smoke": extractor.smoke,
                     "seconds": seconds})

    tgt = _features(ref, target_test, int(ref["n"]), extractor, ev["batch"])
    kid = ev.get("kid", True)
    if run["source"] != NOISE_SOURCE and source_test is not None and len(source_test) >= MIN_HALF:
        t0 = time.perf_counter()
        n = len(source_test) if ev["n_test"] is None else min(ev["n_test"], len(source_test))
        src = _features(source_ref, source_test, n, extractor, ev["batch"])
        s64 = src.astype(np.float64)
        add("fid", "identity", fidlib.fid_from_stats(s64.mean(0), np.cov(s64, rowvar=False), ref["mu"], ref["sigma"]),
            n, time.perf_counter() - t0)
        if kid:
            add("kid", "identity", fidlib.kid_from_features(src, tgt, seed=ev["seed"]), n)
    t0 = time.perf_counter()
    perm = np.random.default_rng(ev["seed"]).permutation(len(tgt))
    a, b = tgt[np.sort(perm[: len(tgt) // 2])], tgt[np.sort(perm[len(tgt) // 2:])]
    if len(a) < MIN_HALF:  # a covariance needs several images: no floor for a tiny test split
        log.info("%s: the target test split (%d images) is too small for the target-halves floor", run_name,
                 len(tgt))
    else:
        add("fid", "target_halves", fidlib.fid_from_features(a, b), len(a), time.perf_counter() - t0)
        if kid:
            add("kid", "target_halves", fidlib.kid_from_features(a, b, seed=ev["seed"]), len(a))
    for r in rows:
        log.info("%s: %s of the %s map: %.4f (%d images)", run_name, r["metric"], r["map"], r["value"], r["n_images"])
    return pd.DataFrame(rows, columns=COLUMNS)
