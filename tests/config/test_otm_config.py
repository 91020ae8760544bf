"""OTM's config checks (notpipe.config.otm): each bad input gets one error naming its key, before any job."""

import copy

import pytest

from notpipe.config import ConfigError, validate_config

RUN = {"source": "shapes_noise", "target": "shapes_clean", "image_size": 32, "cost": {"name": "strong"},
       "model": {"t_depth": 2}}
CFG = {"datasets": {"shapes_clean": {"format": "derived", "base": "shapes_squares", "half": 1},
                    "shapes_noise": {"format": "derived", "base": "shapes_squares", "half": 0,
                                     "degrade": {"name": "noise", "sigma": 0.2}},
                    "shapes_mask": {"format": "derived", "base": "shapes_squares", "half": 0,
                                    "degrade": {"name": "mask", "size": 8}}},
       "images": {"runs": {"restore": RUN,
                           "gen": {**RUN, "source": "noise", "target": "shapes_squares",
                                   "noise": {"shape": [3, 4, 4], "upsample": 8}}}}}


def errors(mutate) -> str:
    cfg = copy.deepcopy(CFG)
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    return str(e.value)


def test_the_otm_config_is_valid():
    cfg = validate_config(CFG)
    assert cfg["images"]["runs"]["gen"]["noise"]["std"] == 1.0
    assert "box" not in cfg["datasets"]["shapes_noise"]["degrade"]  # no mask parameter on other degradations


def test_unknown_degradation_is_named():
    msg = errors(lambda c: c["datasets"]["shapes_noise"]["degrade"].update(name="blur"))
    assert "datasets.shapes_noise.degrade.name: 'blur' is not allowed; allowed values: noise, gray, mask" in msg


def test_mask_larger_than_the_image_is_named():
    msg = errors(lambda c: c["images"]["runs"]["restore"].update(source="shapes_mask", image_size=8,
                                                                 model={"t_depth": 1}))
    assert "datasets.shapes_mask.degrade.size: a 8-px mask covers the whole 8-px image of images.runs.restore" in msg


def test_noise_source_whose_upsampled_size_is_not_image_size_is_named():
    msg = errors(lambda c: c["images"]["runs"]["gen"]["noise"].update(upsample=4))
    assert "images.runs.gen.noise: shape 4x4 upsampled by 4 gives 16x16, not image_size 32x32" in msg
    assert "images.runs.gen.noise.shape: 1 channels" in errors(
        lambda c: c["images"]["runs"]["gen"]["noise"].update(shape=[1, 4, 4]))
    assert "images.runs.gen.noise: source: noise needs the noise block" in errors(
        lambda c: c["images"]["runs"]["gen"].pop("noise"))
    assert "images.runs.restore.noise: only for source: noise" in errors(
        lambda c: c["images"]["runs"]["restore"].update(noise={"shape": [3, 4, 4], "upsample": 8}))


def test_k_f_with_the_not_cost_is_named():
    msg = errors(lambda c: c["images"]["runs"]["restore"].update(k_f=5))
    assert "images.runs.restore.k_f: 5 critic steps" in msg and "k_f must be 1" in msg


def test_degradation_parameters_are_checked():
    assert "datasets.shapes_noise.degrade.sigma: required for the noise degradation" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].pop("sigma"))
    assert "datasets.shapes_noise.degrade.size: not a parameter of the noise degradation" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].update(size=3))
    assert "datasets.shapes_clean.half: required" in errors(lambda c: c["datasets"]["shapes_clean"].pop("half"))
    assert "datasets.shapes_clean.base: 'nope'" in errors(lambda c: c["datasets"]["shapes_clean"].update(base="nope"))


def test_box_is_a_mask_parameter_only():
    assert "datasets.shapes_noise.degrade.box: not a parameter of the noise degradation" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].update(box="center"))
