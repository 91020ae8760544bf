"""A real HTTP server on 127.0.0.1 for download tests (Range, dropped connections, errors)."""

from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _State:
    """What the fixture server serves, its switches, and the requests it saw."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        self.ignore_range = False
        self.drop_once: set[str] = set()   # paths whose first GET is cut at ~40%
        self.fail: dict[str, int] = {}     # path -> number of 503 answers still to give
        self.rate: dict[str, float] = {}   # path -> bytes/s the body trickles at
        self.no_length: set[str] = set()   # paths answered without Content-Length (body ends at close)
        self.endless: set[str] = set()     # paths whose body repeats until the client hangs up
        self.lock = threading.Lock()
        self.base = ""

    def url(self, path: str = "/data.zip") -> str:
        return self.base + path

    def ranges(self) -> list[str | None]:
        return [r for _, _, r in self.requests]


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _serve(self, head: bool):
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.command, self.path, rng))
                failing = state.fail.get(self.path, 0)
                if failing:
                    state.fail[self.path] = failing - 1
                drop = not head and self.path in state.drop_once
                state.drop_once.discard(self.path)
            if self.path not in state.files:
                return self.send_error(404)
            if failing:
                return self.send_error(503)
            data, ctype = state.files[self.path]
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and not state.ignore_range:
                start = int(m[1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                body = data[start:]
            else:
                self.send_response(200)
                body = data
            self.send_header("Content-Type", ctype)
            if self.path not in state.no_length and self.path not in state.endless:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            if self.path in state.endless or self.path in state.rate:
                return self._trickle(body, state.rate.get(self.path), self.path in state.endless)
            if drop:  # full Content-Length announced, ~40% sent, then the line goes dead
                self.wfile.write(body[: int(0.4 * len(body))])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _trickle(self, body: bytes, rate: float | None, endless: bool):
            """Send ``body`` in 64-byte pieces at ``rate`` bytes/s (None: at once), forever if
            ``endless``, until the client hangs up."""
            step = 64
            try:
                while True:
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i:i + step])
                        if rate:
                            self.wfile.flush()
                            time.sleep(step / rate)
                    if not endless:
                        return
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


@pytest.fixture
def http_server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")  # never route 127.0.0.1 through a proxy
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
