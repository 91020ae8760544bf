"""A data set folder shared by several processes (two clones, one data_dir) or two suites."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
from data_fixtures import encode, rgb, write_zip

from notpipe.data.datasets import resolve_datasets
from notpipe.data.locks import LockTimeout, build_conflict, held
from notpipe.data.prepare import PrepareError, prepare
from tests.snakemake_runner import run_snakemake


def spec(**over):
    return resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none", **over}})["x"]


@pytest.fixture
def source(tmp_path):
    write_zip(tmp_path / "x.zip", {f"imgs/{i:03d}.png": encode(rgb(i)) for i in range(40)})
    ref = prepare("x", spec(), 16, tmp_path / "ref", tmp_path, progress=False)
    return tmp_path, ref


def _same_arrays(a, b):
    for split in ("train", "test"):
        assert np.array_equal(np.load(a / f"{split}.npy"), np.load(b / f"{split}.npy"))


def test_prepare_waits_for_the_folder_and_publishes_nothing_meanwhile(source):
    tmp_path, ref = source
    out = tmp_path / "out"
    (out / ".tmp").mkdir(parents=True)  # what a killed build left: a buffer under the old shared name
    np.save(out / ".tmp" / "all.npy", np.zeros((3, 16, 16, 3), np.uint8))
    (out / ".tmp-dead").mkdir()
    result = {}
    with held(out / ".lock", "test"):  # another process is building this data set
        worker = threading.Thread(target=lambda: result.update(
            m=prepare("x", spec(), 16, out, tmp_path, progress=False, lock_wait=30)))
        worker.start()
        time.sleep(0.8)
        assert worker.is_alive()  # waiting, not building beside the other process
        assert not (out / "manifest.json").exists() and not (out / "train.npy").exists()
    worker.join(30)
    assert result["m"]["array_sha256"] == ref["array_sha256"]
    _same_arrays(out, tmp_path / "ref")
    assert not list(out.glob(".tmp*"))  # stale and own temporary folders are gone


def test_second_of_two_waiting_prepares_takes_the_finished_data_set(source, caplog):
    tmp_path, ref = source
    out, results, errors = tmp_path / "out", [], []

    def one():
        try:
            results.append(prepare("x", spec(), 16, out, tmp_path, progress=False, lock_wait=30))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    caplog.set_level(logging.INFO, logger="notpipe")
    with held(out / ".lock", "test"):  # both start while the folder is busy
        workers = [threading.Thread(target=one) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(0.5)
    for w in workers:
        w.join(30)
    assert not errors and len(results) == 2
    assert [r["array_sha256"] for r in results] == [ref["array_sha256"]] * 2
    assert sum("prepared meanwhile by another process" in r.getMessage() for r in caplog.records) == 1
    _same_arrays(out, tmp_path / "ref")


def test_wait_is_bounded(source):
    tmp_path, _ = source
    out = tmp_path / "out"
    with held(out / ".lock", "test"):
        with pytest.raises(LockTimeout) as exc:
            prepare("x", spec(), 16, out, tmp_path, progress=False, lock_wait=0.3)
    msg = str(exc.value)
    assert msg.startswith(f"data set folder {out} is still in use by process {os.getpid()} after 0.3 s "
                          "(data.lock_wait)") and "\n" not in msg
    assert not (out / "manifest.json").exists()


def test_a_killed_holder_frees_the_folder(source):
    tmp_path, ref = source
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from notpipe.data.locks import held\n"
                               "with held(sys.argv[1], 'x'):\n print('held', flush=True); time.sleep(60)",
                               str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        m = prepare("x", spec(), 16, out, tmp_path, progress=False, lock_wait=5)
    finally:
        holder.kill()
        holder.wait()
    assert m["array_sha256"] == ref["array_sha256"]


def test_two_suites_with_one_name_and_other_parameters(source):
    tmp_path, _ = source
    out = tmp_path / "out"
    m = prepare("x", spec(), 16, out, tmp_path, progress=False, suite="paper")
    assert m["suite"] == "paper" and m["spec"]["crop"] == "none"
    with pytest.raises(PrepareError) as exc:
        prepare("x", spec(crop="center"), 16, out, tmp_path, progress=False, suite="toy")
    msg = str(exc.value)
    assert "\n" not in msg and "suite 'paper'" in msg and "suite 'toy'" in msg
    assert "crop: 'none' vs 'center'" in msg and "another name" in msg
    assert json.loads((out / "manifest.json").read_text())["suite"] == "paper"  # left as it was
    assert build_conflict(out / "manifest.json", "x", spec(), "toy") is None  # same parameters: shared
    prepare("x", spec(crop="center"), 16, out, tmp_path, progress=False, suite="paper")  # its own change


def test_dry_run_refuses_the_second_suite(tmp_path):
    """Before any job (Snakemake would delete the other suite's copy first)."""
    shapes = {"shapes_circles": {"n": 40}}
    ds = resolve_datasets(shapes)["shapes_circles"]
    prepare("shapes_circles", ds, 16, tmp_path / "results/data/shapes_circles_16", tmp_path / "raw",
            progress=False, suite="one")
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump({"suite": "two", "data": {"build": ["shapes_circles"], "image_size": 16},
                                   "datasets": {"shapes_circles": {"n": 50}}}))
    proc = run_snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data set 'shapes_circles'" in out and "suite 'one'" in out and "n: 40 vs 50" in out


_FULL_DISK = """
import resource, signal, sys
from notpipe.data.prepare import PrepareError, prepare
from notpipe.data.datasets import resolve_datasets
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
spec = resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none"}})["x"]
try:
    prepare("x", spec, 16, sys.argv[1], sys.argv[2], progress=False)
except PrepareError as e:
    print(e)
"""


def test_full_disk_for_the_buffer_is_one_line(source):
    """The image buffer is reserved up front: no room is one line, not a SIGBUS later."""
    tmp_path, _ = source
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "out"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    msg = proc.stdout.strip()
    assert msg.startswith(f"cannot reserve {40 * 16 * 16 * 3} bytes for {tmp_path / 'out'}/.tmp-") and "File too large" in msg and "\n" not in msg
    assert not (tmp_path / "out" / "manifest.json").exists() and not list((tmp_path / "out").glob(".tmp*"))
