"""Semantic checks of OTM's inputs: noise sources (generation), derived, degraded data sets
(unpaired restoration) and OTM's networks and training settings. Called by
:func:`notpipe.config.validate_config`; every message names its key."""

from __future__ import annotations

from notpipe.data.datasets import NOISE_SOURCE

#: a degradation's required parameters
DEGRADATION_NEEDS = {"noise": ("sigma",), "gray": (), "mask": ("size",)}
#: the parameters of one degradation only (seed and fresh belong to every degradation)
DEGRADATION_KEYS = {"noise": {"sigma"}, "gray": set(), "mask": {"size", "box", "fill"}}


def check_derived(name: str, spec: dict, errors: list[str]) -> None:
    """``datasets.NAME`` of format derived: the half, and the degradation's parameters."""
    where = f"datasets.{name}"
    if spec.get("format") != "derived":
        for key in ("base", "half", "degrade"):
            if key in spec:
                errors.append(f"{where}.{key}: only for format derived (got format {spec.get('format')!r})")
        return
    if spec.get("half") not in (0, 1):
        errors.append(f"{where}.half: required for format derived (0 or 1: which disjoint half of the base)")
    deg = spec.get("degrade")
    if not deg:
        return
    right_half = deg["name"] == "mask" and deg.get("box") == "right_half"
    for key in DEGRADATION_NEEDS.get(deg["name"], ()):
        if key not in deg and not right_half:
            errors.append(f"{where}.degrade.{key}: required for the {deg['name']} degradation")
    extra = set().union(*DEGRADATION_KEYS.values()) - DEGRADATION_KEYS.get(deg["name"], set())
    for key in sorted(extra & set(deg)):
        errors.append(f"{where}.degrade.{key}: not a parameter of the {deg['name']} degradation")
    if right_half and "size" in deg:
        errors.append(f"{where}.degrade.size: box right_half masks the right half of the image; drop size "
                      "(or use box: center / random for a square)")


def check_mask_fits(where: str, dataset: str, spec: dict, size: int, errors: list[str]) -> None:
    """A mask must leave part of the image: its side below the image size it is prepared at."""
    deg = spec.get("degrade") or {}
    if deg.get("name") == "mask" and deg.get("box") != "right_half" and int(deg.get("size", 0)) >= size:
        errors.append(f"datasets.{dataset}.degrade.size: a {deg['size']}-px mask covers the whole {size}-px "
                      f"image of {where}; it must be smaller than {size}")


def check_source(where: str, run: dict, errors: list[str]) -> bool:
    """The noise source of a generation run; True when the run's source is noise (not a data set)."""
    noise = run.get("noise")
    if run["source"] != NOISE_SOURCE:
        if noise is not None:
            errors.append(f"{where}.noise: only for source: {NOISE_SOURCE} (this run's source is "
                          f"the data set {run['source']!r})")
        return False
    if noise is None:
        errors.append(f"{where}.noise: source: {NOISE_SOURCE} needs the noise block "
                      "(e.g. {shape: [3, 8, 8], upsample: 8})")
        return True
    (c, h, w), k, size = noise["shape"], noise["upsample"], run["image_size"]
    if c != 3:
        errors.append(f"{where}.noise.shape: {c} channels; T's input has 3 (RGB)")
    if h * k != size or w * k != size:
        errors.append(f"{where}.noise: shape {h}x{w} upsampled by {k} gives {h * k}x{w * k}, "
                      f"not image_size {size}x{size}")
    return True


def check_settings(where: str, run: dict, known: dict, errors: list[str]) -> None:
    """OTM's networks, cost form and gradient-optimality term against the run's source and cost."""
    arch, cost = run["model"].get("arch", "unet"), run["cost"]
    noise = run["source"] == NOISE_SOURCE
    if arch == "otm_generation" and not noise:
        errors.append(f"{where}.model.arch: otm_generation maps the noise z (source: noise with a noise block); "
                      f"this run's source is the data set {run['source']!r} (use otm_restoration)")
    if arch == "otm_generation" and noise and run.get("noise"):
        _, h, w = run["noise"]["shape"]
        if h != w:
            errors.append(f"{where}.noise.shape: otm_generation takes square noise maps, got {h}x{w}")
    if arch == "otm_restoration" and noise:
        errors.append(f"{where}.model.arch: otm_restoration maps images of the source data set; "
                      "source: noise is generation (use otm_generation)")
    if arch != "unet" and cost["name"] in ("weak", "kernel"):
        errors.append(f"{where}.model.arch: OTM's maps are deterministic (no z input); the {cost['name']} cost "
                      "needs a stochastic map (use cost: {name: strong, form: inner})")
    if cost.get("form", "distance") != "distance" and cost["name"] != "strong":
        errors.append(f"{where}.cost.form: {cost['form']} is a form of the strong cost, not of the {cost['name']} cost")
    if cost.get("scaling") == "half_mean" and cost["name"] == "kernel":
        errors.append(f"{where}.cost.scaling: half_mean is a scaling of the quadratic costs; "
                      "the kernel cost takes raw, sum or mean")
    if run.get("gradient_optimality", 0) and not (cost["name"] == "strong" and cost.get("form") == "inner"):
        errors.append(f"{where}.gradient_optimality: OTM's term applies to the inner-product form of the strong "
                      f"cost (cost: {{name: strong, form: inner}}); this run's cost is {cost['name']}"
                      f" in form {cost.get('form', 'distance')}: set it to 0 or change the cost")
    target = known.get(run["target"]) or {}
    if (target.get("degrade") or {}).get("fresh"):
        errors.append(f"{where}.target: the data set {run['target']!r} is degraded per batch (degrade.fresh), "
                      "which only a source is; use its clean half as the target")
