"""Checks the schema cannot express (sampler dimensions and keys, costs, data sets, image-run
shapes, gamma sweeps), each block on its own, every problem as a line naming its key."""

from __future__ import annotations

import difflib
from typing import Callable

from notpipe.config import otm
from notpipe.config.expand import toy_sweeps

#: samplers whose samples always live in R^2 (checked against notpipe.toy.samplers in the tests)
PLANAR_SAMPLERS = {"moons", "8gaussians", "swissroll", "circles"}
#: the keys each sampler reads besides ``name`` (the parameters of notpipe.toy.samplers; checked in the tests)
SAMPLER_KEYS = {
    "gaussian": {"dim", "mean", "cov", "seed"},
    "moons": {"dim", "scale", "noise"},
    "8gaussians": {"dim", "scale", "noise", "whiten"},
    "swissroll": {"dim", "scale", "noise", "whiten"},
    "circles": {"dim", "radii", "centers", "noise", "scale"},
    "discrete": {"dim", "n", "atoms", "scale", "seed"},
    "gaussian_mixture": {"dim", "n", "centers", "std", "scale", "seed"},
}


def _sampler_dim(s: dict, where: str, errors: list[str]) -> int:
    name = s["name"]
    unused = sorted(set(s) - {"name"} - SAMPLER_KEYS.get(name, set(s)))
    if unused:
        errors.append(f"{where}: sampler '{name}' does not use {', '.join(unused)}; its keys: "
                      f"{', '.join(sorted(SAMPLER_KEYS[name]))}")
    if name in PLANAR_SAMPLERS:
        if s.get("dim", 2) != 2:
            errors.append(f"{where}.dim: sampler '{name}' is 2-D only, got dim={s['dim']}")
        return 2
    dim = s.get("dim")
    if name == "gaussian":
        for key in ("mean", "cov"):
            val = s.get(key)
            if isinstance(val, list):
                if dim is not None and len(val) != dim:
                    errors.append(f"{where}.{key}: length {len(val)} does not match dim={dim}")
                dim = dim or len(val)
    if name == "discrete" and s.get("atoms"):
        lens = {len(a) for a in s["atoms"]}
        if len(lens) != 1 or (dim is not None and lens != {dim}):
            errors.append(f"{where}.atoms: every atom needs {dim or 'the same number of'} coordinates")
        dim = dim or lens.pop()
    if name == "gaussian_mixture" and s.get("centers"):
        dim = dim or len(s["centers"][0])
    return dim or 2


def _check_baseline(where: str, block: dict, errors: list[str]) -> None:
    """k_f critic steps belong to the WGAN-GP baseline (cost none), not to NOT's schedule."""
    if block.get("k_f", 1) > 1 and block["cost"]["name"] != "none":
        errors.append(f"{where}.k_f: {block['k_f']} critic steps per step are the WGAN-GP baseline's "
                      f"schedule; with the {block['cost']['name']} cost (NOT) k_f must be 1 (or use cost: none)")


def _check_cost(where: str, cost: dict, gammas: list, errors: list[str]) -> None:
    cname = cost["name"]
    if cname in ("strong", "none"):
        if cost.get("gamma", 0) != 0 or gammas:
            errors.append(f"{where}.cost.gamma: the {cname} cost has no gamma; use name: weak")
        if cost.get("z_size", 1) != 1:
            errors.append(f"{where}.cost.z_size: the {cname} cost uses one sample per input")
    else:
        if "gamma" not in cost and not gammas:
            errors.append(f"{where}.cost.gamma: required for the {cname} cost")
        if cost.get("z_size", 4) < 2:
            errors.append(f"{where}.cost.z_size: |Z_x| must be >= 2 for the {cname} cost")
        for g in gammas + ([cost["gamma"]] if "gamma" in cost else []):
            if g > 1 and cname == "weak":
                errors.append(f"{where}.cost.gamma: gamma={g} > 1 makes the weak quadratic "
                              "cost ill-posed (allowed: gamma <= 1; negative = variance penalty)")
            elif g > 1 and cname == "kernel":
                errors.append(f"{where}.cost.gamma: gamma={g} > 1 makes the kernel (energy) cost "
                              "unbounded below (allowed: gamma <= 1)")


def _check_experiment(name: str, exp: dict, errors: list[str]) -> None:
    where = f"toy.experiments.{name}"
    d_src = _sampler_dim(exp["source"], f"{where}.source", errors)
    d_tgt = _sampler_dim(exp["target"], f"{where}.target", errors)
    if d_src != d_tgt:
        errors.append(f"{where}: source dim {d_src} != target dim {d_tgt}; "
                      "NOT maps between spaces of the same dimension here")
    _check_cost(where, exp["cost"], list(exp.get("gamma_sweep") or []), errors)
    _check_baseline(where, exp, errors)
    if exp["checkpoint_every"] % exp["log_every"]:
        errors.append(f"{where}.checkpoint_every: {exp['checkpoint_every']} must be a multiple "
                      f"of log_every={exp['log_every']}")


def _intact(broken: list[tuple], *prefix) -> bool:
    """No schema error in the block at ``prefix``, nor in a block above it."""
    return not any(p[:len(prefix)] == prefix or prefix[:len(p)] == p for p in broken)


