"""Fault kinds 3 (checkpoint damage), 4 (disk full), 7 (corrupt images) and 8 (NaN/inf loss).

Training runs are tiny toy experiments through the real trainer; the user-facing
runs go through ``workflow/scripts/toy_train.py`` on the command line, whose
stderr is what a user sees. The reference is an uninterrupted run with the same
seed: a rerun after a fault must give bit-identical T and f weights.
"""

from __future__ import annotations

import io
import logging
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from .common import Kind, Tally, one_clear_line

REPO = Path(__file__).resolve().parents[2]
TOY_TRAIN = REPO / "workflow" / "scripts" / "toy_train.py"
EXP = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "strong"},
       "steps": 20, "batch": 16, "k_t": 2, "log_every": 5, "checkpoint_every": 5,
       "model": {"hidden_t": [16], "hidden_f": [16]}}


def experiment(**over) -> dict:
    from notpipe.config import validate_config

    return validate_config({"toy": {"experiments": {"g": {**EXP, **over}}}})["toy"]["experiments"]["g"]


def weights(path: Path) -> dict:
    from notpipe.core import checkpoint as ckpt

    state = ckpt.load(path)
    return {"T": state["T"], "f": state["f"]}


def identical(a: dict, b: dict) -> bool:
    import torch

    return all(a[m].keys() == b[m].keys() and all(torch.equal(a[m][k], b[m][k]) for k in a[m]) for m in a)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _train(exp: dict, out: Path) -> tuple[list[str], Path]:
    """Train in this process (one thread); the warnings it logged and the model path."""
    import torch

    from notpipe import toy

    torch.set_num_threads(1)
    cap = _Capture()
    logger = logging.getLogger("notpipe")
    logger.addHandler(cap)
    try:
        toy.train(exp, out / "model.pt", out / "log.csv", out / "checkpoints", progress=False, name="g")
    finally:
        logger.removeHandler(cap)
    return cap.lines, out / "model.pt"


# ------------------------------------------------------------------ 3: checkpoint damage
DAMAGE = ("truncate", "zero_bytes", "random_bytes", "pre_fingerprint", "legacy_serialization", "missing_keys",
          "all_damaged")


def _damage(path: Path, how: str, rng: random.Random) -> None:
    import torch

    from notpipe.core import checkpoint as ckpt

    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: rng.randrange(1, len(data))])
    elif how == "zero_bytes":
        path.write_bytes(b"")
    elif how == "random_bytes":
        path.write_bytes(rng.randbytes(rng.randint(1, len(data))))
    else:
        state = ckpt.load(path)
        if how == "pre_fingerprint":  # written before fingerprints existed
            state.pop("fingerprint")
        elif how == "missing_keys":
            state["trainer"].pop(rng.choice(["opt_f", "rng", "generator", "T", "history"]))
        buf = io.BytesIO()
        torch.save(state, buf, _use_new_zipfile_serialization=how != "legacy_serialization")
        path.write_bytes(buf.getvalue())


def checkpoint_trial(rng: random.Random, how: str, work: Path, ref: dict) -> tuple[bool, bool, str]:
    from notpipe.core import checkpoint as ckpt

    run = work / f"{how}-{rng.randrange(1 << 30)}"
    exp = experiment()
    _train(exp, run)
    (run / "model.pt").unlink()  # as if killed after the last checkpoint
    cks = ckpt.list_checkpoints(run / "checkpoints")
    damaged = cks if how == "all_damaged" else cks[-1:]
    for p in damaged:
        _damage(p, "random_bytes" if how == "all_damaged" else how, rng)
    try:
        warnings, model = _train(exp, run)
    except Exception as err:
        return False, False, f"{type(err).__name__}: {err}"
    same = identical(weights(model), ref)
    text = " | ".join(warnings)
    if how == "all_damaged":
        ok = "training from step 0" in text and all(p.name in text for p in damaged)
    elif how == "pre_fingerprint":
        ok = "not resuming" in text and damaged[0].name in text
    elif how == "legacy_serialization":
        ok = True  # still readable: used as it is
    else:
        ok = damaged[0].name in text
    msg = next((w for w in warnings if "training from step 0" in w or damaged[0].name in w), text)
    return ok and same, not same, msg or "resumed from the newest checkpoint"


