"""``notpipe doctor``: can this machine run this config? One table, a fix on each failing line.

It checks Python, torch/CUDA and the GPUs, TeX for the report, the FID/LPIPS
weights, every data set the config needs, the free disk space against what is
still to download, the Snakemake profile's executor plugin, and which image runs
and toy experiments can start now. It only looks: nothing is downloaded or
written. Download hosts are not contacted unless --check-downloads is given (then
one HEAD request per file, with a short timeout). Exit status 1 when a line says
FAIL (the config cannot run), 0 otherwise, 2 when the config itself is invalid.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import yaml

from notpipe.cli.doctor_data import (  # noqa: F401  (part of this API)
    FAIL, OK, PROBE_TIMEOUT, UNCHECKED, WARN, Probe, Row, check_dataset, check_disk, check_weights, download_row, gb,
    needed_datasets, run_datasets)

#: the Debian packages .ci/run installs for the report
TEX_FIX = "apt-get install --no-install-recommends texlive-latex-recommended texlive-latex-extra latexmk"
#: width of the table
LINE = 100
#: steps * batch * pixels * k_t above which an image run is paper-scale (days on a CPU)
PAPER_SCALE = 1e10


def repo_root() -> Path | None:
    """The workflow's folder: the current one if it holds the Snakefile, else this checkout's."""
    for d in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (d / "Snakefile").is_file() and (d / "workflow").is_dir():
            return d
    return None


def check_python() -> Row:
    v = sys.version_info
    if v >= (3, 11):
        return Row("python", OK, sys.version.split()[0])
    return Row("python", FAIL, f"{v.major}.{v.minor} < 3.11", "use Python >= 3.11 for the venv")


def _work(run: dict) -> float:
    return run["steps"] * run["batch"] * run["image_size"] ** 2 * run["k_t"]


def check_torch(cfg: dict) -> tuple[list[Row], int]:
    """torch and its CUDA build, one row per visible GPU (memory, bf16); returns (rows, #GPUs)."""
    try:
        import torch
    except ImportError as err:
        return [Row("torch", FAIL, f"not importable: {err}", "pip install -e . (README)")], 0
    cuda = torch.version.cuda
    rows = [Row("torch", OK, f"{torch.__version__}, " + (f"CUDA {cuda} build" if cuda else "CPU-only build"))]
    n = torch.cuda.device_count() if cuda and torch.cuda.is_available() else 0
    runs = cfg["images"]["runs"]
    bf16_runs = [r for r, spec in runs.items() if spec["speed"]["precision"] == "bf16"]
    for i in range(n):
        p = torch.cuda.get_device_properties(i)
        with torch.cuda.device(i):
            try:
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # older torch: no emulation argument
                bf16 = torch.cuda.is_bf16_supported()
        detail = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {'yes' if bf16 else 'no'}"
        if bf16 or not bf16_runs:
            rows.append(Row(f"gpu {i}", OK, detail))
        else:
            rows.append(Row(f"gpu {i}", WARN, detail + f"; {len(bf16_runs)} runs ask bf16",
                            "set speed: {precision: fp32} in those images.runs"))
    if n == 0:
        heavy = [r for r, spec in runs.items() if _work(spec) > PAPER_SCALE]
        fix = ""
        if not cuda and shutil.which("nvidia-smi"):
            fix = "nvidia-smi finds a GPU but torch is a CPU build: install torch's CUDA build"
        if not runs:
            rows.append(Row("gpu", OK, "no GPU; not needed (no image runs)", fix))
        elif heavy:
            rows.append(Row("gpu", WARN, f"no GPU: {len(heavy)} paper-scale runs on the CPU, expect days",
                            fix or "run on a machine with a CUDA GPU (profiles/slurm)"))
        else:
            rows.append(Row("gpu", WARN, "no GPU: the image runs train on the CPU (fp32)", fix))
    else:
        big = {r: spec["gpus"] for r, spec in runs.items() if spec["gpus"] > n}
        if big:
            rows.append(Row("gpus per run", WARN, f"{len(big)} runs ask more than the {n} GPUs here",
                            "lower images.runs.<run>.gpus or run them on the cluster"))
    return rows, n


def check_snakemake() -> Row:
    try:
        version = importlib.metadata.version("snakemake")
    except importlib.metadata.PackageNotFoundError:
        return Row("snakemake", FAIL, "not installed", "pip install -e . (README)")
    if shutil.which("snakemake") is None:
        return Row("snakemake", WARN, f"{version}, not on PATH", "activate the venv: . .venv/bin/activate")
    return Row("snakemake", OK, version)


def check_tex(cfg: dict) -> Row:
    missing = [t for t in ("latexmk", "pdflatex") if shutil.which(t) is None]
    build = cfg["report"]["build"]
    if not missing:
        return Row("tex", OK, "latexmk and pdflatex found")
    what = " and ".join(missing) + " not found"
    if build is False:
        return Row("tex", OK, what + "; report.build is false")
    if build == "auto":
        return Row("tex", WARN, what + ": figures and tables only, no PDF", TEX_FIX)
    return Row("tex", FAIL, what + " (report.build: true)", TEX_FIX)


# ---------------------------------------------------------------- inputs
def check_profile(name: str, explicit: bool, root: Path | None, n_gpu: int) -> list[Row]:
    cands = [Path(name)] + ([root / "profiles" / name] if root else [])
    folder = next((d for d in cands if (d / "config.yaml").is_file()), None)
    if folder is None:
        if explicit:
            return [Row("profile", FAIL, f"{name}: no config.yaml found",
                        "give a profile folder or a name under profiles/")]
        return [Row("profile", WARN, f"no profiles/{name}: Snakemake's own defaults")]
    try:
        prof = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except yaml.YAMLError as err:
        return [Row("profile", FAIL, f"{name}: unreadable YAML", str(err).splitlines()[0])]
    executor = str(prof.get("executor") or "local")
    rows = [Row("profile", OK, f"{name}: executor {executor}")]
    if executor not in ("local", "dryrun", "touch"):
        mod = f"snakemake_executor_plugin_{executor.replace('-', '_')}"
        if importlib.util.find_spec(mod) is None:
            rows.append(Row("executor plugin", FAIL, f"{mod} not installed",
                            f"pip install snakemake-executor-plugin-{executor}"))
        else:
            rows.append(Row("executor plugin", OK, f"{mod} installed"))
        if executor == "slurm" and shutil.which("sbatch") is None:
            rows.append(Row("sbatch", WARN, "not on PATH: not a SLURM submit host", "run from the login node"))

    def strings(x):
        if isinstance(x, dict):
            return [s for v in x.values() for s in strings(v)]
        return [s for v in x for s in strings(v)] if isinstance(x, list) else [str(x)]

    env = sorted({v for s in strings(prof) for v in re.findall(r"\$\{?([A-Za-z_]\w*)", s)} - set(os.environ))
    if env:
        rows.append(Row("profile env", FAIL, "unset: " + ", ".join(env),
                        "export " + " ".join(f"{v}=<value>" for v in env)))
    gpu_res = (prof.get("resources") or {}).get("gpu") if isinstance(prof.get("resources"), dict) else None
    if executor == "local" and isinstance(gpu_res, int) and n_gpu > gpu_res:
        rows.append(Row("profile gpu", WARN, f"resources gpu={gpu_res}, {n_gpu} GPUs here",
                        f"--resources gpu={n_gpu} (or set it in the profile)"))
    return rows


# ---------------------------------------------------------------- the table
def render(rows: list[Row]) -> str:
    """The table: check, status, detail; a failing line's fix below its detail ("fix: ...")."""
    w_check = min(max(len(r.check) for r in rows), 30)
    w_detail = LINE - w_check - 6 - 4
    pad = " " * (w_check + 10)
    wrap = dict(break_long_words=False, break_on_hyphens=False)
    out = [f"{'check':<{w_check}}  {'status':<6}  detail / fix", "-" * LINE]
    for r in rows:
        lines = textwrap.wrap(r.detail, w_detail, **wrap) or [""]
        if r.fix:
            lines += textwrap.wrap("fix: " + r.fix, w_detail, subsequent_indent="     ", **wrap)
        out.append(f"{r.check:<{w_check}}  {r.status:<6}  {lines[0]}".rstrip())
        out += [pad + line for line in lines[1:]]
    return "\n".join(out)


def diagnose(cfg: dict, profile: str = "default", explicit_profile: bool = False,
             check_downloads: bool = False) -> list[Row]:
    from notpipe.data.datasets import resolve_datasets
    from notpipe.paths import Layout

    root = repo_root()
    base = root or Path.cwd()

    def absp(p) -> Path:
        p = Path(os.path.expanduser(str(p)))
        return Path(os.path.abspath(p if p.is_absolute() else base / p))

    rows = [check_python()]
    torch_rows, n_gpu = check_torch(cfg)
    rows += torch_rows + [check_snakemake(), check_tex(cfg)]
    probe = Probe(check_downloads)
    weight_rows = check_weights(cfg, absp, probe)
    rows += weight_rows
    layout, known = Layout.from_config(cfg), resolve_datasets(cfg["datasets"])
    reported, todo, state = {}, {}, {}
    for (name, size) in needed_datasets(cfg, known):
        row, more = check_dataset(name, size, known[name], layout, absp, cfg["data"]["offline"], reported, probe)
        rows.append(row)
        todo.update(more)
        state[(name, size)] = row
    rows.append(check_disk(absp(layout.raw()), todo))
    rows += check_profile(profile, explicit_profile, root, n_gpu)
    weights_fail = any(r.status == FAIL for r in weight_rows)
    for run, spec in cfg["images"]["runs"].items():
        keys = run_datasets(spec, known)
        blocked = [f"{n}_{s}" for n, s in dict.fromkeys(keys) if state[(n, s)].status == FAIL]
        if blocked:
            rows.append(Row(f"run {run}", FAIL, "cannot start: needs " + ", ".join(blocked),
                            "see the data rows; run the others with --keep-going or drop it from images.runs"))
        elif weights_fail:
            rows.append(Row(f"run {run}", WARN, "can train; its evaluation needs the weights",
                            "see the weights rows"))
        else:
            later = any("to download" in r.detail for r in [*weight_rows, *(state[k] for k in keys)])
            rows.append(Row(f"run {run}", OK, "can start" + (" (after downloads)" if later else " now")))
    from notpipe.config import toy_experiments

    n_toy = len(toy_experiments(cfg))
    if n_toy:
        rows.append(Row("toy experiments", OK, f"all {n_toy} can start now (no inputs)"))
    return rows


def default_configfile() -> Path:
    root = repo_root()
    for d in (Path.cwd(), root):
        if d is not None and (d / "config.yaml").is_file():
            return d / "config.yaml"
    return Path("config.yaml")


def run(args: argparse.Namespace) -> int:
    from notpipe.config import ConfigError, load_config

    path = Path(args.configfile) if args.configfile else default_configfile()
    try:
        cfg = load_config(path)
    except (OSError, yaml.YAMLError, ConfigError) as err:
        msg = str(err) if isinstance(err, ConfigError) else f"cannot read it: {str(err).splitlines()[0]}"
        if len(msg.splitlines()) == 2:  # one problem: one line
            msg = " ".join(part.strip() for part in msg.splitlines())
        where = "" if msg.startswith(str(path)) else f"{path}: "  # YAML errors name the file already
        print(f"notpipe doctor: {where}{msg}", file=sys.stderr)
        return 2
    rows = diagnose(cfg, args.profile or "default", explicit_profile=args.profile is not None,
                    check_downloads=args.check_downloads)
    print(f"notpipe doctor: {os.path.abspath(path)} (suite {cfg['suite']}), profile {args.profile or 'default'}")
    print(render(rows))
    fails, warns, unchecked = (sum(r.status == s for r in rows) for s in (FAIL, WARN, UNCHECKED))
    print("-" * LINE)
    hosts = f", {unchecked} download host(s) not checked (--check-downloads)" if unchecked else ""
    print(f"{fails} FAIL, {warns} warn{hosts}: " + ("this config cannot run here; see the fixes" if fails else
                                                    "this config can run here"))
    return 1 if fails else 0


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check that this machine can run a config",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--configfile", metavar="C", help="the config (default: config.yaml here or in the repo)")
    p.add_argument("--profile", metavar="P", help="Snakemake profile: a name under profiles/ or a folder "
                   "(default: profiles/default, the workflow profile)")
    p.add_argument("--check-downloads", action="store_true",
                   help=f"contact each download host (one HEAD request per file, {PROBE_TIMEOUT:g} s timeout); "
                   "without it those rows say 'not checked'")
    p.set_defaults(func=run)
