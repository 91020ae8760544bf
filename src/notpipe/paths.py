"""Every file and folder the pipeline writes, named once (showyourwork's ``paths.py`` idea).

A :class:`Layout` is made from a validated config. Each suite (the config's
``suite`` key: ``paper`` for ``config.yaml``, ``toy`` for ``configs/toy.yaml``,
...) writes under its own folders, so one suite never rewrites another's
outputs; prepared data sets, downloads and weights do not depend on the suite
and are shared::

    {results_dir}/data/{name}_{size}/      prepared data sets (shared)
    {results_dir}/data/raw/{key}/{file}    downloads, one folder per URL (key: sha256 of the URL)
    {results_dir}/weights/                 FID / LPIPS weights (shared)
    {results_dir}/{suite}/toy/{name}/      toy runs
    {results_dir}/{suite}/train/{run}/     image runs
    {results_dir}/{suite}/eval/            evaluation
    {results_dir}/{suite}/report/          generated LaTeX
    {results_dir}/logs/{suite}/            job logs (data jobs: {results_dir}/logs/data/,
                                           weight downloads: {results_dir}/logs/weights/)
    {figures_dir}/{suite}/                 figures
    report/{suite}.pdf                     the compiled report

Every method takes names that may be Snakemake wildcards (``"{name}"``), so the
rules and the library ask the same function for a pattern or a concrete path.
Methods return ``str`` (what Snakemake wants); wrap in ``Path`` where needed.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse


#: checkpoint / snapshot / grid file name of an f-step
def step_file(step: int | str, ext: str = "pt") -> str:
    return f"step_{step:08d}.{ext}" if isinstance(step, int) else f"step_{step}.{ext}"


def shared_dir(results_dir: str | Path, what: str) -> str:
    """``{results_dir}/data`` or ``{results_dir}/weights``: folders every suite shares."""
    if what not in ("data", "weights"):
        raise ValueError(f"shared folders are data and weights, not {what!r}")
    return str(Path(results_dir) / what)


def download_name(url: str) -> str:
    """The file name a download keeps: the last part of the URL's path (no query), with
    characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_`` and no
    leading dot, so it never names a folder (``..``) or a hidden file; ``download`` if empty."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(urlparse(url).path).name).lstrip(".")
    return name[-120:] or "download"


def download_relpath(url: str) -> str:
    """``{key}/{file}`` of a download under ``{data_dir}/raw``: ``key`` is the first 16 hex digits
    of the URL's sha256, so two URLs never share a file (``.../a/uc?id=A`` and ``.../b/uc?id=B``
    are two downloads), and one URL used by two data sets is downloaded once."""
    return f"{hashlib.sha256(url.encode()).hexdigest()[:16]}/{download_name(url)}"


def figure_file(figures: str | Path, track: str, stem: str, ext: str = "pdf") -> str:
    """``{figures}/{track}/{stem}.{ext}`` (``figures``: one suite's figure folder)."""
    return str(Path(figures) / track / f"{stem}.{ext}")


def fid_tag(ev: dict) -> str:
    """Tag of the FID extractor in cached statistics; random weights are labelled smoke."""
    if ev["feature_extractor"] == "random":
        return f"random_seed{ev['seed']}_smoke"
    return ev["feature_extractor"]


def snapshot_steps(run: dict) -> list[int]:
    """f-steps at which a T-only snapshot is kept for evaluation (always includes the last)."""
    every = run["snapshot_every"] or run["steps"]
    return sorted({*range(every, run["steps"] + 1, every), run["steps"]})