def run_checkpoint(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("checkpoint", "checkpoint damage")
    exp = experiment()
    _, model = _train(exp, work / "reference")
    ref = weights(model)
    for i in range(trials):
        how = DAMAGE[i % len(DAMAGE)] if i < len(DAMAGE) else rng.choice(DAMAGE)
        ok, lost, msg = checkpoint_trial(rng, how, work, ref)
        tally.add(ok, msg, lost=lost, what=how)
    return tally


# ------------------------------------------------------------------ command-line training runs
def write_config(path: Path, exp: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"toy": {"experiments": {"g": exp}}}))
    return path


def toy_cli(config: Path, results: Path, env: dict | None = None, fsize: int | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``toy_train.py --config C --name g --results R`` (optionally under RLIMIT_FSIZE)."""
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(TOY_TRAIN), "--config", str(config), "--name", "g",
                           "--results", str(results)], capture_output=True, text=True, timeout=timeout,
                          env=full_env, preexec_fn=limit if fsize else None)


def last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def user_error(proc: subprocess.CompletedProcess) -> tuple[bool, str]:
    """(failed with one clear 'error:' line and no traceback, that line or the whole stderr)."""
    line = last_line(proc)
    ok = proc.returncode != 0 and line.startswith("error: ") and "Traceback" not in proc.stderr
    return ok, line if ok else proc.stderr[-3000:]


# ------------------------------------------------------------------ 8: NaN / inf loss
def nan_trial(rng: random.Random, work: Path) -> tuple[bool, bool, str]:
    from notpipe.core import checkpoint as ckpt

    steps = 30
    exp = {**EXP, "steps": steps, "checkpoint_every": 10}
    step = rng.randint(1, steps)
    run = work / f"nan-{step}-{rng.randrange(1 << 30)}"
    proc = toy_cli(write_config(run / "c.yaml", exp), run, env={"NOTPIPE_FAULT_NAN_STEP": str(step)})
    ok, msg = user_error(proc)
    ok = ok and f"f-step {step}" in msg
    ck_dir = run / "main" / "toy" / "g" / "checkpoints"
    cks = ckpt.list_checkpoints(ck_dir)
    good = (step - 1) // 10 * 10  # the last checkpoint boundary before the bad step
    lost = False
    for p in cks:
        try:
            ckpt.load(p)
        except Exception:
            lost = True
    newest = int(cks[-1].name[5:13]) if cks else 0
    ok = ok and newest == good and not (run / "main" / "toy" / "g" / "model.pt").exists()
    return ok and not lost, lost, msg


def run_nan(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("nan", "NaN loss at a random step")
    for _ in range(trials):
        ok, lost, msg = nan_trial(rng, work)
        tally.add(ok, msg, lost=lost)
    return tally


# ------------------------------------------------------------------ 4: disk full (RLIMIT_FSIZE)
_WRITE = """
import json, resource, sys
import numpy as np
from notpipe.io import atomic_path, write_json
what, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    if what == "array":
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, np.arange(300_000, dtype=np.int64))
    else:
        write_json(path, {"rows": [{"run": f"r{i}", "fid": i * 0.5} for i in range(20_000)]})
except Exception as exc:
    if getattr(exc, "one_line", False):
        raise SystemExit(f"error: {exc}")
    raise
