"""Resumable, verified downloads of data set archives.

:func:`fetch` downloads one http(s) URL to ``dest``:

* An existing ``dest`` is only verified, with no network access. With
  ``offline=True`` a missing ``dest`` is an error that names the URL to fetch
  and the exact path to put the file at.
* The data is streamed chunk by chunk to ``dest.part`` behind a tqdm progress
  bar. A ``.part`` left by a killed run or a dropped connection is resumed with
  ``Range: bytes=N-``. A server that ignores ranges (answers ``200``) makes the
  download restart from byte 0; ``416`` for an already complete part counts as done.
* Connection errors, timeouts, short reads, 5xx, 408 and 429 are retried after
  ``backoff * 2**attempt`` seconds, each retry resuming from the ``.part`` file.
  The attempt count starts over whenever an attempt made progress. Any other 4xx
  fails at once.
* A finished file that is an HTML page (``Content-Type: text/html``, or starting
  with ``<!DOCTYPE html`` / ``<html``) is moved aside to ``dest.bad``. So is a
  file whose MD5 differs from a published ``md5`` (checked first; it catches
  corruption and a changed file, not a deliberate collision), or whose sha256
  differs from ``sha256`` or from the entry in the ``checksums`` JSON file
  (``{file name: sha256}``), or does not start with ``sha256_prefix`` (torch.hub
  names: ``alexnet-owt-7be5be79.pth``). In each case :class:`DownloadError` says
  why. A file name not yet in ``checksums`` has its sha256 recorded (trust on
  first use), after any ``md5`` check has passed.
* On success ``dest.part`` is ``os.replace``'d onto ``dest``, so ``dest`` only
  ever names a complete, verified file.
* Bounds: a body larger than ``max_bytes`` (announced or sent) is refused and
  deleted; the whole download, retries included, stops after ``deadline``
  seconds, and a transfer slower than ``min_rate`` bytes/s over ``rate_window``
  seconds stops at once (the ``.part`` is kept for a re-run to resume). A full
  disk is one line naming the ``.part`` file.
* Two processes that download to the same ``dest`` (two clones sharing one
  ``data_dir``) take turns: the second waits for the first (``flock`` on
  ``dest.lock``, at most ``lock_wait`` seconds) and then finds the file done.

:func:`resolve_local` is the counterpart for files that the user puts in place by hand.
:func:`max_bytes_for` is the size cap of a data set's download.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from notpipe.data.locks import DEFAULT_WAIT, held
from notpipe.io import _write_failure, sha256_file, write_json  # noqa: F401  (sha256_file: part of this API)
from notpipe.data.download_checks import (  # noqa: F401  (DownloadError, resolve_local: part of this API)
    DownloadError, _load_checksums, _locked, _looks_like_html, _regular_or_absent, _set_aside, _sibling, _size,
    _verify, resolve_local)

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")
_RETRY_HTTP = {408, 429}  # 4xx codes that are transient
_NET_ERRORS = (OSError, http.client.HTTPException)  # URLError, timeouts, resets, bad status
_HTTP_WHAT = {401: "login required", 403: "access denied", 404: "not found", 410: "gone"}

#: size cap of a download whose size is not known in advance (config data.download_max_bytes)
DEFAULT_MAX_BYTES = 50 * 2**30
#: seconds one download may take, retries included (config data.download_deadline)
DEFAULT_DEADLINE = 24 * 3600.0
#: slowest transfer accepted, bytes/s averaged over ``rate_window`` seconds (config data.download_min_rate)
DEFAULT_MIN_RATE = 10 * 2**10
#: a known size (the registry's size_bytes) is an estimate: the cap is this much larger
SIZE_MARGIN, SIZE_SLACK = 1.25, 64 * 2**20


def max_bytes_for(size_bytes: float | None, configured_max: float = DEFAULT_MAX_BYTES) -> int:
    """Size cap of one download: ``size_bytes`` (the data set's, when known) plus a margin, else
    ``configured_max`` (``data.download_max_bytes``)."""
    if size_bytes:
        return int(size_bytes * SIZE_MARGIN + SIZE_SLACK)
    return int(configured_max)



class _Retry(Exception):
    """A transient failure: try again, resuming from the ``.part`` file."""


def config_options(cfg: dict, url: str) -> dict:
    """:func:`fetch` keywords for data set download ``url`` under the validated config ``cfg``:
    its ``data`` block's offline, retries and limits, the size cap from the ``size_bytes`` of
    the data sets that download ``url`` (the largest, if several) and the published ``md5`` they
    pin for it (None if none). Two data sets that pin different MD5s for one URL are an error."""
    from notpipe.data.datasets import resolve_datasets, sources

    data = cfg["data"]
    known = resolve_datasets(cfg["datasets"])
    users = {name: next((s for s in sources(spec, ".") if s["url"] == url), None)
             for name, spec in known.items() if not spec.get("path")}
    users = {name: src for name, src in users.items() if src}  # the data sets that download url
    sizes = [known[name].get("size_bytes") for name in users]
    cap = max((max_bytes_for(size, data["download_max_bytes"]) for size in sizes),
              default=int(data["download_max_bytes"]))
    md5s = {name: src["md5"].strip().lower() for name, src in users.items() if src.get("md5")}
    if len(set(md5s.values())) > 1:
        raise DownloadError(f"{url}: datasets {' and '.join(f'{n}.md5 {m}' for n, m in md5s.items())} "
                            "pin different MD5s for this file; make them agree")
    return {"offline": data["offline"], "retries": data["retries"], "max_bytes": cap,
            "deadline": float(data["download_deadline"]), "min_rate": float(data["download_min_rate"]),
            "lock_wait": float(data["lock_wait"]), "md5": next(iter(md5s.values()), None)}


def fetch(url: str, dest: str | Path, *, sha256: str | None = None, md5: str | None = None,
          checksums: str | Path | None = None, offline: bool = False,
          sha256_prefix: str | None = None, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
          progress: bool = True, chunk_size: int = 1 << 20, max_bytes: int | None = None,
          deadline: float = DEFAULT_DEADLINE, min_rate: float = DEFAULT_MIN_RATE, rate_window: float = 60.0,
          checksum_key: str | None = None, lock_wait: float = DEFAULT_WAIT) -> Path:
    """Download ``url`` to ``dest`` (resumable, retried, verified) and return ``dest``.

    Parameters
    ----------
    url : str
        http(s) URL of the file.
    dest : str or Path
        Final path. ``dest.part`` holds the partial download and ``dest.bad``
        holds a rejected file.
    sha256 : str, optional
        Expected hex digest.
    md5 : str, optional
        Published hex MD5 of the file (where its host or a library publishes no sha256), checked
        before the sha256 is recorded.
    checksums : str or Path, optional
        JSON file ``{key: sha256}``. A recorded entry is checked. A missing
        entry is added.
    offline : bool
        Never touch the network. A missing ``dest`` is an error.
    sha256_prefix : str, optional
        Expected first hex digits of the sha256 (the hash suffix of a torch.hub file name).
    retries, backoff : int, float
        Transient failures are retried ``retries`` times in a row, sleeping
        ``backoff * 2**attempt`` seconds between attempts.
    timeout : float
        Socket timeout in seconds for connecting and for each read.
    progress : bool
        Show a tqdm progress bar.
    chunk_size : int
        Most bytes read and written per step (a read returns what has arrived).
    max_bytes : int, optional
        Size cap (default :data:`DEFAULT_MAX_BYTES`); see :func:`max_bytes_for`.
    deadline : float
        Seconds the whole download may take, retries and waits included.
    min_rate, rate_window : float
        Stop when fewer than ``min_rate`` bytes/s arrive over ``rate_window`` seconds.
    checksum_key : str, optional
        Key of this file in ``checksums`` (default: ``dest``'s file name).
    lock_wait : float
        Seconds to wait for another process downloading to the same ``dest``.

    Raises
    ------
    DownloadError
        With one message that says what failed, where any file was kept and what to do.
    """
    dest = Path(dest)
    key = checksum_key or dest.name
    if _regular_or_absent(dest, "download target"):
        _verify(dest, dest, url, sha256, checksums, sha256_prefix, key, md5)
        return dest
    if offline:
        where = dest.absolute()
        raise DownloadError(f"offline mode and {where} is missing: download {url} "
                            f"and put the file at {where}")
    if urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {url}: only http(s) URLs are fetched; "
                            "use resolve_local() for local files")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest.parent} for {url}: {e.strerror or e}; set data.data_dir "
                            "to a folder you can write") from None
    limits = _Limits(time.monotonic() + deadline, deadline, min_rate, rate_window,
                     DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes))
    with held(_sibling(dest, ".lock"), f"download {dest}", min(lock_wait, deadline)):
        if _regular_or_absent(dest, "download target"):  # another process finished it while we waited
            _verify(dest, dest, url, sha256, checksums, sha256_prefix, key, md5)
            return dest
        return _fetch_locked(url, dest, sha256, checksums, sha256_prefix, key, retries, backoff,
                             timeout, progress, chunk_size, limits, md5)


class _Limits:
    """Size cap, deadline and minimum rate of one download."""

    def __init__(self, end: float, deadline: float, min_rate: float, window: float, max_bytes: int):
        self.end, self.deadline, self.min_rate, self.window, self.max_bytes = \
            end, deadline, min_rate, window, max_bytes

    def check_time(self, url: str, part: Path) -> None:
        if time.monotonic() > self.end:
            raise DownloadError(f"download of {url} did not finish within {self.deadline:g} s "
                                f"(data.download_deadline); {_kept(part)}")

    def too_big(self, url: str, part: Path, size: int, announced: bool) -> DownloadError:
        part.unlink(missing_ok=True)  # an oversized body is not worth resuming
        what = f"announces {size} bytes" if announced else f"sent more than {self.max_bytes} bytes"
        return DownloadError(f"download of {url} {what}, above its cap of {self.max_bytes} bytes (the data "
                             "set's size_bytes + 25 %, or data.download_max_bytes when it gives none); "
                             "nothing was kept: check the URL, or raise the cap if the file is that big")


def _kept(part: Path) -> str:
    n = _size(part)
    return (f"the {n} bytes received so far are kept in {part}: re-run to resume" if n
            else "nothing was received: re-run later")


def _fetch_locked(url: str, dest: Path, sha256, checksums, sha256_prefix, key: str, retries: int,
                  backoff: float, timeout: float, progress: bool, chunk_size: int, limits: _Limits,
                  md5: str | None = None) -> Path:
    part = _sibling(dest, ".part")
    _regular_or_absent(part, "partial download")
    attempt = 0
    while True:
        before = _size(part)
        limits.check_time(url, part)
        try:
            content_type = _download_once(url, part, dest, timeout, progress, chunk_size, limits)
            break
        except _Retry as e:
            if _size(part) > before:
                attempt = 0  # progress was made: a flaky line, not a dead server
            if attempt >= retries:
                unreachable = _unreachable(e.__cause__, url) if not _size(part) else None
                if unreachable:
                    raise DownloadError(f"cannot reach {unreachable} for {url} (attempts: {attempt + 1}); "
                                        f"with no network, download the file elsewhere, put it at {dest} "
                                        "and set data.offline: true") from e
                kept = (f"the {_size(part)} bytes received so far are kept in {part}: re-run "
                        "to resume" if _size(part) else "nothing was received: re-run later")
                raise DownloadError(f"download of {url} failed {attempt + 1} times in a row "
                                    f"(last: {e}); {kept}, or download the file by hand and "
                                    f"put it at {dest}") from e
            wait = min(backoff * 2 ** attempt, max(limits.end - time.monotonic(), 0.0))
            log.warning("%s: %s; retrying in %.2f s from byte %d", url, e, wait, _size(part))
            time.sleep(wait)
            attempt += 1
    if _looks_like_html(part, content_type):
        bad = _set_aside(part, dest)
        raise DownloadError(
            f"download of {url} returned an HTML web page (e.g. a login, quota or "
            f"virus-scan page) instead of the archive; it was kept at {bad}: download "
            f"the file in a browser and put it at {dest}")
    digest = _verify(part, dest, url, sha256, checksums, sha256_prefix, key, md5)
    os.replace(part, dest)
    log.info("downloaded %s (%d bytes, sha256 %s)", dest, dest.stat().st_size, digest)
    return dest


def _download_once(url: str, part: Path, dest: Path, timeout: float, progress: bool,
                   chunk_size: int, limits: _Limits) -> str | None:
    """Make one request that appends to ``part``. Return the Content-Type or raise ``_Retry``."""
    have = _size(part)
    headers = {"User-Agent": "notpipe-download", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            return _http_error(e, url, part, dest, have)
    except _NET_ERRORS as e:
        raise _Retry(f"connection failed: {e}") from e
    with resp:
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m[1]) != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server sent range {resp.headers.get('Content-Range')!r} "
                             f"for bytes={have}-; restarting from byte 0")
            total = None if m[3] == "*" else int(m[3])
        elif resp.status == 200:
            if have:
                log.warning("%s: server ignores Range requests; restarting from byte 0", url)
            have = 0
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        else:
            raise DownloadError(f"download of {url} failed: unexpected HTTP {resp.status}")
        if total is not None and total > limits.max_bytes:
            raise limits.too_big(url, part, total, announced=True)
        try:
            f = open(part, "ab" if have else "wb", buffering=0)  # unbuffered: a failed write raises here
        except OSError as e:
            raise _write_error(part, url, e) from None
        size, mark = have, (time.monotonic(), have)
        with f, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=dest.name, disable=not progress) as bar:
            while True:
                try:
                    chunk = resp.read1(chunk_size)  # what has arrived: a trickle cannot block the checks
                except _NET_ERRORS as e:
                    raise _Retry(f"connection dropped: {e!r}") from e
                if not chunk:
                    break
                if size + len(chunk) > limits.max_bytes:
                    raise limits.too_big(url, part, size + len(chunk), announced=False)
                _write_all(f, chunk, part, url)
                size += len(chunk)
                bar.update(len(chunk))
                mark = _check_progress(url, part, size, mark, limits)
            try:
                os.fsync(f.fileno())
            except OSError as e:
                raise _write_error(part, url, e) from None
        content_type = resp.headers.get("Content-Type")
    size = _size(part)
    if total is not None and size != total:
        if size > total:
            part.unlink()
            raise _Retry(f"got {size} bytes but expected {total}; restarting from byte 0")
        raise _Retry(f"connection dropped after {size} of {total} bytes")
    return content_type


def _write_all(f, chunk: bytes, part: Path, url: str) -> None:
    view = memoryview(chunk)
    try:
        while view:
            view = view[f.write(view):]
    except OSError as e:
        raise _write_error(part, url, e) from None


def _write_error(part: Path, url: str, e: OSError) -> DownloadError:
    why = _write_failure(e) or e.strerror or str(e)
    return DownloadError(f"cannot write {part} (download of {url}): {why}; free space there or set "
                         f"data.data_dir to a bigger disk, then re-run ({_kept(part)})")


def _check_progress(url: str, part: Path, size: int, mark: tuple[float, int],
                    limits: _Limits) -> tuple[float, int]:
    """Deadline and minimum rate after each read; the new (time, size) mark of the rate window."""
    limits.check_time(url, part)
    now = time.monotonic()
    t0, s0 = mark
    if now - t0 < limits.window:
        return mark
    rate = (size - s0) / (now - t0)
    if rate < limits.min_rate:
        raise DownloadError(f"download of {url} is too slow: {rate:.0f} bytes/s over the last "
                            f"{now - t0:.0f} s, below data.download_min_rate={limits.min_rate:g}; "
                            f"{_kept(part)}, or try later")
    return now, size


def _unreachable(exc: BaseException | None, url: str) -> str | None:
    """'host (why)' when ``exc`` says the server could not be reached at all (no network)."""
    import socket

    reason = getattr(exc, "reason", exc)  # URLError wraps the socket error
    host = urlparse(url).netloc
    if isinstance(reason, socket.gaierror):
        return f"{host} (DNS lookup failed: {reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} (connection refused)"
    if isinstance(reason, OSError) and reason.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
        return f"{host} ({reason.strerror})"
    return None


def _http_error(e: urllib.error.HTTPError, url: str, part: Path, dest: Path,
                have: int) -> None:
    """Handle an HTTP error status: 416 may mean done, else ``_Retry`` or ``DownloadError``."""
    if e.code == 416 and have:
        m = _UNSATISFIED.match(e.headers.get("Content-Range", "") if e.headers else "")
        if m is None or int(m[1]) == have:
            return None  # the part is already complete; the checksum has the final say
        part.unlink()
        raise _Retry(f"server refused resume at byte {have} (file has {m[1]} bytes); "
                     "restarting from byte 0")
    if e.code >= 500 or e.code in _RETRY_HTTP:
        raise _Retry(f"HTTP {e.code} {e.reason}")
    what = _HTTP_WHAT.get(e.code, e.reason)
    raise DownloadError(f"download of {url} failed: {what} (HTTP {e.code}); check the URL, "
                        f"or download the file by hand and put it at {dest}")
