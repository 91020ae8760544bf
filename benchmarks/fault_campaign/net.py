"""Fault kinds 5 (download faults) and 11 (no network), against a real HTTP server on 127.0.0.1.

:class:`FaultServer` serves byte strings and misbehaves on request: it cuts the
line at a byte offset, answers 5xx bursts or 404, stalls past the client's read
timeout, serves an HTML page, ignores ``Range``, or throttles (for kills during a
download, :mod:`fault_campaign.workflow`). Each trial downloads with
:func:`notpipe.data.download.fetch` and checks that it either resumed to the exact
bytes or failed with one clear line, and that nothing unverified lies under the
final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .common import Kind, Tally, one_clear_line

REPO = Path(__file__).resolve().parents[2]


class FaultServer:
    """``with FaultServer() as s: s.files["/a.zip"] = data; s.url("/a.zip")``; switches below."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_at: dict[str, list[int]] = {}  # path -> byte offsets (of the file) to cut at, one per GET
        self.fail: dict[str, list[int]] = {}     # path -> statuses to answer first (503, 500, 404, ...)
        self.stall: dict[str, int] = {}          # path -> number of GETs that stall after the headers
        self.stall_s = 2.0
        self.ignore_range = False
        self.rate = 0.0                          # bytes/s (0: no throttle)
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> FaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                with srv.lock:
                    srv.requests.append((self.path, rng))
                    fails = srv.fail.get(self.path) or []
                    status = fails.pop(0) if fails else None
                    drops = srv.drop_at.get(self.path) or []
                    drop = drops.pop(0) if drops else None
                    stall = srv.stall.get(self.path, 0)
                    if stall:
                        srv.stall[self.path] = stall - 1
                if self.path not in srv.files:
                    return self.send_error(404)
                if status is not None:
                    return self.send_error(status)
                data, ctype = srv.files[self.path]
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                start = int(m[1]) if m and not srv.ignore_range else 0
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                end = len(data) if drop is None or drop <= start else drop
                try:
                    if stall:  # headers and a few bytes, then silence past the read timeout
                        self.wfile.write(data[start:start + 16])
                        self.wfile.flush()
                        time.sleep(srv.stall_s)
                        raise ConnectionResetError
                    step = max(1, int(srv.rate / 20)) if srv.rate else len(data)
                    for pos in range(start, end, step):
                        self.wfile.write(data[pos:min(pos + step, end)])
                        self.wfile.flush()
                        if srv.rate:
                            time.sleep(0.05)
                except (ConnectionError, BrokenPipeError):
                    pass
                if end < len(data) or stall:  # the line goes dead mid-body
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