"""


def _old_intact(path: Path, before: bytes) -> bool:
    return path.exists() and path.read_bytes() == before and not list(path.parent.glob(f".{path.name}.*"))


def disk_trial_checkpoint(rng: random.Random, work: Path, ref: dict) -> tuple[bool, bool, str]:
    from notpipe.core import checkpoint as ckpt

    run = work / f"ckpt-{rng.randrange(1 << 30)}"
    cfg = write_config(run / "c.yaml", {**EXP, "steps": 10})
    proc = toy_cli(cfg, run)
    if proc.returncode:
        return False, False, proc.stderr[-2000:]
    ck_dir = run / "main" / "toy" / "g" / "checkpoints"
    old = ckpt.list_checkpoints(ck_dir)[-1]
    before = old.read_bytes()
    write_config(run / "c.yaml", {**EXP, "steps": 20})  # raising steps resumes from step 10
    proc = toy_cli(cfg, run, fsize=rng.randint(4096, len(before) - 1))
    ok, msg = user_error(proc)
    ok = ok and "step_000000" in msg and ("too large" in msg.lower() or "space" in msg.lower())
    lost = not _old_intact(old, before)
    again = toy_cli(cfg, run)
    model = run / "main" / "toy" / "g" / "model.pt"
    same = again.returncode == 0 and identical(weights(model), ref)
    return ok and same and not lost, lost or (again.returncode == 0 and not same), msg


def disk_trial_file(rng: random.Random, what: str, work: Path) -> tuple[bool, bool, str]:
    path = work / f"{what}-{rng.randrange(1 << 30)}" / ("train.npy" if what == "array" else "summary.json")
    full = subprocess.run([sys.executable, "-c", _WRITE, what, str(path), "0"], capture_output=True, text=True)
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _WRITE, what, str(path), str(rng.randint(1024, len(before) - 1))],
                          capture_output=True, text=True)
    ok, msg = user_error(proc)
    ok = ok and full.returncode == 0 and str(path) in msg
    lost = not _old_intact(path, before)
    again = subprocess.run([sys.executable, "-c", _WRITE, what, str(path), "0"], capture_output=True, text=True)
    return ok and again.returncode == 0 and path.read_bytes() == before and not lost, lost, msg


def run_disk(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("disk_full", "disk full (RLIMIT_FSIZE) while writing")
    _, model = _train(experiment(), work / "reference")
    ref = weights(model)
    for i in range(trials):
        what = ("checkpoint", "array", "report")[i % 3]
        if what == "checkpoint":
            ok, lost, msg = disk_trial_checkpoint(rng, work, ref)
        else:
            ok, lost, msg = disk_trial_file(rng, what, work)
        tally.add(ok, msg, lost=lost, what=what)
    return tally


# ------------------------------------------------------------------ 7: corrupt images
RATES = (0.0, 0.005, 0.05, 0.5)


def _archive(path: Path, n: int, bad: set[int], rng: random.Random) -> list[str]:
    import numpy as np
    from PIL import Image

    names = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            name = f"imgs/{i:04d}.png"
            buf = io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), i % 256, np.uint8)).save(buf, format="PNG")
            data = buf.getvalue()
            if i in bad:
                data = rng.choice([data[: len(data) // 3], b"", rng.randbytes(200)])
                names.append(name)
            zf.writestr(name, data)
    return names


def images_trial(rng: random.Random, rate: float, work: Path, n: int = 200) -> tuple[bool, bool, str]:
    from notpipe.data.datasets import resolve_datasets
    from notpipe.data.prepare import PrepareError, prepare

    k = round(rate * n)
    run = work / f"rate{rate}-{rng.randrange(1 << 30)}"
    run.mkdir(parents=True)
    bad = _archive(run / "x.zip", n, set(rng.sample(range(n), k)), rng)
    spec = resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none"}})["x"]
    out = run / "out"
    try:
        m = prepare("x", spec, 16, out, run, max_bad_fraction=0.01, progress=False)
    except PrepareError as err:
        msg = str(err)
        lost = (out / "manifest.json").exists() or (out / "train.npy").exists()
        ok = k / n > 0.01 and f"{k} of {n} images unreadable" in msg and "max_bad_fraction" in msg
        return ok and one_clear_line(msg) and getattr(err, "one_line", False), lost, msg
    listed = sorted(s["name"] for s in m["skipped"])
    ok = k / n <= 0.01 and m["n_skipped"] == k and listed == sorted(bad) and m["n_train"] + m["n_test"] == n - k
    return ok, False, f"{k} of {n} images unreadable, skipped and listed in manifest.json"


def run_images(rng: random.Random, trials: int, work: Path) -> Tally:
    tally = Tally("images", "corrupt images (0, 0.5, 5, 50 %)")
    for i in range(trials):
        rate = RATES[i % len(RATES)]
        ok, lost, msg = images_trial(rng, rate, work)
        tally.add(ok, msg, lost=lost, what=f"rate {rate:.1%}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
    return tally


KINDS = [Kind("checkpoint", 3, "checkpoint damage", 14, run_checkpoint),
         Kind("disk_full", 4, "disk full (RLIMIT_FSIZE) while writing", 6, run_disk),
         Kind("images", 7, "corrupt images (0, 0.5, 5, 50 %)", 8, run_images),
         Kind("nan", 8, "NaN loss at a random step", 3, run_nan)]
