"""Fault kind 1: SIGKILL of a training job, through real Snakemake runs (``--cores 1``, CPU).

Two runs are killed, each trial in a fresh folder, and compared with an uninterrupted
reference run of the same config: a toy run (``toy_train``: Gaussian -> moons) and a tiny
shapes image run (``train``: discs -> squares at 16 px, tiny nets, 40 images per data set,
a weak cost so that resuming also has to restore the noise generator). Each trial kills at
one moment, in turn:

* ``checkpoint``, ``snapshot``, ``final``: during the k-th (random) checkpoint write, snapshot
  write, or the write of the final file: the temporary file of :func:`notpipe.io.atomic_path`
  is seen (polled) and the kill follows at once;
* ``after_checkpoint``: right after the k-th checkpoint appears under its name;
* ``step``: at a random moment of the training steps.

Every third kill hits Snakemake and its job together (then ``--unlock``), the others the job
alone. The same command is run again. A trial survives when the rerun succeeds with final T
and f weights bit-identical to the reference and no ``.pt`` under its final name fails to load,
after the kill and after the rerun. Where each kill landed (the write's temporary file left
behind, or the write just done) is counted in ``Tally.detail``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import time
from pathlib import Path

from .common import Kind, Tally
from .workflow import (TOY_EXP, _all_load, _same, _tail, job_pids, kill_group, run, setup, start, unlock,
                       wait_job)

SHAPES_RUN = {"source": "shapes_circles", "target": "shapes_squares", "image_size": 16,
              "cost": {"name": "weak", "gamma": 0.5, "z_size": 2},
              "model": {"t_base": 4, "t_depth": 2, "f_nf": 4, "f_max": 8},
              "steps": 24, "batch": 4, "k_t": 2, "log_every": 4, "checkpoint_every": 4, "snapshot_every": 8,
              "grid_every": 0}


@dataclasses.dataclass(frozen=True)
class Target:
    """One killed run: its config, the file Snakemake is asked for, the job's script, its folders."""

    label: str
    cfg: dict
    final: str  # relative to the work folder
    needle: str  # in the job's command line (Snakemake's copy of the script)
    log: str  # the job's log, where a resume is reported
    checkpoints: list[int]  # f-steps with a checkpoint
    snapshots: list[int]  # f-steps with a snapshot (under checkpoints/snapshots/)
    moments: tuple[str, ...]
    shared: tuple[str, ...] = ()  # folders of the reference run copied into each trial (prepared data)

    @property
    def run_dir(self) -> str:
        return str(Path(self.final).parent)

    def weights(self, path: Path) -> dict:
        from notpipe.core import checkpoint as ckpt

        s = ckpt.load(path)
        s = s.get("trainer", s)  # final.pt of an image run holds the trainer state; model.pt T and f
        return {"T": s["T"], "f": s["f"]}


TOY = Target("toy", {"toy": {"experiments": {"g": TOY_EXP}}}, "results/main/toy/g/model.pt", "toy_train",
             "results/logs/main/toy/g.train.log", list(range(20, 401, 20)), [],
             ("step", "checkpoint", "final", "after_checkpoint"))
SHAPES = Target("shapes", {"data": {"offline": True, "threads": 1},
                           "images": {"threads": 1, "runs": {"tiny": SHAPES_RUN}},
                           "datasets": {"shapes_circles": {"n": 40}, "shapes_squares": {"n": 40}},
                           "report": {"build": False}},
                "results/main/train/tiny/final.pt", ".train.py", "results/logs/main/train/tiny.log",
                list(range(4, 25, 4)), [8, 16, 24], ("checkpoint", "snapshot", "final", "after_checkpoint", "step"),
                shared=("results/data",))


def _step_file(step: int) -> str:
    return f"step_{step:08d}.pt"


def _poll(p, folder: Path, seen, deadline: float):
    """Poll ``folder`` until ``seen(names)`` returns something (then return it at once), Snakemake
    ends, or ``deadline``. Sleeps while the folder does not exist, spins once it does (a write
    lasts a few ms)."""
    while p.poll() is None and time.monotonic() < deadline:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            time.sleep(0.005)
            continue
        found = seen(names)
        if found:
            return found
    return None


def _nth_tmp(prefix: str, k: int):
    """A watcher: the k-th distinct temporary file ``.{prefix}*.tmp`` seen."""
    tmps: list[str] = []

    def seen(names):
        for n in names:
            if n.startswith("." + prefix) and n.endswith(".tmp") and n not in tmps:
                tmps.append(n)
        return tmps[k - 1] if len(tmps) >= k else None
    return seen


