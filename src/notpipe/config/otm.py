"""Semantic checks of OTM's inputs: noise sources (generation) and derived, degraded data sets
(unpaired restoration). Called by :func:`notpipe.config.validate_config`; every message names its key."""

from __future__ import annotations

from notpipe.data.datasets import NOISE_SOURCE

#: a degradation's required parameters
DEGRADATION_NEEDS = {"noise": ("sigma",), "gray": (), "mask": ("size",)}


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
    for key in DEGRADATION_NEEDS.get(deg["name"], ()):
        if key not in deg:
            errors.append(f"{where}.degrade.{key}: required for the {deg['name']} degradation")
    extra = {"sigma", "size", "box"} - set(DEGRADATION_NEEDS.get(deg["name"], ())) - (
        {"box"} if deg["name"] == "mask" else set())
    for key in sorted(extra & set(deg)):
        errors.append(f"{where}.degrade.{key}: not a parameter of the {deg['name']} degradation")


def check_mask_fits(where: str, dataset: str, spec: dict, size: int, errors: list[str]) -> None:
    """A mask must leave part of the image: its side below the image size it is prepared at."""
    deg = spec.get("degrade") or {}
    if deg.get("name") == "mask" and int(deg.get("size", 0)) >= size:
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
