"""Checks around a download: local sources must be regular files (not devices, pipes or
links to them); a finished file is verified against its published MD5 (where one is pinned) and
its pinned or recorded sha256, an HTML error page is set aside, and ``checksums.json`` records
what was fetched."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from notpipe.io import _write_failure, file_digest, sha256_file, write_json  # noqa: F401  (sha256_file: part of this API)

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download or its verification failed; the message says what to do."""

    one_line = True  # stage.entry prints it without a traceback on the command line


def resolve_local(path: str | Path, what: str, *, folder_ok: bool = False) -> Path:
    """Return the local file ``path`` (a plain path or ``file://`` URL) if it is a regular file
    (or, with ``folder_ok``, a folder).

    Raises
    ------
    DownloadError
        If it does not exist, or is a device, FIFO or socket (reading ``/dev/zero`` never ends).
        The one-line message says where to put the file.
    """
    s = str(path)
    if s.startswith("file://"):
        s = urllib.request.url2pathname(urlparse(s).path)
    p = Path(s)
    if p.is_file() or (folder_ok and p.is_dir()):
        return p
    if p.exists():
        kind = "a folder" if p.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise DownloadError(f"{what} at {p} is {kind}: put the {'archive' if p.is_dir() else 'file'} "
                            "itself there (see README 'Data sets')")
    raise DownloadError(f"{what} not found at {p}: place the file there (see README 'Data sets')")


def _regular_or_absent(path: Path, what: str) -> bool:
    """True if ``path`` is a regular file, False if absent; a folder, device, FIFO or socket
    (which would be read forever or not at all) is a :class:`DownloadError`."""
    if path.is_file():
        return True
    if not path.exists() and not path.is_symlink():
        return False
    kind = "a folder" if path.is_dir() else "a broken link" if not path.exists() else \
        "not a regular file (a device, FIFO or socket)"
    raise DownloadError(f"{what} {path} is {kind}: move it away and re-run")


def check_md5(path: Path, dest: Path, url: str | None, md5: str | None, key: str = "expected") -> None:
    """Refuse ``path`` (the file that becomes or is ``dest``) when its MD5 differs from the
    published ``md5``: it is moved to ``dest.bad`` and :class:`DownloadError` says so in one line.
    ``key`` names where the MD5 comes from (``datasets.kmnist.md5``). No-op when ``md5`` is None."""
    if md5 is None:
        return
    got = file_digest(path, "md5")
    if got != md5.strip().lower():
        bad = _set_aside(path, dest)
        origin = f" from {url}" if url else ""
        raise DownloadError(
            f"md5 mismatch for {dest}{origin}: {key} {md5}, got {got}; the file was kept at {bad}: "
            "delete it and re-run to download again, or fix the MD5 if the upstream file has "
            "legitimately changed")


def _verify(path: Path, dest: Path, url: str, sha256: str | None,
            checksums: str | Path | None, prefix: str | None = None, key: str | None = None,
            md5: str | None = None) -> str:
    """Check ``path`` against ``md5``, ``sha256``, ``prefix`` and the checksum recorded under
    ``key`` (default ``dest``'s name), record it if new, return the sha256."""
    key = key or dest.name
    check_md5(path, dest, url, md5)  # before anything is recorded: a bad file's sha256 never is
    got = sha256_file(path)
    if prefix is not None and not got.startswith(prefix.strip().lower()):
        bad = _set_aside(path, dest)
        raise DownloadError(
            f"sha256 prefix mismatch for {url} saved as {dest}: expected {prefix}, got "
            f"{got[:len(prefix)]} (sha256 {got}); the file was kept at {bad}: delete it and re-run "
            "to download again")
    table = _load_checksums(checksums) if checksums is not None else {}
    recorded = table.get(key)
    for expected, source in ((sha256, "expected"), (recorded, f"recorded in {checksums}")):
        if expected is not None and got != expected.strip().lower():
            bad = _set_aside(path, dest)
            raise DownloadError(
                f"sha256 mismatch for {dest} from {url}: {source} {expected}, got {got}; "
                f"the file was kept at {bad}: delete it and re-run to download again, "
                "or fix the checksum if the upstream file has legitimately changed")
    if checksums is not None and recorded is None:
        with _locked(Path(checksums)):  # parallel download jobs share the file
            table = _load_checksums(checksums)
            table.setdefault(key, got)
            write_json(Path(checksums), table)
        log.info("recorded sha256 %s for %s in %s", got, key, checksums)
    return got


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive advisory lock on ``path.lock`` (POSIX) for read-modify-write of ``path``."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_checksums(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        table = json.loads(path.read_text())
    except ValueError as e:
        raise DownloadError(f"{path} is not valid JSON ({e}): fix or delete it") from e
    if not isinstance(table, dict):
        raise DownloadError(f"{path} must hold a JSON object {{file name: sha256}}")
    return table


def _looks_like_html(path: Path, content_type: str | None) -> bool:
    if content_type and content_type.split(";")[0].strip().lower() == "text/html":
        return True
    with open(path, "rb") as f:
        head = f.read(1024).lstrip(b" \t\r\n\x0c\xef\xbb\xbf").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _set_aside(path: Path, dest: Path) -> Path:
    bad = _sibling(dest, ".bad")
    os.replace(path, bad)
    return bad


def _sibling(dest: Path, suffix: str) -> Path:
    return dest.with_name(dest.name + suffix)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
