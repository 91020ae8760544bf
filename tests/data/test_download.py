"""notpipe.data.download against a real HTTP server on 127.0.0.1 (no mocks, no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from notpipe.config import validate_config
from notpipe.data.datasets import resolve_datasets, sources
from notpipe.data.download import (
    DownloadError,
    config_options,
    fetch,
    max_bytes_for,
    resolve_local,
    sha256_file,
)
from notpipe.data.locks import LockTimeout, held
from notpipe.paths import download_relpath

FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False, "chunk_size": 16 << 10}
HTML = b"<!DOCTYPE html><html>quota exceeded</html>"


def _make_archive() -> bytes:
    rng = random.Random(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"img_{i}.bin", rng.randbytes(100_000))
    return buf.getvalue()


ARCHIVE = _make_archive()
SHA = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
def server(http_server):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    return http_server


def _range_start(header: str | None) -> int:
    m = re.fullmatch(r"bytes=(\d+)-", header or "")
    assert m, f"expected a 'Range: bytes=N-' header, got {header!r}"
    return int(m[1])


def test_plain_download_records_checksum(server, tmp_path):
    dest, sums = tmp_path / "sub" / "data.zip", tmp_path / "checksums.json"
    out = fetch(server.url(), dest, checksums=sums, **{**FAST, "progress": True})
    assert out == dest
    assert dest.read_bytes() == ARCHIVE
    assert sha256_file(dest) == SHA
    assert sums.read_text() == json.dumps({"data.zip": SHA}, indent=2, sort_keys=True) + "\n"
    assert not (tmp_path / "sub" / "data.zip.part").exists()
    assert server.requests == [("GET", "/data.zip", None)]


def test_dropped_connection_resumes(server, tmp_path):
    server.drop_once.add("/data.zip")
    dest = tmp_path / "data.zip"
    fetch(server.url(), dest, sha256=SHA, checksums=tmp_path / "c.json", **FAST)
    assert dest.read_bytes() == ARCHIVE
    assert sha256_file(dest) == SHA
    ranges = server.ranges()
    assert len(ranges) == 2 and ranges[0] is None
    assert 0 < _range_start(ranges[1]) < len(ARCHIVE)  # resumed, not restarted


def test_existing_part_file_resumes(server, tmp_path):
    dest = tmp_path / "data.zip"
    half = len(ARCHIVE) // 2
    (tmp_path / "data.zip.part").write_bytes(ARCHIVE[:half])
    fetch(server.url(), dest, sha256=SHA, **FAST)
    assert server.ranges() == [f"bytes={half}-"]
    assert dest.read_bytes() == ARCHIVE
    assert not (tmp_path / "data.zip.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(b"garbage!" * 1000)
    fetch(server.url(), dest, sha256=SHA, **FAST)
    assert server.ranges() == ["bytes=8000-"]
    assert dest.read_bytes() == ARCHIVE


def test_complete_part_and_416_counts_as_done(server, tmp_path):
    dest = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(ARCHIVE)
    fetch(server.url(), dest, sha256=SHA, **FAST)
    assert server.ranges() == [f"bytes={len(ARCHIVE)}-"]
    assert dest.read_bytes() == ARCHIVE


def test_wrong_sha256_keeps_file_aside(server, tmp_path):
    dest = tmp_path / "data.zip"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as exc:
        fetch(server.url(), dest, sha256=wrong, **FAST)
    msg = str(exc.value)
    bad = tmp_path / "data.zip.bad"
    assert wrong in msg and SHA in msg and str(bad) in msg and server.url() in msg
    assert bad.read_bytes() == ARCHIVE
    assert not dest.exists() and not (tmp_path / "data.zip.part").exists()


@pytest.mark.parametrize("ctype, body", [
    ("text/html; charset=utf-8", HTML),
    ("text/html", b"<body>Too many users have viewed or downloaded this file</body>"),
    ("application/octet-stream", b" \n" + HTML.replace(b"DOCTYPE", b"doctype")),  # sniffed
])
def test_html_page_instead_of_archive(server, tmp_path, ctype, body):
    server.files["/data.zip"] = (body, ctype)
    dest, sums = tmp_path / "data.zip", tmp_path / "c.json"
    with pytest.raises(DownloadError, match="HTML web page") as exc:
        fetch(server.url(), dest, checksums=sums, **FAST)
    bad = tmp_path / "data.zip.bad"
    assert str(bad) in str(exc.value)
    assert bad.read_bytes() == body
    assert not dest.exists() and not sums.exists()  # a web page's sha is never recorded


def test_recorded_checksum_mismatch(server, tmp_path):
    dest, sums = tmp_path / "data.zip", tmp_path / "checksums.json"
    recorded = "f" * 64
    sums.write_text(json.dumps({"data.zip": recorded}))
    with pytest.raises(DownloadError) as exc:
        fetch(server.url(), dest, checksums=sums, **FAST)
    msg = str(exc.value)
    assert recorded in msg and SHA in msg and str(sums) in msg
    assert (tmp_path / "data.zip.bad").read_bytes() == ARCHIVE
    assert not dest.exists()
    assert json.loads(sums.read_text()) == {"data.zip": recorded}


def test_offline(server, tmp_path):
    dest, sums = tmp_path / "data.zip", tmp_path / "c.json"
    with pytest.raises(DownloadError) as exc:
        fetch(server.url(), dest, offline=True, **FAST)
    msg = str(exc.value)
    assert server.url() in msg and str(dest) in msg and "\n" not in msg
    dest.write_bytes(ARCHIVE)
    assert fetch(server.url(), dest, sha256=SHA, checksums=sums, offline=True, **FAST) == dest
    assert fetch(server.url(), dest, sha256=SHA, checksums=sums, **FAST) == dest
    assert json.loads(sums.read_text()) == {"data.zip": SHA}
    assert server.requests == []


def test_existing_dest_is_verified(server, tmp_path):
    dest, sums = tmp_path / "data.zip", tmp_path / "c.json"
    sums.write_text(json.dumps({"data.zip": SHA}))
    dest.write_bytes(ARCHIVE[:-1] + b"X")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(server.url(), dest, checksums=sums, **FAST)
    assert (tmp_path / "data.zip.bad").exists() and not dest.exists()
    assert server.requests == []


def test_404_fails_at_once(server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"not found \(HTTP 404\)") as exc:
        fetch(server.url("/missing.zip"), tmp_path / "m.zip", retries=1, **{**FAST, "backoff": 2.0})
    assert time.monotonic() - t0 < 1.5  # no back-off sleep
    assert server.url("/missing.zip") in str(exc.value)
    assert len(server.requests) == 1


def test_5xx_is_retried_then_gives_up(server, tmp_path):
    server.fail["/data.zip"] = 2
    dest = tmp_path / "data.zip"
    fetch(server.url(), dest, sha256=SHA, retries=2, **FAST)
    assert dest.read_bytes() == ARCHIVE and len(server.requests) == 3

    server.requests.clear()
    server.fail["/data.zip"] = 10
    with pytest.raises(DownloadError, match="failed 3 times in a row") as exc:
        fetch(server.url(), tmp_path / "other.zip", retries=2, **FAST)
    assert "503" in str(exc.value) and len(server.requests) == 3


def test_non_http_url_rejected(tmp_path):
    with pytest.raises(DownloadError, match="resolve_local"):
        fetch("ftp://example.invalid/x.zip", tmp_path / "x.zip", **FAST)


def test_resolve_local(tmp_path):
    missing = tmp_path / "nope" / "celeba.zip"
    with pytest.raises(DownloadError) as exc:
        resolve_local(missing, "CelebA archive")
    msg = str(exc.value)
    assert msg.startswith(f"CelebA archive not found at {missing}") and "\n" not in msg
    assert "README" in msg
    present = tmp_path / "here.zip"
    present.write_bytes(b"PK")
    assert resolve_local(present, "x") == present
    assert resolve_local(present.as_uri(), "x") == present


# ----------------------------------------------------------------- hostile and careless inputs
def test_same_file_name_urls_get_their_own_downloads(http_server, tmp_path):
    """``.../a/uc?id=AAA`` and ``.../b/uc?id=BBB`` (Google Drive style) are two files, and the
    checksums file keeps one entry per URL."""
    other = b"PK" + bytes(range(256)) * 100
    http_server.files["/a/uc?id=AAA"] = (ARCHIVE, "application/zip")
    http_server.files["/b/uc?id=BBB"] = (other, "application/zip")
    raw, sums = tmp_path / "raw", tmp_path / "checksums.json"
    specs = {"one": {"url": http_server.url("/a/uc?id=AAA")}, "two": {"url": http_server.url("/b/uc?id=BBB")}}
    got = {}
    for name, spec in specs.items():
        [src] = sources(spec, raw)
        got[name] = fetch(src["url"], src["path"], checksums=sums, checksum_key=src["url"], **FAST)
    assert got["one"] != got["two"] and got["one"].name == got["two"].name == "uc"
    assert got["one"].read_bytes() == ARCHIVE and got["two"].read_bytes() == other
    assert json.loads(sums.read_text()) == {specs["one"]["url"]: SHA,
                                            specs["two"]["url"]: hashlib.sha256(other).hexdigest()}
    [again] = sources({"url": specs["one"]["url"]}, raw)  # one URL used twice: one download
    assert again["path"] == got["one"]


@pytest.mark.parametrize("tail", ["/..", "/a/..", "/", "/%2e%2e", "/a/.hidden"])
def test_url_never_names_a_folder(http_server, tmp_path, tail):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    raw = tmp_path / "data" / "raw"
    [src] = sources({"url": http_server.base + tail}, raw)
    path = src["path"]
    assert path.parent.parent == raw and not path.name.startswith(".") and path.name not in ("", "..")
    assert download_relpath(http_server.base + tail) == str(path.relative_to(raw))


def test_slow_server_stopped_by_the_deadline(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    http_server.rate["/data.zip"] = 2000.0  # 300 KB at 2 KB/s: 2.5 minutes
    dest = tmp_path / "data.zip"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as exc:
        fetch(http_server.url(), dest, deadline=1.0, min_rate=0, **FAST)
    assert time.monotonic() - t0 < 3.0
    msg = str(exc.value)
    assert "did not finish within 1 s (data.download_deadline)" in msg and "\n" not in msg
    part = tmp_path / "data.zip.part"
    assert 0 < part.stat().st_size < len(ARCHIVE) and str(part) in msg and "resume" in msg
    assert not dest.exists()


def test_trickle_below_the_minimum_rate(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    http_server.rate["/data.zip"] = 1000.0
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"too slow: \d+ bytes/s .* below data.download_min_rate=10000"):
        fetch(http_server.url(), tmp_path / "data.zip", min_rate=10_000, rate_window=0.5, **FAST)
    assert time.monotonic() - t0 < 3.0
    assert (tmp_path / "data.zip.part").exists()  # kept: a re-run resumes


def test_endless_body_without_length_stopped_at_the_cap(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    http_server.endless.add("/data.zip")
    dest = tmp_path / "data.zip"
    with pytest.raises(DownloadError) as exc:
        fetch(http_server.url(), dest, max_bytes=1_000_000, **FAST)
    msg = str(exc.value)
    assert "sent more than 1000000 bytes" in msg and "nothing was kept" in msg and "\n" not in msg
    assert not dest.exists() and not (tmp_path / "data.zip.part").exists()


def test_body_without_length_within_the_cap(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    http_server.no_length.add("/data.zip")
    dest = fetch(http_server.url(), tmp_path / "data.zip", sha256=SHA, max_bytes=len(ARCHIVE), **FAST)
    assert dest.read_bytes() == ARCHIVE


def test_announced_size_above_the_cap_refused_before_reading(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    with pytest.raises(DownloadError, match=f"announces {len(ARCHIVE)} bytes, above its cap of 100000 bytes"):
        fetch(http_server.url(), tmp_path / "data.zip", max_bytes=100_000, **FAST)
    assert not (tmp_path / "data.zip.part").exists()


def test_cap_from_size_bytes_or_the_configured_maximum():
    cfg = validate_config({"data": {"download_max_bytes": 5e6},
                           "datasets": {"mine": {"url": "https://h/m.zip", "format": "image_folder_zip"}}})
    shoes = resolve_datasets()["shoes"]
    opts = config_options(cfg, shoes["url"])
    assert opts["max_bytes"] == int(shoes["size_bytes"] * 1.25 + 64 * 2**20)
    assert config_options(cfg, "https://h/m.zip")["max_bytes"] == 5_000_000
    assert opts["deadline"] == 86400 and opts["min_rate"] == 10240 and opts["lock_wait"] == 7200
    assert max_bytes_for(None) == 50 * 2**30 and max_bytes_for(0, 10) == 10


_FULL_DISK = """
import resource, signal, sys
from notpipe.data.download import DownloadError, fetch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
try:
    fetch(sys.argv[1], sys.argv[2], backoff=0.01, timeout=5.0, progress=False, chunk_size=16384)
