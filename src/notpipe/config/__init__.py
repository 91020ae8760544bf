"""Configuration: JSON-schema validation with defaults, readable errors, semantic checks.

Every error names the offending key (dotted path) and, where the schema knows
them, the allowed keys or values. All problems are reported at once, before any
job starts. The parts: :mod:`~notpipe.config.yaml_guard` (alias bombs),
:mod:`~notpipe.config.expand` (presets, suite-level speed, cost scalings, gamma sweeps),
:mod:`~notpipe.config.semantic` (what the schema cannot express), :mod:`~notpipe.config.otm`.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from notpipe.config import otm  # noqa: F401  (notpipe.config.otm, part of this API)
from notpipe.config.errors import ConfigError
from notpipe.config.expand import (  # noqa: F401  (part of this API)
    IMAGE_SCALING, IMAGE_SCALING_DEFAULT, PRESETS_PATH, _expand, _image_cost_scaling, _suite_speed,
    _toy_presets, gamma_tag, toy_experiments, toy_presets, toy_sweeps)
from notpipe.config.semantic import PLANAR_SAMPLERS, SAMPLER_KEYS, _semantic  # noqa: F401
from notpipe.config.yaml_guard import (  # noqa: F401
    MAX_CONFIG_VALUES, _check_expanded, _expanded_size, _value_children, _yaml_children)

#: the JSON schema (package data, so an installed wheel validates too)
SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


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
