"""Fault kind 6: generated bad configs (mutations of configs/toy.yaml).

Every mutation must fail validation with a message naming the mutated key (its
dotted path), never a traceback. :func:`validate_config` checks all of them; a
sample also goes through the real ``snakemake -n --configfile``, which must fail
before any job with the same line.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable

import yaml

from .common import Kind, Tally, is_traceback

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "configs" / "toy.yaml"

Mutation = tuple[str, str, Callable[[dict], None]]  # (what, key the message must name, edit)


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        *head, last = path.split(".")
        node = cfg
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return edit


def _del(path: str) -> Callable[[dict], None]:
    def edit(cfg: dict) -> None:
        *head, last = path.split(".")
        node = cfg
        for key in head:
            node = node[key]
        del node[last]
    return edit


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else "<top level>"


def mutations(base: dict) -> list[Mutation]:
    """At least 40 single-fault mutations of ``base`` (configs/toy.yaml), each with the key to name."""
    exps = base["toy"]["experiments"]
    runs = base["images"]["runs"]
    run = next(iter(runs))
    r = f"images.runs.{run}"
    out: list[Mutation] = []
    for name in exps:  # per experiment: types, ranges, names (7 experiments x 4)
        e = f"toy.experiments.{name}"
        out += [(f"{name}: steps a string", f"{e}.steps", _set(f"{e}.steps", "many")),
                (f"{name}: negative steps", f"{e}.steps", _set(f"{e}.steps", -5)),
                (f"{name}: unknown target sampler", f"{e}.target.name", _set(f"{e}.target.name", "moonz")),
                (f"{name}: unknown cost", f"{e}.cost.name", _set(f"{e}.cost.name", "quadratic"))]
    unknown_at = ["", "toy", "toy.experiments.moons", "toy.experiments.moons.source", "toy.experiments.moons.cost",
                  "toy.experiments.swissroll.model", "toy.experiments.gauss2.optim", "data", "eval", "images",
                  r, f"{r}.model", f"{r}.cost", "report"]
    for where in unknown_at:  # unknown keys at every level
        key = f"{where}.colour" if where else "colour"
        out.append((f"unknown key at {where or 'top level'}", where or "<top level>", _set(key, 1)))
    out += [
        ("missing source", "toy.experiments.moons", _del("toy.experiments.moons.source")),
        ("missing cost name", "toy.experiments.gauss2.cost", _del("toy.experiments.gauss2.cost.name")),
        ("missing run target", r, _del(f"{r}.target")),
        ("batch below 2", "toy.experiments.moons.batch", _set("toy.experiments.moons.batch", 1)),
        ("gamma > 1 (weak)", "toy.experiments.swissroll.cost.gamma",
         _set("toy.experiments.swissroll.cost.gamma", 1.5)),
        ("gamma sweep > 1", "toy.experiments.circles.cost.gamma",
         _set("toy.experiments.circles.gamma_sweep", [0.5, 3.0])),
        ("z_size 1 for weak", "toy.experiments.8gaussians.cost.z_size",
         _set("toy.experiments.8gaussians.cost.z_size", 1)),
        ("gamma for strong cost", "toy.experiments.moons.cost.gamma", _set("toy.experiments.moons.cost.gamma", 0.5)),
        ("source dim 3 vs planar target", "toy.experiments.moons", _set("toy.experiments.moons.source.dim", 3)),
        ("dimension mismatch 16 vs 8", "toy.experiments.gauss16", _set("toy.experiments.gauss16.target.dim", 8)),
        ("mean length vs dim", "toy.experiments.gauss2.target.mean",
         _set("toy.experiments.gauss2.target.mean", [1.0, 2.0, 3.0])),
        ("planar sampler with dim 3", "toy.experiments.moons.target.dim", _set("toy.experiments.moons.target.dim", 3)),
        ("checkpoint_every not a multiple", "toy.experiments.gauss2.checkpoint_every",
         _set("toy.experiments.gauss2.log_every", 7)),
        ("image size not a power of two", f"{r}.image_size", _set(f"{r}.image_size", 24)),
        ("image size below 8", f"{r}.image_size", _set(f"{r}.image_size", 4)),
        ("image size vs depth", f"{r}.image_size", _set(f"{r}.model.t_depth", 6)),
        ("negative image steps", f"{r}.steps", _set(f"{r}.steps", -1)),
        ("batch not divisible by gpus", f"{r}.batch", _set(f"{r}.gpus", 3)),
        ("unknown source data set", f"{r}.source", _set(f"{r}.source", "shapes_circels")),
        ("unknown target data set", f"{r}.target", _set(f"{r}.target", "squares")),
        ("unknown data set to build", "data.build.0", _set("data.build", ["celebahq"])),
        ("max_bad_fraction > 1", "data.max_bad_fraction", _set("data.max_bad_fraction", 2)),
        ("offline a string", "data.offline", _set("data.offline", "yes please")),
        ("unknown feature extractor", "eval.feature_extractor", _set("eval.feature_extractor", "inception")),
        ("n_eval below 16", "toy.n_eval", _set("toy.n_eval", 3)),
        ("threads zero", "toy.threads", _set("toy.threads", 0)),
        ("suite name with spaces", "suite", _set("suite", "my suite")),
        ("experiments a list", "toy.experiments", _set("toy.experiments", ["moons"])),
        ("snapshot not a multiple of checkpoint", f"{r}.snapshot_every", _set(f"{r}.snapshot_every", 150)),
        ("lr negative", "toy.experiments.gauss16.optim.lr_t", _set("toy.experiments.gauss16.optim.lr_t", -1e-3)),
        ("k_f > 1 with NOT cost", f"{r}.k_f", _set(f"{r}.k_f", 5)),
    ]
    return out


def apply(base: dict, mutation: Mutation) -> dict:
    cfg = copy.deepcopy(base)
    mutation[2](cfg)
    return cfg


def names_key(message: str, key: str) -> bool:
    """The message has a line about ``key`` (the dotted path, as the line's subject)."""
    return any(line.strip().startswith((f"{key}:", f"{key}.")) or f" {key}:" in line for line in message.splitlines())


def check_validate(cfg: dict, key: str) -> tuple[bool, str]:
    from notpipe.config import ConfigError, validate_config

    try:
        validate_config(cfg)
    except ConfigError as err:
        msg = str(err)
        return names_key(msg, key) and not is_traceback(msg), msg
    except Exception as err:  # a crash is a failure: the user would see a traceback
        import traceback

        return False, "".join(traceback.format_exception(err))
    return False, "accepted: no error"


def snakemake_dry_run(cfg: dict, work: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n",
                           "--cores", "1", "--configfile", str(path), "--directory", str(work)],
                          capture_output=True, text=True, timeout=timeout, cwd=work)


