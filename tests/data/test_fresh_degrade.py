"""notpipe.data.fresh_degrade: degradations drawn anew per batch in the sampler (OTM's scripts),
resumable from the trainer's generator, and the fixed degraded test split; their wiring in
notpipe.train.run."""

import json

import numpy as np
import pytest
import torch

from notpipe.config import validate_config
from notpipe.data.datasets import resolve_datasets
from notpipe.data.derive import degrade, derive
from notpipe.data.fresh_degrade import DegradedSplit, DegradingSampler, apply
from notpipe.data.loader import ImageSampler, to_float
from notpipe.data.prepare import prepare
from notpipe.evaluate.paired import unit

NOISE = {"name": "noise", "sigma": 0.15, "fresh": True}
GRAY = {"name": "gray", "fresh": True}
RIGHT = {"name": "mask", "box": "right_half", "fill": "grey", "fresh": True}


def _images(n=12, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_noise_is_two_sigma_on_the_networks_scale_and_unclipped():
    x = torch.full((64, 3, 8, 8), 0.9)
    e = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = apply(x, NOISE, e)
    assert torch.equal(y, x + 0.3 * e)  # OTM: y + 0.3 * randn in [-1, 1]
    assert y.max() > 1.0  # not clipped


def test_gray_is_the_bt601_luminance_in_every_channel_and_the_right_half_is_mid_grey():
    x = to_float(torch.from_numpy(_images()))
    g = apply(x, GRAY)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 0], g[:, 2])
    assert torch.allclose(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    m = apply(x, RIGHT)
    assert torch.all(m[..., 4:] == 0.0) and torch.equal(m[..., :4], x[..., :4])  # OTM: y[:, :, :, size // 2:] = 0
    black = apply(x, {"name": "mask", "box": "center", "size": 4})
    assert torch.all(black[:, :, 2:6, 2:6] == -1.0) and torch.equal(black[:, :, :2], x[:, :, :2])


def test_the_prepared_once_right_half_is_grey_uint8():
    out = degrade(_images(), {"name": "mask", "box": "right_half", "fill": "grey"}, seed=0)
    assert np.all(out[:, :, 4:] == 128) and np.array_equal(out[:, :, :4], _images()[:, :, :4])


def test_sampler_degrades_each_batch_anew_from_the_trainers_generator():
    arr = _images(n=3)
    s = DegradingSampler(ImageSampler(arr), NOISE)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    a, b = s(32, g), s(32, g)
    assert not torch.equal(a, b)
    # the same image drawn twice in a batch gets two different noises (3 images, 32 draws)
    idx = torch.randint(3, (32,), generator=torch.Generator().manual_seed(5)).numpy()
    i, j = np.flatnonzero(idx == idx[0])[:2]
    assert not torch.equal(a[i], a[j])
    g.set_state(state)  # a resumed run (generator restored from its checkpoint) draws the same
    assert torch.equal(s(32, g), a) and torch.equal(s(32, g), b)
    # a data-parallel rank's rows are those rows of the whole draw
    g.set_state(state)
    assert torch.equal(s(32, g, rows=np.arange(8, 16)), a[8:16])


def test_degraded_test_split_is_fixed_per_image_and_passes_through_to_float():
    split = DegradedSplit(_images(), NOISE)
    whole = split[:]
    assert whole.dtype == np.float32 and whole.shape == (12, 3, 8, 8) and len(split) == 12
    assert np.array_equal(split[3:7], whole[3:7]) and np.array_equal(split[5], whole[5])
    assert np.array_equal(DegradedSplit(_images(), NOISE)[:], whole)  # seeded
    assert not np.array_equal(DegradedSplit(_images(), {**NOISE, "seed": 1})[:], whole)
    assert torch.equal(to_float(torch.from_numpy(whole)), torch.from_numpy(whole))
    # PSNR/MSE take the float inputs as images in [-1, 1]
    assert torch.allclose(unit(whole), ((torch.from_numpy(whole).double() + 1) / 2).clamp(0, 1))


def _base(tmp_path, size=16):
    spec = resolve_datasets({})["shapes_squares"] | {"n": 40}
    prepare("shapes_squares", spec, size, tmp_path / f"shapes_squares_{size}", tmp_path, progress=False)
    return tmp_path / f"shapes_squares_{size}"


def _derive(tmp_path, base, name, half, deg=None, size=16):
    spec = resolve_datasets({name: {"format": "derived", "base": "shapes_squares", "half": half,
                                    **({"degrade": deg} if deg else {})}})[name]
    derive(name, spec, size, tmp_path / f"{name}_{size}", base)
    return tmp_path / f"{name}_{size}"


def test_a_fresh_degradation_is_stored_clean_with_the_test_split_as_its_own_original(tmp_path):
    base = _base(tmp_path)
    clean0 = _derive(tmp_path, base, "half0", 0)
    noisy = _derive(tmp_path, base, "noisy", 0, NOISE)
    m = json.loads((noisy / "manifest.json").read_text())
    assert m["degrade"]["fresh"] is True and m["files"]["test_original"] == "test.npy"
    for split in ("train", "test"):
        assert np.array_equal(np.load(noisy / f"{split}.npy"), np.load(clean0 / f"{split}.npy"))


def test_build_wires_the_sampler_the_test_split_and_the_fingerprint(tmp_path):
    from notpipe.train import run as image_run

    base = _base(tmp_path)
    _derive(tmp_path, base, "clean", 1)
    _derive(tmp_path, base, "noisy", 0, NOISE)
    cfg = validate_config({"datasets": {"clean": {"format": "derived", "base": "shapes_squares", "half": 1},
                                        "noisy": {"format": "derived", "base": "shapes_squares", "half": 0,
                                                  "degrade": NOISE}},
                           "images": {"runs": {"r": {
                               "source": "noisy", "target": "clean", "image_size": 16, "steps": 2, "batch": 4,
                               "k_t": 1, "log_every": 1, "checkpoint_every": 0, "snapshot_every": 0, "grid_every": 0,
                               "cost": {"name": "strong", "form": "inner", "scaling": "half_mean"},
                               "order": "potential_first", "model": {"arch": "otm_restoration", "t_base": 4, "f_nf": 4}}}}})
    run = cfg["images"]["runs"]["r"]
    setup = image_run.build(run, tmp_path)
    assert isinstance(setup.trainer.sample_p, DegradingSampler) and isinstance(setup.source_test, DegradedSplit)
    setup.trainer.run(2, progress=False)
    fp = image_run.run_fingerprint(run, tmp_path)
    assert fp["keys"]["source_degrade.sigma"] == 0.15
    # another sigma on the same (clean) arrays is another run
    (tmp_path / "noisy_16" / "manifest.json").write_text(json.dumps(
        {**json.loads((tmp_path / "noisy_16" / "manifest.json").read_text()), "degrade": {**NOISE, "sigma": 0.2}}))
    assert image_run.run_fingerprint(run, tmp_path)["hash"] != fp["hash"]


@pytest.mark.parametrize("spec", [NOISE, GRAY, RIGHT])
def test_fresh_degradations_keep_shape_and_dtype(spec):
    s = DegradingSampler(ImageSampler(_images(), channels_last=True), spec)
    x = s(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
