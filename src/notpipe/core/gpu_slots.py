"""One GPU per job on a local machine: claim device slots with ``flock`` lock files.

Snakemake's ``--resources gpu=N`` only caps the *sum* of the ``gpu`` resource of the
running jobs; it never assigns devices (nor sets ``CUDA_VISIBLE_DEVICES``), so N
parallel GPU jobs would all pick ``cuda:0``. Each job therefore claims its slots here:
one lock file per visible device in a shared lock dir, taken with a non-blocking
``fcntl.flock``. The lock, not the file's content, is the truth; the kernel drops it
when the holder exits, even on SIGKILL, so a killed job never leaves a stale slot.
The lock dir must be on a local file system (the default, under the temp dir, is).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_LOG = logging.getLogger(__name__)
ENV_LOCK_DIR = "NOTPIPE_GPU_LOCK_DIR"
#: claims alive in this process: they last until it exits even if the caller drops them
_REGISTRY: list[Claim] = []


def _torch_count() -> int:
    try:
        import torch  # lazily: the slot logic needs no CUDA
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def visible_devices(devices: Sequence[str] | None = None,
                    count: Callable[[], int] = _torch_count) -> list[str]:
    """The visible devices as ``CUDA_VISIBLE_DEVICES`` entries (index ``i`` is ``cuda:i``).

    ``devices`` overrides everything; else ``CUDA_VISIBLE_DEVICES`` (comma list of ints or
    ``GPU-<uuid>``/``MIG-...``; ``""`` means none; as in CUDA, a ``-1`` entry ends the list);
    else ``range(count())``.
    """
    if devices is not None:
        return [str(d) for d in devices]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(count())]
    out = []
    for entry in (e.strip() for e in env.split(",")):
        if not entry or entry.startswith("-"):
            break
        out.append(entry)
    return out


def lock_dir_path(lock_dir: str | os.PathLike | None = None) -> Path:
    """``lock_dir``, else ``$NOTPIPE_GPU_LOCK_DIR``, else ``<tempdir>/notpipe-gpu-locks``."""
    return Path(lock_dir or os.environ.get(ENV_LOCK_DIR)
                or Path(tempfile.gettempdir()) / "notpipe-gpu-locks")


def lock_file(lock_dir: Path, entry: str) -> Path:
    """The lock file of one device entry (``gpu-<entry>.lock``, entry made filename-safe)."""
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', entry)}.lock"


def _open(path: Path) -> int:
    """Open a lock file, creating it 0o666; no O_CREAT on existing ones (fs.protected_regular)."""
    try:
        return os.open(path, os.O_RDWR)
    except PermissionError:  # another user's read-only file: flock works read-only too
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # created meanwhile by another job
            return _open(path)
        os.fchmod(fd, 0o666)  # undo the umask: every user of the machine shares the slot
        return fd


def _try(entries: list[str], root: Path, n: int) -> tuple[list[tuple[int, str, int]], list[str]]:
    """One pass: lock up to ``n`` free slots -> ``([(index, entry, fd)], busy entries)``."""
    got, busy = [], []
    for i, entry in enumerate(entries):
        fd = _open(lock_file(root, entry))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy.append(entry)
            continue
        got.append((i, entry, fd))
        if len(got) == n:
            break
    return got, busy


class Claim:
    """GPU slots held by this process: ``.entries`` (CUDA_VISIBLE_DEVICES entries) and
    ``.indices`` (their ``cuda:i`` ordinals). Held until :meth:`release` or process exit."""

    def __init__(self, entries: list[str], indices: list[int], fds: list[int]):
        self.entries, self.indices, self._fds = entries, indices, fds
        _REGISTRY.append(self)

    def release(self) -> None:
        """Free the slots (idempotent)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale holder line for humans
            os.close(fd)  # closing the only descriptor drops the flock
        self._fds = []
        if self in _REGISTRY:
            _REGISTRY.remove(self)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim(entries={self.entries}, indices={self.indices}, held={bool(self._fds)})"


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        if text := path.read_text().strip():
            return text.splitlines()[0]
    return "pid ? (unknown)"


def claim(n: int = 1, *, devices: Sequence[str] | None = None,
          lock_dir: str | os.PathLike | None = None, poll_s: float = 5.0,
          timeout_s: float | None = None, log: Callable[[str], None] | None = None) -> Claim:
    """Claim ``n`` free device slots, all or nothing, waiting until they are free.

    Parameters
    ----------
    n : number of slots; more than the visible devices raises ``ValueError``.
    devices : the visible devices (default :func:`visible_devices`).
    lock_dir : shared lock dir (default :func:`lock_dir_path`), created with mode 0o1777.
    poll_s, timeout_s : retry period; ``TimeoutError`` after ``timeout_s`` (None: wait forever).
    log : called once with "waiting for a free GPU slot: held by pid ..." (default: WARNING).
    """
    entries = visible_devices(devices)
    if not 1 <= n <= len(entries):
        raise ValueError(f"cannot claim {n} GPU slot(s): {len(entries)} device(s) visible {entries}")
    mine = {e for c in _REGISTRY for e in c.entries}
    if n > len([e for e in entries if e not in mine]):
        raise ValueError(f"cannot claim {n} GPU slot(s): this process already holds "
                         f"{sorted(mine)} of the {len(entries)} visible {entries}")
    root = lock_dir_path(lock_dir)
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            root.mkdir()
            os.chmod(root, 0o1777)  # world-writable, sticky: shared by the users of the machine
    t0, warned = time.monotonic(), False
    while True:
        got, busy = _try(entries, root, n)
        if len(got) == n:
            info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}\n"
            for _, _, fd in got:
                with contextlib.suppress(OSError):  # read-only: the lock, not the text, counts
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, info.encode(), 0)
            return Claim([e for _, e, _ in got], [i for i, _, _ in got], [fd for *_, fd in got])
        for _, _, fd in got:  # all or nothing: never sit on part of a claim
            os.close(fd)
        waited = time.monotonic() - t0
        if not warned:
            held = "; ".join(f"{_holder(lock_file(root, e))} [gpu {e}]" for e in busy)
            (log or _LOG.warning)(f"waiting for a free GPU slot: held by {held} "
                                  f"(need {n}, lock dir {root})")
            warned = True
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(f"no {n} free GPU slot(s) of {entries} after {waited:.1f} s "
                               f"(timeout_s={timeout_s}, lock dir {root})")
        time.sleep(poll_s if timeout_s is None else max(0.0, min(poll_s, timeout_s - waited)))


def claim_for_job(gpus: int, *, devices: Sequence[str] | None = None,
                  lock_dir: str | os.PathLike | None = None,
                  log: Callable[[str], None] | None = None) -> Claim | None:
    """Claim the ``gpus`` slots of one job (its ``resources.gpu``); waits for free ones.

    Returns None and claims nothing when ``gpus == 0`` or no device is visible
    (no CUDA, ``--resources gpu=0``); else a :class:`Claim` whose ``indices`` are the
    ``cuda:i`` devices to use. Logs "claimed GPU slot(s) ..." (default: INFO).
    """
    entries = visible_devices(devices)
    if gpus <= 0 or not entries:
        return None
    c = claim(gpus, devices=entries, lock_dir=lock_dir, log=log)
    (log or _LOG.info)(f"claimed GPU slot(s) {','.join(c.entries)} "
                       f"(cuda:{','.join(map(str, c.indices))})")
    return c