def _payload(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _fetch(url: str, dest: Path, **kw) -> tuple[bool, str]:
    """``fetch``; (raised DownloadError?, message or '')."""
    from notpipe.data.download import DownloadError, fetch

    kw = {"retries": 3, "backoff": 0.01, "timeout": 0.5, "progress": False, **kw}
    try:
        fetch(url, dest, **kw)
    except DownloadError as err:
        return True, str(err)
    return False, ""


FAULTS = ("drop", "5xx_burst", "5xx_forever", "404", "stall", "html", "wrong_sha256", "ignore_range", "drop_twice")


def download_trial(srv: FaultServer, rng: random.Random, fault: str, work: Path) -> tuple[bool, bool, str]:
    """One download under ``fault``: (as documented, data lost, message)."""
    size = rng.randint(2_000, 400_000)
    data = _payload(rng, size)
    path = f"/{fault}-{rng.randrange(1 << 30)}.zip"
    srv.files[path] = (data, "application/zip")
    digest = hashlib.sha256(data).hexdigest()
    dest = work / path.strip("/")
    expect_ok = True
    sha = digest
    if fault in ("drop", "ignore_range", "drop_twice"):
        srv.drop_at[path] = [rng.randrange(1, size) for _ in range(2 if fault == "drop_twice" else 1)]
    elif fault == "5xx_burst":
        srv.fail[path] = [rng.choice([500, 502, 503, 504]) for _ in range(rng.randint(1, 3))]
    elif fault == "5xx_forever":
        srv.fail[path], expect_ok = [503] * 10, False
    elif fault == "404":
        srv.files.pop(path)
        expect_ok = False
    elif fault == "stall":
        srv.stall[path] = 1
    elif fault == "html":
        srv.files[path] = (b"<!DOCTYPE html><html><body>Quota exceeded</body></html>" + b" " * 100, "text/html")
        expect_ok = False
    elif fault == "wrong_sha256":
        sha, expect_ok = "0" * 64, False
    srv.ignore_range = fault == "ignore_range"
    try:
        failed, msg = _fetch(srv.url(path), dest, sha256=sha)
    finally:
        srv.ignore_range = False
    got = dest.read_bytes() if dest.exists() else None
    lost = got is not None and got != data  # something unverified under the final name
    if expect_ok:
        resumed = fault not in ("drop", "drop_twice") or any(r for p, r in srv.requests if p == path)
        ok = not failed and got == data and resumed and not dest.with_name(dest.name + ".part").exists()
        return ok, lost, msg or f"{fault}: resumed, {size} bytes verified"
    return failed and got is None and one_clear_line(msg), lost, msg


def run_download(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("download", "download faults (local HTTP server)")
    with FaultServer() as srv:
        srv.stall_s = 1.5
        for i in range(trials):
            fault = FAULTS[i % len(FAULTS)] if i < len(FAULTS) else rng.choice(FAULTS)
            ok, lost, msg = download_trial(srv, rng, fault, work)
            tally.add(ok, msg, lost=lost, what=fault)
        # the command line (rule data_download's script) shows the same one line, no traceback
        srv.files["/gone.zip"] = (b"x", "application/zip")
        srv.files.pop("/gone.zip")
        ok, msg = cli_one_line("data_download.py", srv.url("/gone.zip"), work / "cli" / "gone.zip")
        tally.add(ok, msg, what="404 via workflow/scripts/data_download.py")
    return tally


def cli_one_line(script: str, url: str, dest: Path, *extra: str) -> tuple[bool, str]:
    """Run a download stage script from the command line; (one clear 'error:' line?, its stderr)."""
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*"}
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / script), url, str(dest),
                           "--retries", "0", *extra], capture_output=True, text=True, timeout=120, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and " WARNING " not in ln]
    last = lines[-1] if lines else ""
    ok = proc.returncode != 0 and last.startswith("error: ") and "Traceback" not in proc.stderr
    return ok, last if ok else proc.stderr


def _closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: run in a child process: a resolver that fails as with no network (no DNS packet leaves)
_NO_DNS = """
import socket, runpy, sys
def fail(*a, **k):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = fail
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def offline_trial(kind: str, what: str, work: Path) -> tuple[bool, str]:
    """No network: ``kind`` refused | dns, for ``what`` data | weights, via the stage script."""
    from notpipe.evaluate.weights import LPIPS_URLS

    script = "data_download.py" if what == "data" else "weights_download.py"
    if what == "data":
        url = f"http://127.0.0.1:{_closed_port()}" + "/archive.zip" if kind == "refused" else \
            "http://data.notpipe.invalid/archive.zip"
    else:
        real = LPIPS_URLS["alex"]  # the real file name (hash prefix), served from nowhere
        url = (f"http://127.0.0.1:{_closed_port()}" + "/" + real.rsplit("/", 1)[1] if kind == "refused"
               else real.replace("https://", "http://"))
    dest = work / f"{kind}-{what}" / url.rsplit("/", 1)[1]
    if kind == "dns":
        env = {**os.environ, "no_proxy": "*"}
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(var, None)
        proc = subprocess.run([sys.executable, "-c", _NO_DNS, str(REPO / "workflow" / "scripts" / script), url,
                               str(dest), "--retries", "0"], capture_output=True, text=True, timeout=120, env=env)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and " WARNING " not in ln]
        last = lines[-1] if lines else ""
        ok = proc.returncode != 0 and last.startswith("error: ") and "Traceback" not in proc.stderr
        msg = last if ok else proc.stderr
    else:
        ok, msg = cli_one_line(script, url, dest)
    host = url.split("/")[2]
    # one line that names what could not be reached and how to work offline
    ok = ok and host in msg and "offline" in msg and not dest.exists()
    return ok, msg


def run_offline(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("offline", "no network (refused, DNS failure)")
    cases = [(k, w) for k in ("refused", "dns") for w in ("data", "weights")]
    for i in range(max(trials, 1)):
        kind, what = cases[i % len(cases)]
        ok, msg = offline_trial(kind, what, work)
        tally.add(ok, msg, what=f"{kind} ({what})")
    return tally


KINDS = [Kind("download", 5, "download faults (local HTTP server)", 18, run_download),
         Kind("offline", 11, "no network (refused, DNS failure)", 4, run_offline)]
