"""What a config means beyond its schema: toy presets (``preset: NAME``), the suite-level speed
block of image runs, each image cost's default scaling, and the gamma sweeps of toy experiments."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml

PRESETS_PATH = Path(__file__).with_name("presets.yaml")


def toy_presets() -> dict[str, dict]:
    """The named toy experiments of ``presets.yaml``."""
    with open(PRESETS_PATH) as fh:
        return yaml.safe_load(fh)


def _merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _toy_presets(cfg: dict) -> list[str]:
    """Replace every toy experiment's ``preset: NAME`` by that preset under its own keys; the
    error lines of unknown names."""
    toy = cfg.get("toy")
    exps = toy.get("experiments") if isinstance(toy, dict) else None
    if not isinstance(exps, dict):
        return []
    presets, errors = None, []
    for name, exp in exps.items():
        if not isinstance(exp, dict) or "preset" not in exp:
            continue
        presets = presets if presets is not None else toy_presets()
        own = {k: v for k, v in exp.items() if k != "preset"}
        preset = exp["preset"]
        if not isinstance(preset, str) or preset not in presets:
            hint = difflib.get_close_matches(str(preset), presets, n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            errors.append(f"toy.experiments.{name}.preset: unknown preset '{preset}'{did}; "
                          f"known: {', '.join(sorted(presets))}")
            continue
        exps[name] = _merged(presets[preset], own)
    return errors


def _suite_speed(cfg: dict) -> None:
    """``images.speed`` is the speed block of every run that has none of its own."""
    images = cfg.get("images")
    if not isinstance(images, dict) or not isinstance(images.get("speed"), dict):
        return
    for run in (images.get("runs") or {}).values() if isinstance(images.get("runs"), dict) else ():
        if isinstance(run, dict) and "speed" not in run:
            run["speed"] = copy.deepcopy(images["speed"])


#: the image runs' cost scaling when a run gives none: the authors' image code (NOT's per-pixel
#: F.mse_loss; Kernel NOT's raw Euclidean norm)
IMAGE_SCALING = {"kernel": "raw"}
IMAGE_SCALING_DEFAULT = "mean"


def _image_cost_scaling(cfg: dict) -> None:
    for run in cfg.get("images", {}).get("runs", {}).values():
        cost = run["cost"]
        cost.setdefault("scaling", IMAGE_SCALING.get(cost["name"], IMAGE_SCALING_DEFAULT))


def gamma_tag(gamma: float) -> str:
    return f"g{gamma:g}"


def _expand(cfg: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, exp in cfg["toy"]["experiments"].items():
        sweep = exp.get("gamma_sweep")
        if not sweep:
            out[name] = exp
            continue
        for g in sweep:
            e = copy.deepcopy(exp)
            e.pop("gamma_sweep")
            e["cost"]["gamma"] = float(g)
            out[f"{name}_{gamma_tag(g)}"] = e
    return out


def toy_experiments(cfg: dict) -> dict[str, dict]:
    """Experiments after expanding every ``gamma_sweep`` into one run per gamma."""
    return _expand(cfg)


def toy_sweeps(cfg: dict) -> dict[str, list[tuple[float, str]]]:
    """``{sweep name: [(gamma, experiment name), ...]}`` for experiments with a sweep."""
    return {name: [(float(g), f"{name}_{gamma_tag(g)}") for g in exp["gamma_sweep"]]
            for name, exp in cfg["toy"]["experiments"].items() if exp.get("gamma_sweep")}