def _check_data(cfg: dict, errors: list[str], broken: list[tuple] = ()) -> None:
    from notpipe.data.datasets import DatasetError, resolve_datasets

    from notpipe.paths import shared_dir

    if _intact(broken, "results_dir"):
        if _intact(broken, "data") and cfg["data"]["data_dir"] is None:
            cfg["data"]["data_dir"] = shared_dir(cfg["results_dir"], "data")
        for key in ("inception_weights", "lpips_weights"):
            if _intact(broken, "eval") and cfg["eval"][key] is None:
                cfg["eval"][key] = shared_dir(cfg["results_dir"], "weights")
    try:
        known = resolve_datasets(cfg["datasets"])
    except DatasetError as err:
        errors.append(str(err))
        return
    for i, name in enumerate(cfg["data"]["build"] if _intact(broken, "data", "build") else []):
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            errors.append(f"data.build.{i}: unknown data set '{name}'{did}; known: {', '.join(sorted(known))}")
    for name, spec in known.items():
        if spec["format"] == "shapes" and not {"shape", "n", "seed"} <= set(spec):
            errors.append(f"datasets.{name}: format shapes needs shape, n and seed")
        if spec["format"] == "torchvision" and not spec.get("torchvision"):
            errors.append(f"datasets.{name}.torchvision: the torchvision class name is required")
        otm.check_derived(name, spec, errors)
    if _intact(broken, "data"):
        for name in cfg["data"]["build"]:
            if name in known:
                otm.check_mask_fits("data.image_size", name, known[name], cfg["data"]["image_size"], errors)


def _check_images(cfg: dict, errors: list[str], only: str | None = None) -> None:
    from notpipe.data.datasets import DatasetError, resolve_datasets

    try:
        known = resolve_datasets(cfg["datasets"])
    except DatasetError:
        return  # reported by _check_data
    for name, run in cfg["images"]["runs"].items():
        if only is not None and name != only:
            continue
        where = f"images.runs.{name}"
        noise = otm.check_source(where, run, errors)
        for side in ("target",) if noise else ("source", "target"):
            if run[side] in known:
                otm.check_mask_fits(where, run[side], known[run[side]], run["image_size"], errors)
            else:
                hint = difflib.get_close_matches(run[side], known, n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                errors.append(f"{where}.{side}: unknown data set '{run[side]}'{did}")
        _check_cost(where, run["cost"], [], errors)
        _check_baseline(where, run, errors)
        otm.check_settings(where, run, known, errors)
        size, depth = run["image_size"], run["model"]["t_depth"]
        if run["model"]["arch"] == "unet" and size % (2 ** depth):
            errors.append(f"{where}.image_size: {size} must be divisible by 2**model.t_depth = {2 ** depth}")
        if run["model"].get("channels", 3) != 3 and run["model"]["arch"] != "unet":
            errors.append(f"{where}.model.channels: grey maps are U-Net maps; model.arch "
                          f"{run['model']['arch']} works on 3 channels (remove channels)")
        if size < 8 or size & (size - 1):
            errors.append(f"{where}.image_size: {size} must be a power of two (ResNet_D halves it down to 4)")
        if run["batch"] % run["gpus"]:
            errors.append(f"{where}.batch: {run['batch']} must be divisible by gpus={run['gpus']} "
                          "(each process takes an equal slice of the global batch)")
        for key in ("checkpoint_every", "grid_every"):
            if run[key] % run["log_every"]:
                errors.append(f"{where}.{key}: {run[key]} must be a multiple of log_every={run['log_every']}")
        if run["snapshot_every"] and (not run["checkpoint_every"] or run["snapshot_every"] % run["checkpoint_every"]):
            errors.append(f"{where}.snapshot_every: {run['snapshot_every']} must be a multiple of "
                          f"checkpoint_every={run['checkpoint_every']}")


def _guarded(broken: list[tuple], prefix: tuple, check: Callable[[list[str]], None],
             lines: list[str]) -> None:
    """Run ``check`` unless a schema error lies in the block at ``prefix`` (or above it)."""
    if not _intact(broken, *prefix):
        return
    out: list[str] = []
    try:
        check(out)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, ZeroDivisionError):
        return  # a shape the schema let through but the check cannot read: reported elsewhere
    lines.extend(out)


def _semantic(cfg: dict, broken: list[tuple], lines: list[str]) -> None:
    _guarded(broken, ("datasets",), lambda out: _check_data(cfg, out, broken), lines)
    runs = cfg.get("images", {}).get("runs") if isinstance(cfg.get("images"), dict) else None
    for name in (runs if isinstance(runs, dict) else {}):
        _guarded(broken, ("images", "runs", name), lambda out, n=name: _check_images(cfg, out, n), lines)
    exps = cfg.get("toy", {}).get("experiments") if isinstance(cfg.get("toy"), dict) else None
    for name in (exps if isinstance(exps, dict) else {}):
        _guarded(broken, ("toy", "experiments", name),
                 lambda out, n=name: _check_experiment(n, cfg["toy"]["experiments"][n], out), lines)

    def sweeps(out):
        ok = {n: e for n, e in exps.items() if _intact(broken, "toy", "experiments", n)}
        generated = {n for runs in toy_sweeps({"toy": {"experiments": ok}}).values() for _, n in runs}
        dup = generated & set(exps)
        if dup:
            out.append(f"toy.experiments: gamma_sweep run names collide with {sorted(dup)}")
    if isinstance(exps, dict):
        _guarded([p for p in broken if p[:2] != ("toy", "experiments")], ("toy",), sweeps, lines)
