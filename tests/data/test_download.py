"""notpipe.data.download against a real HTTP server on 127.0.0.1 (no mocks, no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import time
import zipfile

import pytest

from notpipe.data.download import DownloadError, fetch, resolve_local, sha256_file

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
