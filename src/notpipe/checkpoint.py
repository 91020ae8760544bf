"""Atomic, complete checkpoints and RNG-state capture.

A checkpoint is one ``torch.save`` dict written to a temporary file in the same
directory, flushed and fsync'ed, then ``os.replace``'d over the final name, so a
crash never leaves a half-written checkpoint under a real name. Files are named
``step_{step:08d}.pt``; :func:`latest_checkpoint` returns the newest one that
loads, skipping (with a warning) any that are truncated or corrupt.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step_(\d{8})\.pt$")


def rng_state() -> dict:
    """Every global RNG state: python, numpy, torch CPU and (if present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` via temp file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def load(path: str | Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


def latest_checkpoint(directory: str | Path, map_location="cpu") -> tuple[Path, dict] | None:
    """Newest checkpoint that loads, as ``(path, state)``; corrupt ones are skipped."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load(path, map_location)
        except Exception as exc:  # truncated zip, unpickling error, ...
            log.warning("skipping unreadable checkpoint %s (%s: %s)", path, type(exc).__name__, exc)
    return None


def prune(directory: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    if keep <= 0:
        return
    for path in list_checkpoints(directory)[:-keep]:
        path.unlink(missing_ok=True)
