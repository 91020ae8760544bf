"""Fault kinds through real Snakemake runs: 2 (SIGKILL of the data stage), 9 (two concurrent
invocations), 10 (concurrent GPU-slot claims), and the helpers of kind 1 (SIGKILL of training,
:mod:`fault_campaign.train`).

Every run is ``python -m snakemake --cores 1`` on a tiny config in a temporary
folder; a kill sends SIGKILL to Snakemake's whole process group (Snakemake and its
job), then the same command is run again. The result is compared with an
uninterrupted run: bit-identical T and f weights, byte-identical data arrays.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .common import Kind, Tally, one_clear_line

REPO = Path(__file__).resolve().parents[2]
TOY_EXP = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "strong"},
           "steps": 400, "batch": 64, "k_t": 5, "log_every": 10, "checkpoint_every": 20,
           "model": {"hidden_t": [32, 32], "hidden_f": [32, 32]}}
MODEL = "results/main/toy/g/model.pt"


def smk_cmd(work: Path, *targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1",
            "--resources", "gpu=0", "--configfile", str(work / "c.yaml"), "--directory", str(work), *targets]


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "no_proxy": "*", "NO_PROXY": "*"}
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


def start(work: Path, *targets: str) -> subprocess.Popen:
    return subprocess.Popen(smk_cmd(work, *targets), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), start_new_session=True)


def run(work: Path, *targets: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(work, *targets), cwd=work, capture_output=True, text=True, env=_env(),
                          timeout=timeout)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def job_pids(pgid: int, needle: str) -> list[int]:
    """Processes of Snakemake's group whose command line holds ``needle`` (the job's script)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == pgid:
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if needle in (proc / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def wait_job(p: subprocess.Popen, needle: str, timeout: float = 120) -> float | None:
    """Wait until the job's process runs; the time it appeared (None: Snakemake ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if job_pids(p.pid, needle):
            return time.monotonic()
        time.sleep(0.02)
    return None


def unlock(work: Path) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(work, "--unlock"), cwd=work, capture_output=True, text=True, env=_env())


def setup(work: Path, cfg: dict) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    return work


def _same(a: dict, b: dict) -> bool:
    import torch

    return all(a[m].keys() == b[m].keys() and all(torch.equal(a[m][k], b[m][k]) for k in a[m]) for m in a)


def _all_load(folder: Path) -> list[str]:
    """Files under their final names (.pt) that do not load: half-written files."""
    from notpipe.core import checkpoint as ckpt

    bad = []
    for p in folder.rglob("*.pt"):
        if p.name.startswith("."):
            continue
        try:
            ckpt.load(p)
        except Exception as exc:
            bad.append(f"{p.name}: {type(exc).__name__}")
    return bad


def _tail(proc) -> str:
    out = proc.stdout if isinstance(proc.stdout, str) else ""
    return (out + (proc.stderr or ""))[-1500:]


# ------------------------------------------------------------------ 2: SIGKILL of the data stage
def _archive(n: int = 400) -> bytes:  # ~2.8 MB: a few 1-MiB download chunks
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(img, format="PNG")
            zf.writestr(f"imgs/{i:04d}.png", img.getvalue())
    return buf.getvalue()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npy"))}


def run_kill_data(rng: random.Random, trials: int, work: Path) -> Tally:
    from .net import FaultServer

    tally = Tally("kill_data", "SIGKILL of the data stage (download, prepare)")
    data = _archive()
    with FaultServer() as srv:
        srv.files["/x.zip"] = (data, "application/zip")
        srv.rate = len(data) / 6.0  # the download takes about 6 s
        cfg = {"data": {"offline": False, "build": ["x"], "image_size": 16, "threads": 1, "retries": 2},
               "datasets": {"x": {"url": srv.url("/x.zip"), "format": "image_folder_zip", "crop": "none",
                                  "sha256": hashlib.sha256(data).hexdigest()}},
               "report": {"build": False}}
        target = "results/data/x_16/manifest.json"
        ref_dir = setup(work / "reference", cfg)
        p = start(ref_dir, target)
        appeared = wait_job(p, "data_download")
        p.communicate(timeout=600)
        span = time.monotonic() - (appeared or time.monotonic())
        if p.returncode or appeared is None:
            tally.add(False, "reference run failed", what="reference")
            return tally
        ref = _digests(ref_dir / "results/data/x_16")
        for i in range(trials):
            d = setup(work / f"k{i}", cfg)
            whole = i % 3 == 2
            at = rng.uniform(0.1, 0.95) * span
            n_req = len(srv.requests)
            p = start(d, target)
            wait_job(p, "data_download")
            time.sleep(at)
            if whole:
                kill_group(p)
            else:
                for pid in job_pids(p.pid, "data_download") + job_pids(p.pid, "data_prepare"):
                    os.kill(pid, signal.SIGKILL)
                p.communicate(timeout=600)
                if p.returncode == 0:  # the kill came too late: the jobs were done
                    for f in (d / "results/data/x_16").glob("*"):
                        f.unlink()
            if whole:
                unlock(d)
            part = d / "results/data/raw/x.zip.part"
            had_part = part.exists() and part.stat().st_size > 0
            raw_final = d / "results/data/raw/x.zip"
            lost = raw_final.exists() and raw_final.read_bytes() != data
            again = run(d, target)
            ranged = any(r for _, r in srv.requests[n_req:])
            got = _digests(d / "results/data/x_16") if again.returncode == 0 else {}
            same = got == ref
            ok = again.returncode == 0 and same and (ranged or not had_part)
            stage = "download" if had_part else ("prepare" if raw_final.exists() else "start")
            who = "snakemake and its job" if whole else "the job"
            msg = (f"killed {who} {at:.1f} s in, during {stage}; rerun "
                   f"{'resumed with Range, ' if ranged else ''}arrays {'byte-identical' if same else 'DIFFER'}"
                   ) if again.returncode == 0 else _tail(again)
            tally.add(ok, msg, lost=lost or (again.returncode == 0 and not same), what=f"kill {i} ({stage})")
    return tally


# ------------------------------------------------------------------ 9: two concurrent invocations
#: what the refused run says (notpipe.workflow_lock), with the folder after it
BUSY = "is working in "
#: tries of one trial whose first run ended before its job could be held
HOLD_TRIES = 4


def _stopped(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] in "tT"
    except (OSError, IndexError):
        return False


def hold_job(p: subprocess.Popen, needle: str, delay: float) -> list[int]:
    """SIGSTOP the job processes of run ``p`` ``delay`` s after the job appears, so that the run
    cannot finish; the held pids, ``[]`` when the job or the run ended before it was held."""
    if wait_job(p, needle) is None:
        return []
    time.sleep(delay)
    held = []
    for pid in job_pids(p.pid, needle):
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        held.append(pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_stopped(pid) for pid in held):
        time.sleep(0.01)
    return [pid for pid in held if _stopped(pid)]


def resume(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _refusal(proc: subprocess.CompletedProcess | subprocess.Popen, out: str, work: Path) -> str | None:
    """The one line of a run refused before its DAG; None when it was not refused so."""
    line = next((ln.strip() for ln in out.splitlines() if BUSY in ln), None)
    refused = (proc.returncode not in (0, None) and line is not None and f"{BUSY}{work.resolve()}" in line
               and "Building DAG" not in out and "rule toy_train" not in out)
    return line if refused else None


# A slow machine's second run: Snakemake with its lock taken only once the file $GO exists,
# after touching $DAG_BUILT. Snakemake takes its lock after building the DAG; this widens
# that moment so that the first run can end inside it, every time.
_SLOW_LOCK = """
import os, sys, time
from pathlib import Path
from snakemake.persistence import PersistenceBase

_lock = PersistenceBase.lock


def lock(self):
    Path(os.environ["NOTPIPE_FAULT_DAG_BUILT"]).touch()
    deadline = time.monotonic() + 300
    while not Path(os.environ["NOTPIPE_FAULT_GO"]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return _lock(self)


PersistenceBase.lock = lock
from snakemake.cli import main

sys.exit(main())
"""


def _start_slow_lock(work: Path, built: Path, go: Path, *targets: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _SLOW_LOCK, *smk_cmd(work, *targets)[3:]]
    env = {**_env(), "NOTPIPE_FAULT_DAG_BUILT": str(built), "NOTPIPE_FAULT_GO": str(go)}
    return subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


#: the cases of kind 9, in turn
CASES = ("second while the first job runs", "second builds its DAG, the first ends before its lock",
         "both at once")


def _pair(rng: random.Random, d: Path, case: str) -> tuple[str | None, str, bool]:
    """Two runs of ``MODEL`` in ``d``; the job of the run that got the folder is held (SIGSTOP)
    while the other one runs. ``(refusal line or None, what happened, held)``; held False: the
    first job ended before it could be held (the trial is redone)."""
    together, race = case == CASES[2], case == CASES[1]
    first = start(d, MODEL)
    other = start(d, MODEL) if together else None
    held: list[int] = []
    go = d / ".fault-go"
    try:
        if together:  # whichever got the folder runs the job; the other one must end, refused
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (job_pids(first.pid, "toy_train")
                                                        or job_pids(other.pid, "toy_train")):
                if first.poll() is not None and other.poll() is not None:
                    break
                time.sleep(0.02)
            if job_pids(other.pid, "toy_train"):
                first, other = other, first
        held = hold_job(first, "toy_train", rng.uniform(0.0, 0.3))
        if not held:
            return None, "the first run's job ended before it was held", False
        if race:
            built = d / ".fault-dag-built"
            other = _start_slow_lock(d, built, go, MODEL)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and other.poll() is None and not built.exists():
                time.sleep(0.02)
        if not together and not race:
            second = run(d, MODEL, timeout=300)
            out = second.stdout + second.stderr
        else:
            if race:  # the second run built its DAG (or ended): the first one ends before it locks
                resume(held)
                held = []
                first.wait(timeout=600)
                go.touch()
            out, _ = other.communicate(timeout=600)
            second = other
        line = _refusal(second, out, d)
        resume(held)
        held = []
        first_out, _ = first.communicate(timeout=600)
        if first.returncode != 0:
            return None, "the first run failed: " + first_out[-1500:], True
        if line is None:
            return None, "not refused: " + out[-1500:], True
        again = run(d, MODEL, "-n")
        if again.returncode != 0 or "Nothing to be done" not in again.stdout + again.stderr:
            return None, "after both, the dry run has work left: " + _tail(again), True
        return line, line, True
    finally:
        go.touch()
        resume(held)
        for p in (first, other):
            if p is not None and p.poll() is None:
                kill_group(p)


def run_concurrent(rng: random.Random, trials: int, work: Path) -> Tally:
    """Two runs of one target in one folder, the cases of :data:`CASES` in turn: the second run
    starts while the first one's job runs (after the first DAG and Snakemake's lock); or it
    builds its DAG then and the first run ends before the second takes Snakemake's lock (a
    slow machine, made certain with :data:`_SLOW_LOCK`); or both start at once (before either
    DAG). The job of the run that holds the folder is held (SIGSTOP) until the other one has
    ended, so the outcome does not depend on machine speed. The second must be refused with one
    line naming the folder, before building a DAG; the first must finish, with every ``.pt``
    loadable and nothing left to do."""
    tally = Tally("concurrent", "two concurrent snakemake runs, one folder")
    cfg = {"toy": {"experiments": {"g": TOY_EXP}}}
    redone = "redone: the first job ended before it was held"
    for i in range(trials):
        case = CASES[i % len(CASES)]
        for attempt in range(HOLD_TRIES):
            d = setup(work / f"c{i}.{attempt}", cfg)
            line, msg, held = _pair(rng, d, case)
            if held:
                break
            tally.detail[redone] = tally.detail.get(redone, 0) + 1
        tally.detail[case] = tally.detail.get(case, 0) + 1
        lost = bool(_all_load(d / "results")) if (d / "results").exists() else False
        ok = held and line is not None and one_clear_line(line)
        tally.add(ok and not lost, msg, lost=lost, what=f"pair {i} ({case})")
    return tally


# ------------------------------------------------------------------ 10: GPU-slot claims
_CLAIMER = """
import os, sys, time
from notpipe.core import gpu_slots
lock_dir, log, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = gpu_slots.claim(1, devices=["0", "1"], lock_dir=lock_dir, poll_s=0.01, timeout_s=60, log=lambda m: None)
with open(log, "a") as fh:
    fh.write(f"claim {c.entries[0]} {os.getpid()} {time.monotonic():.6f}\\n")
    fh.flush()
