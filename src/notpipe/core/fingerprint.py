"""Fingerprints of what determines a training trajectory, stored in every checkpoint.

A run resumes from a checkpoint only when the checkpoint's fingerprint equals
the one of the config it is asked to train; evaluation and figures refuse a
model whose fingerprint differs from the config they evaluate. The fingerprint
is the run block flattened to dotted keys (``cost.gamma``, ``model.hidden_t``,
...), minus the keys that do not change the trajectory (:data:`TOY_FREE`,
:data:`IMAGE_FREE`), plus, for image runs, the sha256 of the prepared arrays
(from the data sets' manifests). Numbers are compared as floats, so ``1`` and
``1.0`` in a YAML file are the same setting.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: toy-experiment keys that do not change the trajectory (raise ``steps`` to continue a run);
#: ``optim.backward`` (hand-written gradients or autograd) computes the same maths, float
#: rounding aside, as ``speed.compile`` does for image runs
TOY_FREE = ("steps", "log_every", "checkpoint_every", "gamma_sweep", "keep", "optim.backward")
#: image-run keys that do not change the trajectory. ``speed.compile`` and
#: ``speed.channels_last`` compute the same maths (float rounding may differ), and so
#: does ``gpus`` (N processes on slices of the same global batch, synced BatchNorm);
#: ``speed.precision`` (bf16 vs fp32) does change the trajectory and is kept; ``logging``
#: (TensorBoard) only records it.
IMAGE_FREE = ("steps", "log_every", "checkpoint_every", "snapshot_every", "grid_every", "grid_inputs",
              "grid_z", "keep", "speed.compile", "speed.channels_last", "gpus", "logging")

#: keys added after fingerprints existed, at the value that computes what the code did before
#: they existed: left out of the fingerprint at that value, so older checkpoints stay valid
NEUTRAL = {"k_f": 1.0, "gradient_penalty": 0.0, "order": "map_first", "gradient_optimality": 0.0,
           "model.arch": "unet", "cost.form": "distance"}
#: toy keys added later (the step decay of the learning rates, the average of T's parameters),
#: at their no-op values
TOY_NEUTRAL = {**NEUTRAL, "optim.milestones": [], "optim.lr_decay": 0.1, "ema_decay": 0.0}

VERSION = 1


class FingerprintMismatch(RuntimeError):
    """A model was written by another configuration than the one asked for (one-line message)."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def _canon(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in v.items()}
    return str(v)


def flatten(block: dict, prefix: str = "") -> dict:
    """``{"cost": {"gamma": 1}}`` -> ``{"cost.gamma": 1.0}`` (lists stay values)."""
    out = {}
    for key, val in block.items():
        dotted = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(flatten(val, dotted + "."))
        else:
            out[dotted] = _canon(val)
    return out


def _free(key: str, free: tuple[str, ...]) -> bool:
    return any(key == f or key.startswith(f + ".") for f in free)


def trajectory(block: dict, free: tuple[str, ...], prefix: str = "") -> dict:
    """``block`` without the keys in ``free``: what rules pass to jobs that check a model
    (so editing ``grid_every`` does not rerun an evaluation)."""
    out = {}
    for key, val in block.items():
        dotted = f"{prefix}{key}"
        if _free(dotted, free):
            continue
        out[key] = trajectory(val, free, dotted + ".") if isinstance(val, dict) else val
    return out


def make(block: dict, free: tuple[str, ...], data: dict | None = None, neutral: dict = NEUTRAL) -> dict:
    """The fingerprint of one run block: ``{"version", "keys", "hash"}`` (plain types only)."""
    keys = {k: v for k, v in flatten(block).items() if not _free(k, free) and neutral.get(k, ...) != v}
    if data:
        keys.update({f"data.{k}": v for k, v in flatten(data).items()})
    keys = dict(sorted(keys.items()))
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
    return {"version": VERSION, "keys": keys, "hash": digest}


def toy(exp: dict) -> dict:
    return make(exp, TOY_FREE, neutral=TOY_NEUTRAL)


def data_hashes(manifests: dict[str, str | Path]) -> dict:
    """``{"source": path, "target": path}`` of manifest.json files -> their arrays' sha256."""
    out = {}
    for side, path in manifests.items():
        with open(path) as fh:
            out[side] = json.load(fh).get("array_sha256", {})
    return out


#: behaviour of the image trainer that no config key holds but that changes the trajectory:
#: the network not being trained is in eval mode (the authors' freeze: T's BatchNorm uses its
#: running statistics in the f-step). Image checkpoints written before it (T in train mode
#: there) do not carry it, so they are not resumed as if they were of the same run.
IMAGE_BEHAVIOUR = {"trainer": {"frozen_in_eval_mode": True}}


def image(run: dict, manifests: dict[str, str | Path]) -> dict:
    return make({**run, **IMAGE_BEHAVIOUR}, IMAGE_FREE, data_hashes(manifests))


def differences(old: dict | None, new: dict, limit: int = 6) -> str:
    """``"cost.name: 'strong' -> 'weak', ..."``; names at most ``limit`` keys."""
    if not old:
        return "the checkpoint has no fingerprint (written before fingerprints were recorded)"
    a, b = old.get("keys", {}), new["keys"]
    diffs = [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
             for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    if not diffs:
        return "fingerprint versions differ"
    more = f" (and {len(diffs) - limit} more)" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def matches(state: dict, expected: dict) -> bool:
    fp = state.get("fingerprint")
    return bool(fp) and fp.get("hash") == expected["hash"]


def require(state: dict, expected: dict, path: str | Path, steps: int | None = None) -> None:
    """Raise :class:`FingerprintMismatch` unless ``state`` was trained by the expected config
    (and, when ``steps`` is given, for exactly that many f-steps)."""
    if not matches(state, expected):
        raise FingerprintMismatch(
            f"{path} was trained with another configuration ({differences(state.get('fingerprint'), expected)}); "
            "refusing to evaluate it: rerun its training rule")
    step = state.get("step", state.get("trainer", {}).get("step"))
    if steps is not None and step is not None and int(step) != int(steps):
        raise FingerprintMismatch(f"{path} holds f-step {int(step)} but the config asks for steps={steps}; "
                                  "refusing to evaluate it: rerun its training rule")
