"""Published MD5s of downloads (KMNIST's, from torchvision): checked before the file is used, a
mismatch set aside with one line; against a real HTTP server on 127.0.0.1 (no mocks, no internet)."""

from __future__ import annotations

import hashlib
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from notpipe.config import validate_config
from notpipe.data.datasets import DEFAULT_DATASETS, resolve_datasets, sources
from notpipe.data.download import DownloadError, config_options, fetch, sha256_file
from notpipe.data.prepare import prepare

from test_idx import write_idx

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "workflow" / "scripts" / "data_download.py"
FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False, "chunk_size": 16 << 10}
BODY = bytes(range(256)) * 400
MD5 = hashlib.md5(BODY).hexdigest()
WRONG = "0" * 32


@pytest.fixture
def server(http_server):
    http_server.files["/data.zip"] = (BODY, "application/zip")
    return http_server


def test_right_md5_passes_and_sha256_is_still_recorded(server, tmp_path):
    dest, sums = tmp_path / "data.zip", tmp_path / "checksums.json"
    fetch(server.url(), dest, md5=MD5.upper(), checksums=sums, **FAST)
    assert dest.read_bytes() == BODY and not (tmp_path / "data.zip.bad").exists()
    assert json.loads(sums.read_text()) == {"data.zip": sha256_file(dest)}  # trust on first use beside it


def test_wrong_md5_refused_in_one_line_and_set_aside(server, tmp_path):
    dest, sums = tmp_path / "data.zip", tmp_path / "checksums.json"
    with pytest.raises(DownloadError) as exc:
        fetch(server.url(), dest, md5=WRONG, checksums=sums, **FAST)
    msg, bad = str(exc.value), tmp_path / "data.zip.bad"
    assert msg.startswith(f"md5 mismatch for {dest} from {server.url()}: expected {WRONG}, got {MD5};")
    assert "\n" not in msg and str(bad) in msg and "re-run" in msg
    assert bad.read_bytes() == BODY and not dest.exists() and not (tmp_path / "data.zip.part").exists()
    assert not sums.exists()  # a refused file's sha256 is never recorded


def test_file_already_in_place_is_checked_offline(tmp_path):
    dest = tmp_path / "data.zip"
    dest.write_bytes(BODY)
    assert fetch("http://127.0.0.1:9/data.zip", dest, md5=MD5, offline=True, **FAST) == dest
    with pytest.raises(DownloadError, match=f"^md5 mismatch for {dest} .*expected {WRONG}, got {MD5};"):
        fetch("http://127.0.0.1:9/data.zip", dest, md5=WRONG, offline=True, **FAST)
    assert (tmp_path / "data.zip.bad").read_bytes() == BODY and not dest.exists()


def test_kmnist_pins_torchvision_md5s_of_its_image_files():
    tv = pytest.importorskip("torchvision.datasets")
    published = dict(tv.KMNIST.resources)
    spec = resolve_datasets()["kmnist"]
    pinned = {Path(s["url"]).name: s["md5"] for s in sources(spec, "raw")}
    assert pinned == {name: published[name] for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")}
    assert spec.get("sha256") is None  # its sha256 is recorded on first use
    moved = resolve_datasets({"kmnist": {"url": ["https://h/a.gz", "https://h/b.gz"]}})["kmnist"]
    assert "md5" not in moved  # a new source drops the old source's pins


def test_config_gives_the_script_the_md5_of_its_url(server, tmp_path):
    """The download job's keywords carry the data set's MD5 (not a Snakemake param: a finished
    download is not fetched again when a pin is added); the script passes it to fetch."""
    kmnist = DEFAULT_DATASETS["kmnist"]
    assert config_options(validate_config({}), kmnist["url"][1])["md5"] == kmnist["md5"][1]
    assert config_options(validate_config({}), DEFAULT_DATASETS["shoes"]["url"])["md5"] is None
    cfg = validate_config({"datasets": {"mine": {"url": server.url(), "format": "image_folder_zip", "md5": WRONG}}})
    main = runpy.run_path(str(SCRIPT), run_name="data_download")["main"]
    dest = tmp_path / "raw" / "data.zip"
    with pytest.raises(DownloadError, match=f"md5 mismatch .*expected {WRONG}"):
        main(server.url(), str(dest), checksums=str(tmp_path / "c.json"), progress=False,
             **config_options(cfg, server.url()))
    assert (tmp_path / "raw" / "data.zip.bad").read_bytes() == BODY
    two = validate_config({"datasets": {"a": {"url": server.url(), "format": "image_folder_zip", "md5": WRONG},
                                        "b": {"url": server.url(), "format": "image_folder_zip", "md5": MD5}}})
    with pytest.raises(DownloadError, match="a.md5 0+ and b.md5 .* pin different MD5s"):
        config_options(two, server.url())


def test_script_command_line_md5_is_one_line(server, tmp_path):
    dest = tmp_path / "data.zip"
    proc = subprocess.run([sys.executable, str(SCRIPT), server.url(), str(dest), "--md5", WRONG],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if "md5 mismatch" in ln]
    assert len(lines) == 1 and f"expected {WRONG}, got {MD5}" in lines[0]
    assert (tmp_path / "data.zip.bad").read_bytes() == BODY


def test_prepare_checks_the_md5_before_reading(tmp_path):
    """A download already on disk (fetched before the pin, or damaged since) is checked by the data
    stage: the wrong file is set aside with one line naming the key, so a re-run downloads it again."""
    rng = np.random.default_rng(0)
    urls = ["https://h.invalid/k/train-images-idx3-ubyte.gz", "https://h.invalid/k/t10k-images-idx3-ubyte.gz"]
    raw = tmp_path / "raw"
    spec = {"url": urls, "format": "idx", "split": "files", "crop": "none"}
    paths = [s["path"] for s in sources(spec, raw)]
    for p, n in zip(paths, (5, 3)):
        p.parent.mkdir(parents=True)
        write_idx(p, rng.integers(0, 256, (n, 6, 6), dtype=np.uint8))
    md5s = [hashlib.md5(p.read_bytes()).hexdigest() for p in paths]
    ok = resolve_datasets({"k": {**spec, "md5": md5s}})["k"]
    assert prepare("k", ok, 8, tmp_path / "ok", raw, progress=False)["n_test"] == 3
    bad = resolve_datasets({"k": {**spec, "md5": [md5s[0], WRONG]}})["k"]
    with pytest.raises(DownloadError) as exc:
        prepare("k", bad, 8, tmp_path / "bad", raw, progress=False)
    msg = str(exc.value)
    assert msg.startswith(f"md5 mismatch for {paths[1]} from {urls[1]}: expected (datasets.k.md5) {WRONG}, "
                          f"got {md5s[1]};") and "\n" not in msg
    assert not paths[1].exists() and Path(f"{paths[1]}.bad").is_file()
    assert not (tmp_path / "bad" / "manifest.json").exists()