time.sleep(hold)
with open(log, "a") as fh:
    fh.write(f"release {c.entries[0]} {os.getpid()} {time.monotonic():.6f}\\n")
    fh.flush()
c.release()
"""


def _double_holds(log: Path, killed: dict[int, float]) -> list[str]:
    """Intervals in which two processes held one slot (a killed holder holds until its kill)."""
    start: dict[int, tuple[str, float]] = {}
    end: dict[int, float] = {}
    for line in log.read_text().splitlines():
        ev, slot, pid, t = line.split()
        if ev == "claim":
            start[int(pid)] = (slot, float(t))
        else:
            end[int(pid)] = float(t)
    spans = [(slot, t0, end.get(pid, killed.get(pid, float("inf"))), pid) for pid, (slot, t0) in start.items()]
    bad = []
    for i, (s1, a1, b1, p1) in enumerate(spans):
        for s2, a2, b2, p2 in spans[i + 1:]:
            if s1 == s2 and a1 < b2 and a2 < b1:
                bad.append(f"slot {s1}: pid {p1} and {p2}")
    return bad


def run_gpu_slots(rng: random.Random, trials: int, work: Path) -> Tally:
    """``trials`` rounds of 100 randomized starts (at most 6 at once) of which about a third are killed."""
    tally = Tally("gpu_slots", "concurrent GPU-slot claims (2 slots)")
    for r in range(trials):
        d = work / f"r{r}"
        d.mkdir(parents=True)
        log, lock_dir = d / "events.log", d / "locks"
        log.touch()
        live: list[tuple[subprocess.Popen, bool]] = []
        killed: dict[int, float] = {}
        failed = 0
        for _ in range(100):
            while len(live) >= 6:
                for p, k in list(live):
                    if p.poll() is not None:
                        failed += p.returncode not in (0, -9)
                        live.remove((p, k))
                time.sleep(0.01)
            kill = rng.random() < 0.35
            p = subprocess.Popen([sys.executable, "-c", _CLAIMER, str(lock_dir), str(log),
                                  f"{rng.uniform(0.02, 0.2):.3f}"], stderr=subprocess.DEVNULL)
            live.append((p, kill))
            if kill:
                time.sleep(rng.uniform(0.0, 0.3))
                p.kill()
                p.wait()
                killed[p.pid] = time.monotonic()
        for p, _ in live:
            p.wait(timeout=120)
            failed += p.returncode not in (0, -9)
        bad = _double_holds(log, killed)
        claims = sum(1 for ln in log.read_text().splitlines() if ln.startswith("claim"))
        msg = f"100 starts, {len(killed)} killed, {claims} claims, no slot held twice" if not bad else \
            f"slot held twice: {bad[:3]}"
        tally.add(not bad and not failed, msg if not failed else msg + f"; {failed} claimers crashed",
                  what=f"round {r}")
    return tally


KINDS = [Kind("kill_data", 2, "SIGKILL of the data stage (download, prepare)", 6, run_kill_data),
         Kind("concurrent", 9, "two concurrent snakemake runs, one folder", 2, run_concurrent),
         Kind("gpu_slots", 10, "concurrent GPU-slot claims (2 slots)", 1, run_gpu_slots)]
