"""The one atomic writer: temp file in the same folder, fsync, rename, fsync of the folder.

A crash, a SIGKILL or a full disk never leaves a half-written file under its
final name: readers see the old file or the new one. Checkpoints, JSON files,
prepared arrays, FID reference statistics and PNG grids all go through here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: files get the usual permissions (mkstemp would leave them 0600)
FILE_MODE = 0o666 & ~_umask()


def fsync_dir(folder: str | Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and
    rename it to ``path``. On an error the temporary file is removed and ``path`` is untouched.

    ``suffix`` lets writers that pick a format from the name see the right one
    (e.g. ``".png"`` for PIL).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, RuntimeError) as exc:
        cause = _write_failure(exc)
        if cause is None:
            raise
        raise WriteError(f"cannot write {path}: {cause}; {path.name} and the files before it are left "
                         "as they were: free some space and re-run") from exc
    finally:
        tmp.unlink(missing_ok=True)


class WriteError(OSError):
    """A file could not be written (disk full, file size limit); the message names the path."""

    one_line = True  # stage.entry prints it without a traceback on the command line


#: errno values that mean "no room for this file"
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed, for a user ('No space left on device', ...), or None if not a write failure."""
    if isinstance(exc, WriteError):
        return None
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in _NO_ROOM:
            return os.strerror(e.errno)
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno is None and "requested and" in text and "written" in text:
        return f"short write ({text}): no space left on the device, or a file size limit"  # numpy tofile
    if isinstance(exc, RuntimeError) and ("write failed" in text or "failed writing" in text):
        return "the write failed (no space left on the device, or a file size limit)"  # torch.save
    return None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write(fh)`` into a binary temp file, then rename it to ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
    return Path(path)


def write_json(path: str | Path, data) -> Path:
    """JSON with sorted keys and a final newline, written atomically (byte-stable output)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file by ``hashlib`` algorithm name, read in chunks of ``chunk_size`` bytes
    (``md5`` only to compare with a published MD5, never as a security hash)."""
    h = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks of ``chunk_size`` bytes."""
    return file_digest(path, "sha256", chunk_size)
