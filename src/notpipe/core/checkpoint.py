"""Atomic, complete checkpoints, safe loading, fingerprint-checked resume, RNG-state capture.

A checkpoint is one ``torch.save`` dict written to a temporary file in the same
directory, flushed and fsync'ed, then ``os.replace``'d over the final name, so a
crash never leaves a half-written checkpoint under a real name. Files are named
``step_{step:08d}.pt``; :func:`latest_checkpoint` returns the newest one that
loads, skipping (with a warning) any that are truncated or corrupt.

Loading is ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain Python types (a pickle that could run code) is refused with
one line (:class:`UnsafeCheckpointError`), and so is a truncated or damaged one
(:class:`DamagedCheckpointError`). Every state we write is made of such types,
RNG states included.

:func:`resume` restores a trainer only from a checkpoint whose fingerprint
(:mod:`notpipe.fingerprint`) matches the config; otherwise the old folders are
moved aside to ``*.stale-<time>/`` (nothing is deleted) and training starts at 0.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from notpipe.core import fingerprint
from notpipe.io import atomic_write

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step_(\d{8})\.pt$")
#: what NOTTrainer.load_state_dict reads (the schedulers are optional)
TRAINER_KEYS = ("step", "elapsed", "history", "T", "f", "opt_t", "opt_f", "generator", "rng")


class UnsafeCheckpointError(RuntimeError):
    """A file holds Python objects other than tensors and plain types; it was not loaded."""

    one_line = True  # stage.entry prints it without a traceback on the command line


class DamagedCheckpointError(RuntimeError):
    """A model or checkpoint file is truncated, damaged or not a torch file."""

    one_line = True


def rng_state() -> dict:
    """Every global RNG state (python, numpy, torch CPU, CUDA) as tensors and plain types."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (:func:`notpipe.io.atomic_write`)."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def load(path: str | Path, map_location="cpu") -> dict:
    """``torch.load(weights_only=True)``; a file with other objects raises :class:`UnsafeCheckpointError`,
    a truncated or damaged one :class:`DamagedCheckpointError` (a missing one FileNotFoundError)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds Python objects other than tensors and plain types, which could run "
            f"code when loaded{' (' + detail + ')' if detail else ''}; only load files written by notpipe") from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        what = "is a folder, not a model file" if Path(path).is_dir() else "is truncated or damaged"
        why = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DamagedCheckpointError(f"{path}: {what} ({why}); rerun the rule that writes it, or delete "
                                     f"the file") from None


def latest_checkpoint(directory: str | Path, map_location="cpu") -> tuple[Path, dict] | None:
    """Newest checkpoint that loads, as ``(path, state)``; corrupt ones are skipped."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load(path, map_location)
        except Exception as exc:  # truncated zip, unpickling error, ...
            log.warning("skipping unreadable checkpoint %s (%s: %s)", path, type(exc).__name__, exc)
    return None


def move_aside(folders: list[str | Path]) -> list[Path]:
    """Rename each non-empty folder to ``{name}.stale-<time>`` (deletes nothing); the new names."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for folder in map(Path, folders):
        if not folder.is_dir() or not any(folder.iterdir()):
            continue
        target, i = folder.with_name(f"{folder.name}.stale-{stamp}"), 1
        while target.exists():
            target, i = folder.with_name(f"{folder.name}.stale-{stamp}-{i}"), i + 1
        folder.rename(target)
        moved.append(target)
    return moved


def _missing(trainer, state: dict) -> list[str]:
    """Keys a trainer state needs that ``state["trainer"]`` lacks (T/f parameters included)."""
    from notpipe.core.trainer import _unwrap

    have = state.get("trainer")
    if not isinstance(have, dict):
        return ["trainer"]
    out = [k for k in TRAINER_KEYS if k not in have]
    for net in ("T", "f"):
        if isinstance(have.get(net), dict):
            out += [f"{net}.{k}" for k in _unwrap(getattr(trainer, net)).state_dict() if k not in have[net]]
    return out


def _newest_usable(trainer, directory: str | Path, expected: dict) -> tuple[Path, dict] | None:
    """Newest checkpoint that loads and, when written by this config, holds a complete trainer
    state; unreadable and incomplete ones are skipped with a warning naming the file."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state = load(path)
        except Exception as exc:  # truncated zip, unpickling error, ...
            log.warning("skipping unreadable checkpoint %s (%s: %s)", path, type(exc).__name__, exc)
            continue
        if fingerprint.matches(state, expected):
            missing = _missing(trainer, state)
            if missing:
                log.warning("skipping incomplete checkpoint %s (missing %s)", path, ", ".join(missing[:5]))
                continue
        return path, state
    return None


def resume(trainer, ckpt_dir: str | Path, expected: dict, steps: int, name: str,
           aside: list[str | Path] = ()) -> bool:
    """Load the newest readable checkpoint into ``trainer`` if it was written by the same
    configuration (fingerprint ``expected``) at no more than ``steps`` f-steps.

    Otherwise (another config, a checkpoint from before fingerprints, or one past
    ``steps``) log one line naming what differs, move ``ckpt_dir`` and the folders
    in ``aside`` to ``*.stale-<time>/`` and return False: training starts at step 0.
    """
    found = _newest_usable(trainer, ckpt_dir, expected)
    folders = [ckpt_dir, *aside]
    if found is None:
        moved = move_aside(folders)
        if moved:
            log.warning("%s: no readable checkpoint in %s; old files kept in %s; training from step 0", name,
                        ckpt_dir, ", ".join(map(str, moved)))
        return False
    path, state = found
    step = int(state.get("trainer", {}).get("step", -1))
    if not fingerprint.matches(state, expected):
        why = f"config changed: {fingerprint.differences(state.get('fingerprint'), expected)}"
    elif step > steps:
        why = f"it is at f-step {step}, past steps={steps}"
    else:
        trainer.load_state_dict(state["trainer"])
        log.info("resumed %s from %s (f-step %d)", name, path, trainer.step)
        return True
    moved = move_aside(folders)
    log.warning("%s: not resuming %s (%s); old files kept in %s; training from step 0", name, path, why,
                ", ".join(map(str, moved)))
    return False


def prune(directory: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    if keep <= 0:
        return
    for path in list_checkpoints(directory)[:-keep]:
        path.unlink(missing_ok=True)
