# Config validation (before any job starts), path helpers and wildcard constraints.
import os
import re
from pathlib import Path

from notpipe.config import ConfigError, toy_experiments, toy_sweeps, validate_config
from notpipe.datasets import resolve_datasets, sources
from notpipe.images import snapshot_steps

try:
    _checked = validate_config(config, schema=None)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_checked)

RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../../envs/notpipe.yaml"
#: published reference numbers (labelled columns of results/eval/summary.csv)
PUBLISHED = str(Path(workflow.basedir) / "workflow" / "resources" / "published_fid.csv")
DATA = config["data"]["data_dir"]

DATASETS = resolve_datasets(config["datasets"])
RUNS = config["images"]["runs"]
_ev = config["eval"]
#: tag of the FID extractor in cached statistics (random weights are labelled smoke)
FID_TAG = f"random_seed{_ev['seed']}_smoke" if _ev["feature_extractor"] == "random" else _ev["feature_extractor"]
#: file name under {DATA}/raw -> {url, sha256} of every downloadable source
DOWNLOADS = {s["path"].name: s for spec in DATASETS.values() if not spec.get("path")
             for s in sources(spec, f"{DATA}/raw") if s["url"]}

TOY = toy_experiments(config)
TOY_SWEEPS = toy_sweeps(config)
TOY_FIGURES = ["scatter", "transport", "losses", "one_to_many"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "NO_MATCH"


wildcard_constraints:
    name=_alternatives(TOY),
    sweep=_alternatives(TOY_SWEEPS),
    dataset=_alternatives(DATASETS),
    size=r"\d+",
    file=_alternatives(DOWNLOADS),
    run=_alternatives(RUNS),
    step=r"\d{8}",


def toy_is_stochastic(name):
    return TOY[name]["cost"]["name"] != "strong"


def toy_figure_kinds(name):
    return [k for k in TOY_FIGURES if k != "one_to_many" or toy_is_stochastic(name)]


def toy_outputs():
    out = [f"{RESULTS}/toy/summary.csv"]
    for name in TOY:
        out += [f"{FIGURES}/toy/{name}_{kind}.pdf" for kind in toy_figure_kinds(name)]
    out += [f"{FIGURES}/toy/{sweep}_gamma_sweep.pdf" for sweep in TOY_SWEEPS]
    return out


def dataset_downloads(name):
    """Raw files the data set needs from rule data_download (local sources are checked by the job)."""
    spec = DATASETS[name]
    if spec.get("path"):
        return []
    return [str(s["path"]) for s in sources(spec, f"{DATA}/raw") if s["url"]]


def manifest_path(name, size):
    return f"{DATA}/{name}_{size}/manifest.json"


def data_outputs():
    out = [manifest_path(n, config["data"]["image_size"]) for n in config["data"]["build"]]
    out += [manifest_path(r[side], r["image_size"]) for r in RUNS.values() for side in ("source", "target")]
    return list(dict.fromkeys(out))


def train_outputs():
    return [f"{RESULTS}/train/{run}/final.pt" for run in RUNS]


def refstats_path(dataset, size):
    return f"{RESULTS}/eval/refstats/{dataset}_{size}_test_{FID_TAG}.npz"


def eval_steps(run):
    steps = snapshot_steps(RUNS[run])
    return steps if config["eval"]["curve"] else steps[-1:]


def eval_step_path(run, step):
    return f"{RESULTS}/eval/{run}/steps/step_{step:08d}.csv"


def eval_outputs():
    return [f"{RESULTS}/eval/summary.csv"] if RUNS else []


REPORT_BUILD = f"{RESULTS}/report"
REPORT_INCLUDES = ["paths", "config_name", "table_config", "figures_toy", "figures_images", "figures_eval",
                   "figures_speed"]


def report_figures():
    """Every figure the report includes (PDFs written by their own rules)."""
    out = [f"{FIGURES}/toy/{n}_{k}.pdf" for n in TOY for k in toy_figure_kinds(n)]
    out += [f"{FIGURES}/toy/{s}_gamma_sweep.pdf" for s in TOY_SWEEPS]
    for run in RUNS:
        out += [f"{FIGURES}/images/{run}_{k}.pdf" for k in ("grid", "losses", "fid_curve")]
    if RUNS:
        out += [f"{FIGURES}/images/tradeoff.pdf", f"{FIGURES}/speed/throughput.pdf"]
    return out


def build_pdf():
    build = config["report"]["build"]
    if build == "auto":
        import shutil

        if shutil.which("latexmk") is None:
            logger.warning("report: latexmk not found, building figures and tables only "
                           "(apt-get install texlive-latex-recommended texlive-latex-extra latexmk)")
            return False
        return True
    return bool(build)


def all_outputs():
    out = toy_outputs() + data_outputs() + train_outputs() + eval_outputs()
    return out + (["report/main.pdf"] if build_pdf() else report_figures())
