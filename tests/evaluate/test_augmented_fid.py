"""FID of a map whose source data set has an augmentation: passes pooled, repeats as mean ± std."""

import pandas as pd
import pytest
from conftest import tiny_image_run

from notpipe import evaluate
from notpipe import train as images
from notpipe.config import validate_config
from notpipe.data.augment import AugmentedSplit
from notpipe.data.datasets import resolve_datasets
from notpipe.data.loader import load_split
from notpipe.data.prepare import prepare
from notpipe.evaluate.snapshot import fid_plan

N_TEST = 4


def ev(**over):
    return validate_config({"eval": {"feature_extractor": "random", "lpips_backbone": "random", "n_test": N_TEST,
                                     "batch": 2, "kid": False, "lpips_inputs": 2, "lpips_samples": 2, **over}})["eval"]


@pytest.fixture(scope="module")
def augmented_map(tmp_path_factory):
    """A deterministic (strong) map trained on shapes whose circles carry an augmentation."""
    d = tmp_path_factory.mktemp("augdata")
    aug = {"name": "random_resized_crop", "resize": 24, "scale": [0.4, 1.0], "flips": ["h", "v"]}
    specs = resolve_datasets({"shapes_circles": {"n": 40, "augment": aug}, "shapes_squares": {"n": 40}})
    for name in ("shapes_circles", "shapes_squares"):
        prepare(name, specs[name], 16, d / f"{name}_16", d / "raw", progress=False)
    out = tmp_path_factory.mktemp("augrun")
    run = tiny_image_run()  # trained through the augmented sampler
    images.train(run, "r", d, out, progress=False)
    return d, images.snapshot_path(out, 4)


def fid_row(df):
    return df[(df.metric == "fid") & (df["map"] == "T")].iloc[0]


def test_passes_pool_fresh_augmentations_and_repeats_give_mean_and_std(augmented_map, tmp_path):
    d, snap = augmented_map
    test = load_split(d / "shapes_circles_16", "test")
    assert isinstance(test, AugmentedSplit) and fid_plan(test, ev(fid_passes=50, fid_repeats=10), True) == (10, 50)
    e = ev(fid_passes=2, fid_repeats=2)
    ref = evaluate.reference("shapes_squares", 16, d, tmp_path, e)
    row = fid_row(evaluate.evaluate_snapshot(snap, d, ref, e))
    assert row.n_images == 2 * N_TEST and row.passes == 2  # two passes pooled into each FID (the protocol column)
    # a deterministic map: only fresh crops and flips make the repeats differ
    assert row["std"] > 0
    again = fid_row(evaluate.evaluate_snapshot(snap, d, ref, e))
    assert (again.value, again["std"]) == (row.value, row["std"])  # seeded: the same numbers again
    one = fid_row(evaluate.evaluate_snapshot(snap, d, ref, ev()))  # defaults: one pass, one measurement
    assert one.n_images == N_TEST and pd.isna(one["std"])


def test_the_keys_touch_only_runs_with_an_augmented_source(augmented_map, shapes_data, tmp_path):
    _, snap = augmented_map  # evaluated on the plain shapes: only T and the test splits are read
    src = load_split(shapes_data / "shapes_circles_16", "test")
    assert fid_plan(src, ev(fid_passes=50, fid_repeats=10), stochastic=True) == (ev()["fid_z_draws"], 1)
    assert fid_plan(src, ev(fid_passes=50, fid_repeats=10), stochastic=False) == (1, 1)
    ref = evaluate.reference("shapes_squares", 16, shapes_data, tmp_path, ev())
    plain = fid_row(evaluate.evaluate_snapshot(snap, shapes_data, ref, ev()))
    many = fid_row(evaluate.evaluate_snapshot(snap, shapes_data, ref, ev(fid_passes=3, fid_repeats=2)))
    assert many.n_images == plain.n_images == N_TEST and many.value == plain.value
