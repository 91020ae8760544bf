"""Fault kinds through real Snakemake runs: 2 (SIGKILL of the data stage), 9 (two concurrent
invocations), 10 (concurrent GPU-slot claims), and the helpers of kind 1 (SIGKILL of training,
:mod:`notpipe.benchmarks.faults_train`).

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

from notpipe.benchmarks.faults import Kind, Tally

REPO = Path(__file__).resolve().parents[3]
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
    from notpipe.benchmarks.faults_net import FaultServer

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
def run_concurrent(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("concurrent", "two concurrent snakemake runs, one folder")
    cfg = {"toy": {"experiments": {"g": TOY_EXP}}}
    for i in range(trials):
        d = setup(work / f"c{i}", cfg)
        first = start(d, MODEL)
        locks = d / ".snakemake" / "locks"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (locks.is_dir() and any(locks.iterdir())):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        second = run(d, MODEL)
        out, _ = first.communicate(timeout=600)
        text = second.stdout + second.stderr
        refused = second.returncode != 0 and "cannot be locked" in text
        line = next((ln.strip() for ln in text.splitlines() if "cannot be locked" in ln), _tail(second))
        ok = first.returncode == 0 and refused
        lost = bool(_all_load(d / "results")) if (d / "results").exists() else False
        tally.add(ok and not lost, line if refused else text[-1500:] + out[-500:], lost=lost, what=f"pair {i}")
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