class Layout:
    """The folders and files of one suite (see the module docstring)."""

    def __init__(self, results_dir: str = "results", suite: str = "main", figures_dir: str = "report/figures",
                 data_dir: str | None = None, report_dir: str = "report"):
        self.root = Path(results_dir)
        self.suite = suite
        self.results = self.root / suite
        self.data = Path(data_dir or shared_dir(results_dir, "data"))
        self.weights = Path(shared_dir(results_dir, "weights"))
        self.logs = self.root / "logs" / suite
        self.data_logs = self.root / "logs" / "data"
        self.bench = self.root / "benchmarks" / suite
        self.figures = Path(figures_dir) / suite
        self.report_build = self.results / "report"
        self.pdf = str(Path(report_dir) / f"{suite}.pdf")

    @classmethod
    def from_config(cls, cfg: dict) -> "Layout":
        return cls(cfg["results_dir"], cfg["suite"], cfg["figures_dir"], cfg["data"]["data_dir"])

    # ---------------------------------------------------------------- data
    def dataset_dir(self, name: str, size: int | str) -> str:
        from notpipe.data.datasets import (
            dataset_dir,  # the one {name}_{size} convention
        )

        return str(dataset_dir(self.data, name, size))

    def manifest(self, name: str, size: int | str) -> str:
        return f"{self.dataset_dir(name, size)}/manifest.json"

    def split(self, name: str, size: int | str, split: str) -> str:
        return f"{self.dataset_dir(name, size)}/{split}.npy"

    def raw(self, file: str = "") -> str:
        return str(self.data / "raw" / file) if file else str(self.data / "raw")

    def download(self, url: str) -> str:
        """Where the download of ``url`` is kept (see :func:`download_relpath`)."""
        return self.raw(download_relpath(url))

    def checksums(self) -> str:
        """sha256 of every download, keyed by URL (recorded on first download, then checked)."""
        return str(self.data / "checksums.json")

    def data_log(self, file: str) -> str:
        """Logs of data jobs: shared by every suite, like the data sets."""
        return str(self.data_logs / file)

    def data_benchmark(self, file: str) -> str:
        return str(self.root / "benchmarks" / "data" / file)

    # ---------------------------------------------------------------- weights
    def weights_file(self, file: str) -> str:
        """``{results_dir}/weights/{file}``: a FID / LPIPS weight file the ``weights`` rule downloads."""
        return str(self.weights / file)

    def weights_checksums(self) -> str:
        """sha256 of every downloaded weight file (recorded on first download, then checked)."""
        return str(self.weights / "checksums.json")

    def weights_log(self, file: str) -> str:
        """Logs of weight downloads: shared by every suite, like the weights."""
        return str(self.root / "logs" / "weights" / file)

    # ---------------------------------------------------------------- toy
    def toy_dir(self, name: str) -> str:
        return str(self.results / "toy" / name)

    def toy_model(self, name: str) -> str:
        return f"{self.toy_dir(name)}/model.pt"

    def toy_log(self, name: str) -> str:
        return f"{self.toy_dir(name)}/log.csv"

    def toy_checkpoints(self, name: str) -> str:
        return f"{self.toy_dir(name)}/checkpoints"

    def toy_metrics(self, name: str) -> str:
        return f"{self.toy_dir(name)}/metrics.csv"

    def toy_samples(self, name: str) -> str:
        return f"{self.toy_dir(name)}/samples.npz"

    def toy_summary(self) -> str:
        return str(self.results / "toy" / "summary.csv")

    def authors_loop_metrics(self, name: str) -> str:
        """Metrics of the authors' notebook loop on experiment ``name`` (benchmarks/toy_authors.py)."""
        return str(self.results / "toy" / "authors_loop" / name / "metrics.csv")

    def last_iterate_metrics(self, name: str) -> str:
        """Metrics of our run's last iterate of T instead of its moving average (benchmarks/toy_authors.py)."""
        return str(self.results / "toy" / "last_iterate" / name / "metrics.csv")

    def authors_comparison(self) -> str:
        return str(self.results / "toy" / "authors_comparison.csv")

    def toy_sweep(self, sweep: str) -> str:
        return str(self.results / "toy" / "sweeps" / f"{sweep}.csv")

    # ---------------------------------------------------------------- image training
    def train_dir(self, run: str) -> str:
        return str(self.results / "train" / run)

    def final(self, run: str) -> str:
        return f"{self.train_dir(run)}/final.pt"

    def train_log(self, run: str) -> str:
        return f"{self.train_dir(run)}/log.csv"

    def checkpoints(self, run: str) -> str:
        return f"{self.train_dir(run)}/checkpoints"

    def snapshots(self, run: str) -> str:
        return f"{self.train_dir(run)}/snapshots"

    def snapshot(self, run: str, step: int | str) -> str:
        return f"{self.snapshots(run)}/{step_file(step)}"

    def grid(self, run: str, step: int | str) -> str:
        return f"{self.train_dir(run)}/grids/{step_file(step, 'png')}"

    # ---------------------------------------------------------------- evaluation
    def refstats(self, dataset: str, size: int | str, tag: str) -> str:
        return str(self.results / "eval" / "refstats" / f"{dataset}_{size}_test_{tag}.npz")

    def eval_step(self, run: str, step: int | str) -> str:
        return str(self.results / "eval" / run / "steps" / step_file(step, "csv"))

    def eval_images(self, run: str, step: int | str) -> str:
        return str(self.results / "eval" / run / "images" / f"step_{step}")

    def eval_curve(self, run: str) -> str:
        return str(self.results / "eval" / run / "curve.csv")

    def eval_metrics(self, run: str) -> str:
        return str(self.results / "eval" / run / "metrics.csv")

    def eval_baselines(self, run: str) -> str:
        """FID/KID of the identity map and of the target test split's two halves (the floor)."""
        return str(self.results / "eval" / run / "baselines.csv")

    def eval_summary(self) -> str:
        return str(self.results / "eval" / "summary.csv")

    # ---------------------------------------------------------------- figures and report
    def figure(self, track: str, stem: str, ext: str = "pdf") -> str:
        """``{figures}/{track}/{stem}.{ext}``; track is toy, images or speed."""
        return figure_file(self.figures, track, stem, ext)

    def toy_figure(self, name: str, kind: str, ext: str = "pdf") -> str:
        return self.figure("toy", f"{name}_{kind}", ext)

    def image_figure(self, run: str, kind: str, ext: str = "pdf") -> str:
        return self.figure("images", f"{run}_{kind}", ext)

    def generated(self, name: str) -> str:
        return str(self.report_build / "generated" / f"{name}.tex")

    def log(self, *parts: str) -> str:
        return str(self.logs.joinpath(*parts))

    def benchmark(self, *parts: str) -> str:
        return str(self.bench.joinpath(*parts))
