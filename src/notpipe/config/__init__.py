"""Configuration: JSON-schema validation with defaults, readable errors, semantic checks.

Every error names the offending key (dotted path) and, where the schema knows
them, the allowed keys or values. All problems are reported at once, before any
job starts.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Callable

import jsonschema
import yaml

from notpipe.config import otm

#: the JSON schema (package data, so an installed wheel validates too)
SCHEMA_PATH = Path(__file__).with_name("schema.yaml")

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


#: most values (mappings, lists and scalars) a config may hold once its YAML aliases are
#: expanded; the largest shipped config holds about 1,200, and validating 100,000 takes seconds
MAX_CONFIG_VALUES = 100_000


class ConfigError(ValueError):
    """Invalid configuration; the message lists every problem found."""

    one_line = True  # stage.entry prints it without a traceback on the command line


class _Recursive(Exception):
    """A value that contains itself (a YAML alias inside its own anchor)."""


def _expanded_size(root, children: Callable, cap: int) -> int | None:
    """How many values ``root`` holds with every shared part counted once per use (as a copy
    of it would hold), or None once past ``cap``. Shared parts are sized once (memo), so this
    is linear in the stored graph even when its expansion is exponential."""
    memo: dict[int, int] = {}
    open_: set[int] = set()  # ids whose subtree is being sized: the ancestors of the top of the stack
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            memo[key] = size = 1 + sum(memo[id(c)] for c in children(node))
            if size > cap:
                return None
            continue
        if key in memo:
            continue
        if key in open_:
            raise _Recursive
        kids = children(node)
        if not kids:
            memo[key] = 1
            continue
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in kids if id(c) not in memo)
    return memo[id(root)]


def _yaml_children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _value_children(value) -> list:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return []


def _check_expanded(root, children: Callable, source: str) -> None:
    """Refuse ``root`` (YAML nodes or loaded values) when aliases make it expand past
    :data:`MAX_CONFIG_VALUES` values or into itself: one line naming ``source``."""
    try:
        size = _expanded_size(root, children, MAX_CONFIG_VALUES)
    except _Recursive:
        raise ConfigError(f"{source}: a YAML alias is used inside its own anchor (the config would "
                          "contain itself); write the value out instead") from None
    if size is None:
        raise ConfigError(f"{source}: the config expands to more than {MAX_CONFIG_VALUES:,} values "
                          "once its YAML aliases (*name) are copied out, far more than any pipeline "
                          "config needs; write the values out or use fewer nested aliases") from None


def load_schema(path: str | Path | None = None) -> dict:
    with open(path or SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _defaulting_validator(schema: dict):
    """Draft 2020-12 validator that fills `default` values while validating."""
    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def properties(validator, props, instance, sch):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, props, instance, sch)

    cls = jsonschema.validators.extend(base, {"properties": properties})
    return cls(schema)


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _format_error(err: jsonschema.ValidationError) -> list[str]:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        out = []
        for key in sorted(set(err.instance) - set(allowed)):
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            out.append(f"{where}: unknown key '{key}'{did}; allowed keys: {', '.join(allowed)}")
        return out
    if err.validator == "enum":
        return [f"{where}: {err.instance!r} is not allowed; allowed values: "
                f"{', '.join(map(str, err.validator_value))}"]
    if err.validator == "required":
        return [f"{where}: {err.message}"]
    if err.validator == "propertyNames":
        return [f"{where}: name {err.instance!r} must match {err.validator_value}"]
    if err.validator == "maximum" and isinstance(err.instance, (int, float)):
        return [f"{where}: {err.instance} is above the maximum {err.validator_value}"
                f"{_memory_note(err.absolute_path, err.instance)}; lower it"]
    return [f"{where}: {err.message}"]


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return ""  # unreachable


def _memory_note(path, value) -> str:
    """What ``value`` of a size key would allocate (the reason for its maximum)."""
    key = path[-1] if path else None
    if key in ("image_size", "pre_resize"):
        one = 3 * value * value
        return (f" (one {value}x{value} RGB image takes {_bytes(one)} as uint8 and "
                f"{_bytes(4 * one)} as float32; a data set of 10,000 such images {_bytes(1e4 * one)})")
    if key == "n_eval":
        return f" (the exact W2 holds an n_eval x n_eval float64 cost matrix: {_bytes(8.0 * value * value)})"
    if key == "z_eval":
        return " (T is pushed z_eval times per input: n_eval x z_eval samples at once)"
    return ""


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


def validate_config(config: dict, schema: dict | None = None, *, source: str = "config") -> dict:
    """Validate ``config`` and return a copy with every default filled in.

    ``source`` names the config (its file) in the message about an oversized config.

    Raises
    ------
    ConfigError
        listing every problem, each naming its key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"invalid config:\n  <top level>: must be a mapping of keys (suite, toy, "
                          f"images, ...), got {type(config).__name__}")
    # before the schema walks it: shared values (YAML aliases) are walked once per use
    _check_expanded(config, _value_children, source)
    cfg = copy.deepcopy(dict(config))
    _suite_speed(cfg)
    lines = _toy_presets(cfg)
    validator = _defaulting_validator(schema or load_schema())
    errs = sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path])
    lines += [line for e in errs for line in _format_error(e)]
    # semantic checks in the same pass: each block on its own, skipping a block whose
    # values failed the schema (an unknown key alone does not break its block)
    broken = [tuple(e.absolute_path) for e in errs if e.validator != "additionalProperties"]
    _semantic(cfg, broken, lines)
    if lines:
        raise ConfigError("invalid config:\n  " + "\n  ".join(dict.fromkeys(lines)))
    _image_cost_scaling(cfg)
    return cfg


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


def read_yaml(path: str | Path):
    """``yaml.safe_load`` of a config file; a syntax error becomes one :class:`ConfigError` line
    naming the file, the line and the column.

    Aliases (``*name``, ``<<: *name``) are allowed, but a file whose values, once every alias is
    copied out, exceed :data:`MAX_CONFIG_VALUES` (an alias bomb) or contain themselves is
    refused before anything walks them."""
    try:
        with open(path) as fh:
            loader = yaml.SafeLoader(fh)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                _check_expanded(node, _yaml_children, str(path))
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to read; flatten it") from None
    except yaml.YAMLError as err:
        def at(m) -> str:
            return f"line {m.line + 1}, column {m.column + 1}"

        mark, cmark = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
        where = f"{path}, {at(mark or cmark)}" if (mark or cmark) is not None else str(path)
        context = getattr(err, "context", None)
        if context and cmark is not None and mark is not None and cmark.line != mark.line:
            context += f" (opened at {at(cmark)})"
        what = ": ".join(x for x in (context, getattr(err, "problem", None)) if x)
        raise ConfigError(f"{where}: YAML syntax error: {what or str(err).splitlines()[0]}") from None


def load_config(path: str | Path) -> dict:
    data = read_yaml(path)
    return validate_config({} if data is None else data)


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