def _kill(p, pids: list[int], whole: bool) -> None:
    if whole:
        kill_group(p)
    else:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.communicate(timeout=600)
    deadline = time.monotonic() + 10  # the job's process is gone before its files are looked at
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_at(p, pids: list[int], t: Target, d: Path, moment: str, whole: bool, rng: random.Random,
            span: float) -> tuple[str, str]:
    """Kill at ``moment``; (where it landed, a short description) — landed '' when the job ended first."""
    run_dir, deadline = d / t.run_dir, time.monotonic() + 300
    ckpts, final = run_dir / "checkpoints", Path(t.final).name
    if moment in ("checkpoint", "snapshot", "final"):
        k = 1 if moment == "final" else rng.randint(1, len(t.checkpoints if moment == "checkpoint" else t.snapshots))
        folder = {"checkpoint": ckpts, "snapshot": ckpts / "snapshots", "final": run_dir}[moment]
        prefix = final if moment == "final" else "step_"
        tmp = _poll(p, folder, _nth_tmp(prefix, k), deadline)
        if tmp is None:
            return "", f"{moment} write {k} never seen"
        _kill(p, pids, whole)
        name = tmp[1:].rsplit(".", 2)[0]
        if (folder / tmp).exists():
            return f"during a {moment} write", f"during the write of {name} (its .tmp left, {name} absent)"
        return f"just after a {moment} write", f"just after the write of {name}"
    if moment == "after_checkpoint":
        name = _step_file(rng.choice(t.checkpoints[:-1]))
        if _poll(p, ckpts, lambda names: name in names, deadline) is None:
            return "", f"{name} never seen"
        _kill(p, pids, whole)
        return "right after a checkpoint appeared", f"right after {name} appeared"
    first = _step_file(t.checkpoints[0])  # "step": once training runs, a random moment of it
    if _poll(p, ckpts, lambda names: first in names, deadline) is None:
        return "", "training never started"
    at = rng.uniform(0.0, 0.9) * span
    time.sleep(at)
    if p.poll() is not None:
        return "", "the job ended first"
    _kill(p, pids, whole)
    have = sorted(n for n in os.listdir(ckpts) if n.startswith("step_")) if ckpts.is_dir() else []
    return "during a step", f"{at:.2f} s into the steps (newest checkpoint {have[-1] if have else 'none'})"


def _reference(t: Target, work: Path) -> tuple[Path, dict, float] | None:
    """The uninterrupted run: its folder, final weights, and the seconds from its first checkpoint
    to its final file."""
    d = setup(work / f"{t.label}-reference", t.cfg)
    p = start(d, t.final)
    ckpt, final = d / t.run_dir / "checkpoints" / _step_file(t.checkpoints[0]), d / t.final
    t0 = t1 = None
    while p.poll() is None:
        now = time.monotonic()
        if t0 is None and ckpt.exists():
            t0 = now
        if t1 is None and final.exists():
            t1 = now
        time.sleep(0.005)
    p.communicate()
    if p.returncode or not final.exists():
        return None
    return d, t.weights(final), max(0.05, (t1 or time.monotonic()) - (t0 or time.monotonic()))


def _trials(t: Target, rng: random.Random, n: int, work: Path, tally: Tally) -> None:
    if n <= 0:
        return
    ref = _reference(t, work)
    if ref is None:
        tally.add(False, "reference run failed", what=f"{t.label} reference")
        return
    ref_dir, ref_w, span = ref
    for i in range(n):
        moment, whole = t.moments[i % len(t.moments)], i % 3 == 2
        d = setup(work / f"{t.label}-{i}", t.cfg)
        for sub in t.shared:  # the prepared data of the reference run (same arrays, same fingerprint)
            shutil.copytree(ref_dir / sub, d / sub)
        p = start(d, t.final)
        if wait_job(p, t.needle) is None:
            p.communicate()
            tally.add(False, "the job never started", what=f"{t.label} kill {i}")
            continue
        time.sleep(0.1)
        pids = job_pids(p.pid, t.needle)
        landed, where = kill_at(p, pids, t, d, moment, whole, rng, span)
        if not landed:  # the job ended before the moment came: not a kill
            if p.poll() is None:
                kill_group(p)
            tally.add(False, f"no kill: {where}", what=f"{t.label} kill {i} ({moment})")
            continue
        tally.detail[f"{t.label} {landed}"] = tally.detail.get(f"{t.label} {landed}", 0) + 1
        half = _all_load(d / "results")
        if whole:
            unlock(d)
        again = run(d, t.final)
        ok = again.returncode == 0 and (d / t.final).exists()
        same = ok and _same(t.weights(d / t.final), ref_w)
        half += [f"after rerun: {h}" for h in _all_load(d / "results")] if ok else []
        resumed = ok and "resumed " in (d / t.log).read_text()
        who = "snakemake and its job" if whole else "the job"
        msg = (f"{t.label}: killed {who} {where}; rerun {'resumed' if resumed else 'from step 0'}, "
               f"final T and f {'bit-identical' if same else 'DIFFER'}") if ok else _tail(again)
        lost = bool(half) or (ok and not same)
        tally.add(ok and same, msg + (f"; half-written: {half}" if half else ""), lost=lost,
                  what=f"{t.label} kill {i} ({moment})")


def run_kill_train(rng: random.Random, trials: int, work: Path) -> Tally:
    """``trials`` kills: half (rounded up) of the shapes image run, the rest of the toy run."""
    tally = Tally("kill_train", "SIGKILL of a training job (snakemake; toy + shapes)")
    shapes = (trials + 1) // 2
    _trials(SHAPES, rng, shapes, work, tally)
    _trials(TOY, rng, trials - shapes, work, tally)
    return tally


KINDS = [Kind("kill_train", 1, "SIGKILL of a training job (snakemake; toy + shapes)", 32, run_kill_train)]
