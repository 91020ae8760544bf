"""One Snakemake run per working directory: a second run is refused before it builds its DAG.

Snakemake's own lock (``.snakemake/locks``) is taken only after the DAG is built. A run
started while another one works in the same folder therefore builds its DAG with that
run's unfinished outputs marked incomplete, and with ``rerun-incomplete: true``
(profiles/default) schedules them again; if the first run ends between that DAG and the
lock, the second one gets the lock and runs the finished jobs a second time.

This lock comes first: the main Snakemake process of a run takes an exclusive,
non-blocking ``fcntl.flock`` on ``.snakemake/notpipe-run.lock`` in the working directory
and keeps it until it exits. The kernel drops it when the process ends, even on SIGKILL,
so it is never stale. The file holds the holder's pid, host and start time, for the
message a refused run prints.

Who takes it is decided when Snakemake executes, not when it reads the Snakefile: while
the Snakefile is read, ``workflow.dryrun`` is False even under ``-n``, and ``--unlock``,
``--lint``, ``--summary``, ``--dag``/``--rulegraph``, ``--list-*`` and ``--report`` read it
exactly as a run does. Snakemake calls ``workflow.execute`` only to run (real, ``--touch``
or dry), with the executor that says which, so :func:`guard_runs` wraps it. Taking the
lock are: real and ``--touch`` runs of the main process (exec mode ``default``), also
those submitting to a cluster. Not taking it: dry runs, ``--nolock`` runs, every command
that does not execute, and job processes that read the Snakefile again (``--mode remote``
on cluster nodes, ``--mode subprocess`` for local group and ``run:`` jobs), which work in
the folder on behalf of the run holding it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import socket
import time
from pathlib import Path

#: the lock file, under the working directory's .snakemake/
LOCK_FILE = "notpipe-run.lock"
#: folder (resolved) -> descriptor holding its lock; held until this process exits
_HELD: dict[Path, int] = {}


class FolderBusy(RuntimeError):
    """Another process holds the run lock of the folder."""

    one_line = True


def lock_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / ".snakemake" / LOCK_FILE


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
        if text:
            return text.splitlines()[0]
    return "pid unknown"


def hold(folder: str | os.PathLike) -> Path:
    """Take the run lock of ``folder`` for the rest of this process's life (again: no-op).

    Raises :class:`FolderBusy` (one line: the folder, the holder, what to do) when another
    process holds it, and ``OSError`` when the lock file cannot be created or locked.
    Returns the lock file.
    """
    folder = Path(folder).resolve()
    path = lock_path(folder)
    if folder in _HELD:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise FolderBusy(f"another snakemake run ({holder}) is working in {folder}: wait for it to finish "
                         "or stop it, then start this one again") from None
    except OSError:
        os.close(fd)
        raise
    stamp = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    with contextlib.suppress(OSError):  # the line is for people; the lock is the flock
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode(), 0)
    _HELD[folder] = fd
    return path


def release(folder: str | os.PathLike) -> None:
    """Drop the run lock of ``folder`` if this process holds it (the process's exit does too)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def takes_lock(workflow, executor_plugin, execution_settings) -> bool:
    """Whether this ``workflow.execute`` call is a run that must hold the folder: the main
    process (not a job's ``--mode remote/subprocess``), not a dry run, not ``--nolock``."""
    if not workflow.is_main_process:
        return False
    if executor_plugin is not None and executor_plugin.common_settings.dryrun_exec:
        return False
    return execution_settings is None or bool(getattr(execution_settings, "lock", True))


def guard_runs(workflow) -> None:
    """Make ``workflow.execute`` take the run lock of the working directory first (from
    the Snakefile: ``guard_runs(workflow)``). A busy folder ends the run with one line."""
    execute = workflow.execute
    if getattr(execute, "_notpipe_guard", False):
        return

    @functools.wraps(execute)
    def guarded(*args, **kwargs):
        plugin = kwargs.get("executor_plugin", args[0] if args else None)
        if takes_lock(workflow, plugin, workflow.execution_settings):
            from snakemake.exceptions import WorkflowError

            try:
                hold(Path.cwd())
            except FolderBusy as err:
                raise WorkflowError(str(err)) from None
            except OSError as err:  # e.g. a file system without flock: Snakemake's own lock remains
                if err.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC):
                    raise WorkflowError(f"cannot create {lock_path(Path.cwd())}: {err.strerror}") from None
                from snakemake.logging import logger

                logger.warning(f"cannot lock {lock_path(Path.cwd())} ({err.strerror}); "
                               "two runs in this folder are not kept apart")
        return execute(*args, **kwargs)

    guarded._notpipe_guard = True
    workflow.execute = guarded