def user_lines(proc: subprocess.CompletedProcess) -> str:
    """What snakemake printed, minus its profile banner."""
    text = proc.stdout + proc.stderr
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("Using workflow specific profile"))


def check_snakemake(cfg: dict, key: str, work: Path) -> tuple[bool, str]:
    proc = snakemake_dry_run(cfg, work)
    text = user_lines(proc)
    # snakemake appends the location of the WorkflowError (common.smk); no Python traceback
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith('File "') or "common.smk" not in ln]
    text = "\n".join(lines)
    ok = proc.returncode != 0 and names_key(text, key) and "Traceback" not in text and "Job stats" not in text
    line = next((ln.strip() for ln in lines if key in ln), text.strip().splitlines()[-1] if text.strip() else "")
    return ok, line if ok else text


def run(rng: random.Random, trials: int, work: Path) -> Tally:
    """All mutations through validate_config; ``trials`` of them (random) also through snakemake -n."""
    tally = Tally("config", "bad configs (mutations of toy.yaml)")
    base = yaml.safe_load(TOY.read_text())
    muts = mutations(base)
    sample = set(rng.sample(range(len(muts)), min(trials, len(muts))))
    for i, mut in enumerate(muts):
        what, key, _ = mut
        cfg = apply(base, mut)
        ok, msg = check_validate(cfg, key)
        line = next((ln.strip() for ln in msg.splitlines() if key in ln), msg)
        if ok and i in sample:
            ok, line = check_snakemake(cfg, key, work / f"m{i}")
            what += " (snakemake -n)"
        tally.add(ok, line if ok else msg, what=f"{what} [{key}]")
    return tally


KINDS = [Kind("config", 6, "bad configs (mutations of toy.yaml)", 6, run)]