except DownloadError as e:
    print(e)
"""


def test_full_disk_is_one_line_naming_the_part_file(http_server, tmp_path):
    """A write that fails for want of room (here the file size limit, EFBIG) is one line."""
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    dest = tmp_path / "data.zip"
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, http_server.url(), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    msg = proc.stdout.strip()
    assert msg.startswith(f"cannot write {dest}.part (download of {http_server.url()}): File too large;")
    assert "\n" not in msg and "re-run to resume" in msg and not dest.exists()


def test_only_regular_files_as_local_sources(tmp_path):
    fifo = tmp_path / "fifo.zip"
    os.mkfifo(fifo)
    for special in (Path("/dev/zero"), fifo):
        with pytest.raises(DownloadError, match="not a regular file") as exc:
            resolve_local(special, "archive")
        assert "\n" not in str(exc.value)
    with pytest.raises(DownloadError, match="is a folder"):
        resolve_local(tmp_path, "archive")
    assert resolve_local(tmp_path, "image folder", folder_ok=True) == tmp_path


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_download_target_that_is_not_a_regular_file(http_server, tmp_path, kind):
    """A FIFO, a folder or a device under the download's name is refused, never read."""
    dest = tmp_path / "data.zip"
    if kind == "fifo":
        os.mkfifo(dest)
    elif kind == "folder":
        dest.mkdir()
    else:
        dest.symlink_to("/dev/zero")
    with pytest.raises(DownloadError, match=f"download target {dest} is ") as exc:
        fetch(http_server.url(), dest, offline=True, **FAST)
    assert "move it away" in str(exc.value) and http_server.requests == []


def test_two_downloads_of_one_file_take_turns(http_server, tmp_path):
    """Two clones sharing a data_dir: the second waits for the first and finds the file done."""
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    http_server.rate["/data.zip"] = 600_000.0  # about 0.5 s: both start while the first runs
    dest, sums = tmp_path / "data.zip", tmp_path / "c.json"
    errors: list[BaseException] = []

    def one():
        try:
            fetch(http_server.url(), dest, checksums=sums, **FAST)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and dest.read_bytes() == ARCHIVE
    assert [p for _, p, _ in http_server.requests] == ["/data.zip"]  # one download, not two


def test_second_download_waits_bounded(http_server, tmp_path):
    http_server.files["/data.zip"] = (ARCHIVE, "application/zip")
    dest = tmp_path / "data.zip"
    with held(tmp_path / "data.zip.lock", "test"):
        with pytest.raises(LockTimeout) as exc:
            fetch(http_server.url(), dest, lock_wait=0.3, **FAST)
    msg = str(exc.value)
    assert msg.startswith(f"download {dest} is still in use by process {os.getpid()} after 0.3 s (data.lock_wait)")
    assert http_server.requests == []
