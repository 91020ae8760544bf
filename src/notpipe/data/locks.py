"""What several processes or suites share: locks on a data set folder or a download, and
the check that two suites do not rebuild one prepared data set back and forth.

Two clones of the repository (or two suites) can share one ``data_dir``; Snakemake's
own lock covers one working directory only. :func:`held` takes ``fcntl.flock`` on a
``.lock`` file: the kernel releases it when its process ends, even by SIGKILL, so a
lock is never left stale. A second process waits up to ``wait`` seconds, then fails
with one line naming the path, the holder's process id and the config key to raise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: seconds a second process waits for a data set folder or a download (config data.lock_wait)
DEFAULT_WAIT = 7200.0


class LockTimeout(RuntimeError):
    """Another process held the lock for longer than we were allowed to wait."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def _holder(fh) -> str:
    fh.seek(0)
    pid = fh.read().strip()
    return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def held(lock: str | Path, what: str, wait: float = DEFAULT_WAIT, key: str = "data.lock_wait",
         poll: float = 0.2) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``lock`` for the ``with`` block; yield whether we had to wait.

    ``what`` names the locked thing in messages (``data set folder results/data/shoes_64``).

    Raises
    ------
    LockTimeout
        When another process still holds it after ``wait`` seconds.
    """
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        t0, waited = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.warning("%s is in use by %s; waiting for it (at most %g s, %s)",
                                what, _holder(fh), wait, key)
                    waited = True
                if time.monotonic() - t0 >= wait:
                    raise LockTimeout(f"{what} is still in use by {_holder(fh)} after {wait:g} s ({key}): "
                                      f"let that run finish, then re-run (or raise {key})") from None
                time.sleep(poll)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield waited
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------- one data set, two suites
def build_record(spec: dict) -> dict:
    """The data set parameters a manifest records (JSON round trip: what a later reader compares)."""
    return json.loads(json.dumps(spec, sort_keys=True))


def build_conflict(manifest: str | Path, name: str, spec: dict, suite: str | None) -> str | None:
    """One line when the prepared data set at ``manifest`` was built by another suite with other
    parameters than ``spec``; None when it is absent, ours, equal, or from before this record.

    Two suites sharing ``data_dir`` that declare the same data set name differently would each
    rebuild the shared copy for itself, back and forth; a suite that changes its own parameters
    rebuilds as usual.
    """
    try:
        built = json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return None
    theirs, owner = built.get("spec"), built.get("suite")
    ours = build_record(spec)
    if not isinstance(theirs, dict) or owner is None or suite is None or owner == suite or theirs == ours:
        return None
    diff = "; ".join(f"{k}: {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(theirs) | set(ours))
                     if theirs.get(k) != ours.get(k))
    folder = Path(manifest).parent
    return (f"data set '{name}' in {folder} was built by suite '{owner}' with other parameters than suite "
            f"'{suite}' declares ({diff}), and each would rebuild it for itself: give one of them another "
            f"name (datasets.{name}_{suite}: ...) or the same parameters, or delete {folder} if suite "
            f"'{owner}' no longer needs it")
