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


OTM_RUN = {"cost": {"name": "strong", "form": "inner", "scaling": "half_mean"}, "order": "potential_first",
           "model": {"arch": "otm_restoration", "t_base": 8, "f_nf": 8}}


def lines(msg: str) -> list[str]:
    """The problems of a ConfigError message, one per line."""
    return [ln.strip() for ln in msg.splitlines()[1:]]


def otm_errors(mutate) -> str:
    def both(c):
        c["images"]["runs"]["restore"].update(copy.deepcopy(OTM_RUN))
        c["images"]["runs"]["gen"].update({**copy.deepcopy(OTM_RUN), "model": {"arch": "otm_generation"},
                                           "gradient_optimality": 10})
        mutate(c)
    return errors(both)


def test_the_otm_settings_are_valid():
    cfg = copy.deepcopy(CFG)
    cfg["images"]["runs"]["restore"].update(copy.deepcopy(OTM_RUN))
    cfg["images"]["runs"]["gen"].update({**copy.deepcopy(OTM_RUN), "model": {"arch": "otm_generation"},
                                         "gradient_optimality": 10})
    cfg["datasets"]["shapes_noise"]["degrade"].update(fresh=True)
    cfg["datasets"]["shapes_mask"]["degrade"] = {"name": "mask", "box": "right_half", "fill": "grey", "fresh": True}
    runs = validate_config(cfg)["images"]["runs"]
    assert runs["gen"]["model"]["arch"] == "otm_generation" and runs["gen"]["cost"]["form"] == "inner"
    plain = validate_config(CFG)["images"]["runs"]["restore"]  # NOT's defaults
    assert (plain["order"], plain["gradient_optimality"], plain["model"]["arch"], plain["cost"]["form"]) == \
        ("map_first", 0, "unet", "distance")


def test_an_otm_network_with_a_source_of_the_wrong_shape_is_one_line():
    msg = otm_errors(lambda c: c["images"]["runs"]["restore"]["model"].update(arch="otm_generation"))
    assert ("images.runs.restore.model.arch: otm_generation maps the noise z (source: noise with a noise block); "
            "this run's source is the data set 'shapes_noise' (use otm_restoration)") in lines(msg)
    msg = otm_errors(lambda c: c["images"]["runs"]["gen"]["model"].update(arch="otm_restoration"))
    assert ("images.runs.gen.model.arch: otm_restoration maps images of the source data set; "
            "source: noise is generation (use otm_generation)") in lines(msg)
    msg = otm_errors(lambda c: c["images"]["runs"]["gen"]["noise"].update(shape=[3, 4, 2], upsample=8))
    assert "images.runs.gen.noise.shape: otm_generation takes square noise maps, got 4x2" in msg
    msg = otm_errors(lambda c: c["images"]["runs"]["restore"].update(cost={"name": "weak", "gamma": 0.5, "z_size": 4}))
    assert "images.runs.restore.model.arch: OTM's maps are deterministic (no z input); the weak cost" in msg


def test_gradient_optimality_with_a_cost_it_does_not_apply_to_is_one_line():
    msg = otm_errors(lambda c: c["images"]["runs"]["gen"]["cost"].update(form="distance"))
    assert ("images.runs.gen.gradient_optimality: OTM's term applies to the inner-product form of the strong cost "
            "(cost: {name: strong, form: inner}); this run's cost is strong in form distance: set it to 0 or change "
            "the cost") in lines(msg)
    msg = errors(lambda c: c["images"]["runs"]["restore"].update(gradient_optimality=1))
    assert "images.runs.restore.gradient_optimality: OTM's term applies to the inner-product form" in msg
    msg = otm_errors(lambda c: c["images"]["runs"]["restore"].update(cost={"name": "kernel", "gamma": 0.3, "form": "inner"}))
    assert "images.runs.restore.cost.form: inner is a form of the strong cost, not of the kernel cost" in msg
    assert "images.runs.gen.gradient_optimality: -1 is less than the minimum of 0" in otm_errors(
        lambda c: c["images"]["runs"]["gen"].update(gradient_optimality=-1))


def test_a_degradation_parameter_out_of_range_is_one_line():
    assert "datasets.shapes_noise.degrade.sigma: 1.5 is above the maximum 1; lower it" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].update(sigma=1.5))
    assert "datasets.shapes_noise.degrade.sigma: 0 is less than or equal to the minimum of 0" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].update(sigma=0))
    assert ("datasets.shapes_mask.degrade.size: box right_half masks the right half of the image; drop size "
            "(or use box: center / random for a square)") in errors(
        lambda c: c["datasets"]["shapes_mask"]["degrade"].update(box="right_half"))
    assert "datasets.shapes_mask.degrade.fill: 'white' is not allowed; allowed values: black, grey" in errors(
        lambda c: c["datasets"]["shapes_mask"]["degrade"].update(fill="white"))
    assert "datasets.shapes_noise.degrade.fill: not a parameter of the noise degradation" in errors(
        lambda c: c["datasets"]["shapes_noise"]["degrade"].update(fill="grey"))


def test_a_target_degraded_per_batch_is_one_line():
    def mutate(c):
        c["datasets"]["shapes_noise"]["degrade"].update(fresh=True)
        c["images"]["runs"]["restore"].update(source="shapes_clean", target="shapes_noise")
    assert ("images.runs.restore.target: the data set 'shapes_noise' is degraded per batch (degrade.fresh), which "
            "only a source is; use its clean half as the target") in errors(mutate)


def test_a_drift_of_the_otm_paper_runs_from_the_authors_is_caught():
    """docs/paper-settings.md's OTM families check run keys and the source data set's degradation."""
    from notpipe.config import load_config
    from notpipe.config import paper_settings as ps

    paper = load_config(ps.CONFIG)
    assert not [r for r in ps.compare(paper) if r.family.startswith("otm") and not r.same and not r.reason]
    cfg = copy.deepcopy(paper)
    cfg["datasets"]["celeba_noise"]["degrade"]["sigma"] = 0.3  # 0.3 on [0, 1]: twice theirs
    cfg["images"]["runs"]["celeba_inpaint_otm"]["k_t"] = 5
    cfg["images"]["runs"]["celeba_generation_otm"]["order"] = "map_first"
    bad = {(r.run, r.key) for r in ps.compare(cfg) if not r.same and not r.reason}
    assert bad == {("celeba_denoise_otm", "source_data.degrade.sigma"), ("celeba_inpaint_otm", "k_t"),
                   ("celeba_generation_otm", "order")}
