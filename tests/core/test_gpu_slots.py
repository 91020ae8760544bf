"""GPU slot claims (notpipe.core.gpu_slots): CPU only, fake device lists, a tmp lock dir."""

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from notpipe.core import gpu_slots
from notpipe.core.gpu_slots import claim, claim_for_job, lock_file, visible_devices

SRC = str(Path(gpu_slots.__file__).resolve().parents[2])

# one competing job: wait for the go file, claim, record (slot, start, end) while holding
WORKER = """
import os, random, sys, time
from pathlib import Path
from notpipe.core.gpu_slots import claim
lock_dir, devices, n, go, out, seed = sys.argv[1:]
Path(f"{go}.ready{seed}").touch()
while not Path(go).exists():
    time.sleep(0.005)
random.seed(int(seed))
waits = []
c = claim(int(n), devices=devices.split(","), lock_dir=lock_dir, poll_s=0.02, timeout_s=30, log=waits.append)
t0 = time.time(); time.sleep(random.uniform(0.05, 0.15)); t1 = time.time()
with open(out, "a") as fh:
    fh.write("".join(f"{e} {t0!r} {t1!r} {len(waits)}\\n" for e in c.entries))
c.release()
"""

# a holder: claim, write the ready file, sleep until killed
HOLDER = """
import sys, time
from pathlib import Path
from notpipe.core.gpu_slots import claim
lock_dir, devices, ready = sys.argv[1:]
c = claim(len(devices.split(",")), devices=devices.split(","), lock_dir=lock_dir, timeout_s=10)
Path(ready).write_text(" ".join(c.entries))
time.sleep(60)
"""


def _python(code: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env)


@pytest.fixture
def holder(tmp_path):
    """Start a child holding the given slots; yields (proc, lock_dir); kills it afterwards."""
    procs = []

    def start(devices: list[str]) -> subprocess.Popen:
        ready = tmp_path / f"ready{len(procs)}"
        p = _python(HOLDER, tmp_path / "locks", ",".join(devices), ready)
        procs.append(p)
        t0 = time.monotonic()
        while not ready.exists():
            assert p.poll() is None, "holder died"
            assert time.monotonic() - t0 < 10, "holder never got ready"
            time.sleep(0.01)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.mark.parametrize("procs,n,slots", [(6, 1, 2), (4, 2, 3)])
def test_competing_jobs_never_share_a_slot(tmp_path, procs, n, slots):
    go, out = tmp_path / "go", tmp_path / "intervals.txt"
    devices = ",".join(str(i) for i in range(slots))
    jobs = [_python(WORKER, tmp_path / "locks", devices, n, go, out, seed) for seed in range(procs)]
    t0 = time.monotonic()
    while len(list(tmp_path.glob("go.ready*"))) < procs:  # all started: they really compete
        assert time.monotonic() - t0 < 20 and all(p.poll() is None for p in jobs)
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=30) for p in jobs] == [0] * procs
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len(rows) == procs * n  # all jobs finished, each with n slots
    by_slot = defaultdict(list)
    for slot, t0, t1, _ in rows:
        by_slot[slot].append((float(t0), float(t1)))
    for iv in by_slot.values():
        iv.sort()
        assert all(b[0] >= a[1] for a, b in zip(iv, iv[1:])), iv  # no overlap on a slot
    assert any(int(w) for *_, w in rows)  # jobs did wait for each other


def test_sigkilled_holder_frees_its_slot(tmp_path, holder):
    p = holder(["0"])
    with pytest.raises(TimeoutError):  # really held
        claim(devices=["0"], lock_dir=tmp_path / "locks", timeout_s=0.1, poll_s=0.05, log=lambda m: None)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    t0 = time.monotonic()
    with claim(devices=["0"], lock_dir=tmp_path / "locks", timeout_s=5, poll_s=0.05) as c:
        assert c.entries == ["0"] and c.indices == [0]
    assert time.monotonic() - t0 < 2


def test_waiting_logs_holder_and_times_out(tmp_path, holder):
    p = holder(["0"])
    logs = []
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="no 1 free GPU slot"):
        claim(devices=["0"], lock_dir=tmp_path / "locks", timeout_s=0.5, poll_s=0.1, log=logs.append)
    assert 0.4 < time.monotonic() - t0 < 3
    assert len(logs) == 1  # logged once, not every poll
    assert logs[0].startswith("waiting for a free GPU slot: held by") and f"pid {p.pid} " in logs[0]


def test_all_or_nothing_holds_nothing_while_waiting(tmp_path, holder):
    p = holder(["0"])
    waiting, result = threading.Event(), {}

    def want_two():
        result["c"] = claim(2, devices=["0", "1"], lock_dir=tmp_path / "locks", poll_s=0.3,
                            timeout_s=10, log=lambda m: waiting.set())

    t = threading.Thread(target=want_two)
    t.start()
    assert waiting.wait(5)
    with open(lock_file(tmp_path / "locks", "1"), "a") as fh:  # slot 1 is free meanwhile
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fh, fcntl.LOCK_UN)
    os.kill(p.pid, signal.SIGKILL)
    t.join(10)
    assert result["c"].entries == ["0", "1"] and result["c"].indices == [0, 1]
    result["c"].release()


def test_no_gpu_claims_nothing(tmp_path, monkeypatch):
    locks = tmp_path / "locks"
    assert claim_for_job(0, devices=["0", "1"], lock_dir=locks) is None
    assert claim_for_job(1, devices=[], lock_dir=locks) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_devices() == []
    assert claim_for_job(1, lock_dir=locks) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_devices() == []
    assert not locks.exists()


def test_visible_devices_sources(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_devices(count=lambda: 3) == ["0", "1", "2"]
    assert visible_devices(["5"], count=lambda: 3) == ["5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_devices(count=lambda: 8) == ["2", "3"]


def test_uuid_entries_map_to_indices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,MIG-def/1/2,7")
    monkeypatch.setenv("NOTPIPE_GPU_LOCK_DIR", str(tmp_path / "locks"))
    logs = []
    a = claim_for_job(1, log=logs.append)
    b = claim(2)  # the same process holds slot 0 on another descriptor: it is skipped
    assert (a.entries, a.indices) == (["GPU-abc"], [0])
    assert (b.entries, b.indices) == (["MIG-def/1/2", "7"], [1, 2])
    assert logs == ["claimed GPU slot(s) GPU-abc (cuda:0)"]
    names = sorted(f.name for f in (tmp_path / "locks").iterdir())
    assert names == ["gpu-7.lock", "gpu-GPU-abc.lock", "gpu-MIG-def_1_2.lock"]
    assert f"pid {os.getpid()} " in lock_file(tmp_path / "locks", "GPU-abc").read_text()
    assert (tmp_path / "locks").stat().st_mode & 0o7777 == 0o1777
    assert lock_file(tmp_path / "locks", "7").stat().st_mode & 0o777 == 0o666
    with pytest.raises(ValueError, match="already holds"):
        claim(1)
    a.release(), b.release()
    assert a not in gpu_slots._REGISTRY and lock_file(tmp_path / "locks", "7").read_text() == ""


def test_too_many_slots_raises(tmp_path):
    with pytest.raises(ValueError, match=r"cannot claim 3 GPU slot\(s\): 2 device\(s\)"):
        claim(3, devices=["0", "1"], lock_dir=tmp_path)
    with pytest.raises(ValueError, match="3 GPU"):
        claim_for_job(3, devices=["0", "1"], lock_dir=tmp_path)
