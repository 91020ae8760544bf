# Config validation (before any job starts), path helpers and wildcard constraints.
import os
import re
from pathlib import Path

from notpipe.core import fingerprint
from notpipe.evaluate import weights as _weights
from notpipe.config import ConfigError, toy_experiments, toy_sweeps, validate_config
from notpipe.data.datasets import base_of, data_sides, generated_datasets, resolve_datasets, sources
from notpipe.data.locks import build_conflict
from notpipe.paths import Layout, download_relpath, fid_tag, snapshot_steps, step_file

try:
    _checked = validate_config(config, schema=None, source=", ".join(map(str, workflow.configfiles)) or "config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_checked)

#: every output path of this suite (results/{suite}/..., report/figures/{suite}/..., report/{suite}.pdf)
L = Layout.from_config(config)
ENV = "../../envs/notpipe.yaml"
#: published reference numbers (labelled columns of results/eval/summary.csv)
PUBLISHED = str(Path(workflow.basedir) / "workflow" / "resources" / "published_fid.csv")
#: prepared data sets (shared by every suite)
DATA = str(L.data)

DATASETS = resolve_datasets(config["datasets"])
RUNS = config["images"]["runs"]
_ev = config["eval"]
#: tag of the FID extractor in cached statistics (random weights are labelled smoke)
FID_TAG = fid_tag(_ev)
#: {key}/{file name} under {DATA}/raw (one folder per URL) -> {url, path, sha256} of every
#: downloadable source
DOWNLOADS = {download_relpath(s["url"]): s for spec in DATASETS.values() if not spec.get("path")
             for s in sources(spec, L.raw()) if s["url"]}

TOY = toy_experiments(config)
#: the method of each toy experiment: the WGAN-GP baseline has no transport cost
TOY_METHODS = {n: "WGAN-GP" if e["cost"]["name"] == "none" else "NOT" for n, e in TOY.items()}
TOY_SWEEPS = toy_sweeps(config)
TOY_FIGURES = ["scatter", "transport", "losses", "one_to_many"]
#: Gaussian pairs (closed-form map known): with two dimensions or more, one L2-UVP-vs-D figure
TOY_GAUSSIAN_DIMS = {e["source"].get("dim", 2) for e in TOY.values()
                     if e["source"]["name"] == "gaussian" and e["target"]["name"] == "gaussian"}
TOY_DIM_FIGURES = [L.figure("toy", "l2_uvp_vs_dim")] if len(TOY_GAUSSIAN_DIMS) > 1 else []


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


def get_toy_trajectory(name):
    """What a toy evaluation checks the model against: the block minus keys that do not
    change training (so editing them does not rerun the evaluation)."""
    return fingerprint.trajectory(TOY[name], fingerprint.TOY_FREE)


def get_run_trajectory(run):
    """The same for an image run (eval_snapshot and the grid figure check it)."""
    return fingerprint.trajectory(RUNS[run], fingerprint.IMAGE_FREE)


#: image-run keys that only change the sample grids drawn during training
GRID_KEYS = ("grid_every", "grid_inputs", "grid_z")


#: image-run keys that only record the run (TensorBoard): passed apart like the grid keys
TRACKING_KEYS = ("logging",)


def get_train_params(run):
    """The run block the train job uses, minus the grid and tracking keys (passed apart, see train.smk)."""
    return {k: v for k, v in RUNS[run].items() if k not in GRID_KEYS + TRACKING_KEYS}


def toy_is_stochastic(name):
    return TOY[name]["cost"]["name"] in ("weak", "kernel")  # strong and none (WGAN-GP): deterministic T


def toy_figure_kinds(name):
    return [k for k in TOY_FIGURES if k != "one_to_many" or toy_is_stochastic(name)]


def toy_outputs():
    out = [L.toy_summary()]
    for name in TOY:
        out += [L.toy_figure(name, kind) for kind in toy_figure_kinds(name)]
    out += [L.toy_figure(sweep, "gamma_sweep") for sweep in TOY_SWEEPS]
    return out + TOY_DIM_FIGURES


def dataset_downloads(name):
    """Raw files the data set needs from rule data_download (local sources are checked by the job)."""
    spec = DATASETS[name]
    if spec.get("path"):
        return []
    return [str(s["path"]) for s in sources(spec, L.raw()) if s["url"]]


def dataset_inputs(name, size):
    """The inputs of data_prepare: the downloads, or for a derived data set its base's manifest."""
    base = base_of(DATASETS[name])
    return [manifest_path(base, size)] if base else dataset_downloads(name)


def run_manifests(run):
    """``{side: manifest}`` of an image run's data sets (a generation run: the target only)."""
    return {side: manifest_path(d, RUNS[run]["image_size"]) for side, d in data_sides(RUNS[run]).items()}


def manifest_path(name, size):
    return L.manifest(name, size)


def _shared_data_conflicts():
    """Refuse, before any job, to rebuild a shared data set that another suite built with other
    parameters (the two suites would rebuild it back and forth)."""
    size = config["data"]["image_size"]
    used = {(n, size) for n in config["data"]["build"]}
    used |= {(d, RUNS[r]["image_size"]) for r in RUNS for d in data_sides(RUNS[r]).values()}
    used |= {(base_of(DATASETS[n]), s) for n, s in list(used) if base_of(DATASETS[n])}
    for name, s in sorted(used):
        line = build_conflict(L.manifest(name, s), name, DATASETS[name], config["suite"])
        if line:
            raise WorkflowError(line)


_shared_data_conflicts()


def data_outputs():
    out = [manifest_path(n, config["data"]["image_size"]) for n in config["data"]["build"]]
    out += [m for run in RUNS for m in run_manifests(run).values()]
    return list(dict.fromkeys(out))


def train_outputs():
    return [L.final(run) for run in RUNS]


def refstats_path(dataset, size):
    return L.refstats(dataset, size, FID_TAG)


def eval_steps(run):
    steps = snapshot_steps(RUNS[run])
    return steps if config["eval"]["curve"] else steps[-1:]


def eval_step_path(run, step):
    return L.eval_step(run, step)


def eval_outputs():
    return [L.eval_summary()] if RUNS else []


REPORT_INCLUDES = ["paths", "config_name", "table_config", "figures_toy", "figures_images", "figures_eval",
                   "figures_speed"]


def report_figures():
    """Every figure the report includes (PDFs written by their own rules)."""
    out = [L.toy_figure(n, k) for n in TOY for k in toy_figure_kinds(n)]
    out += [L.toy_figure(s, "gamma_sweep") for s in TOY_SWEEPS] + TOY_DIM_FIGURES
    for run in RUNS:
        out += [L.image_figure(run, k) for k in ("grid", "losses", "fid_curve")]
    if RUNS:
        out += [L.figure("images", "tradeoff"), L.figure("speed", "throughput")]
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
    """What `rule all` asks for, each file once (the report's figures include the toy figures)."""
    out = toy_outputs() + data_outputs() + train_outputs() + eval_outputs()
    return list(dict.fromkeys(out + ([L.pdf] if build_pdf() else report_figures())))


#: "fid" / "lpips" -> the weight file this config's evaluation reads (random weights: absent).
#: Under {results_dir}/weights it comes from rule `weights`; a path configured elsewhere
#: (eval.inception_weights / eval.lpips_weights) is used as it is.
EVAL_WEIGHTS = _weights.required(config["eval"], L.weights)


def eval_weights(*uses):
    return [EVAL_WEIGHTS[u].path for u in uses if u in EVAL_WEIGHTS]


#: eval keys read only for runs whose source data set has an augmentation (textures)
AUGMENTED_FID_KEYS = ("fid_passes", "fid_repeats")


def eval_params(run=None):
    """The eval block as a job parameter: the augmented-FID keys only in the jobs of runs whose
    source data set has an augmentation, so changing them reruns those evaluations only."""
    augmented = run is not None and bool(DATASETS.get(RUNS[run]["source"], {}).get("augment"))
    return {k: v for k, v in config["eval"].items() if augmented or k not in AUGMENTED_FID_KEYS}
