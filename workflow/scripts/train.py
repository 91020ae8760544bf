"""Train NOT between two prepared image data sets (one run of images.runs); resumable.

Writes results/SUITE/train/RUN/final.pt (the final checkpoint), log.csv, grids/*.png and
keeps the newest checkpoints in results/SUITE/train/RUN/checkpoints/. It resumes only from
a checkpoint of the same run block and prepared arrays (else it starts at step 0). The device is CUDA
when the job holds a GPU (resources gpu >= 1, the default) and one is visible
(CUDA_VISIBLE_DEVICES is honoured), else CPU; `--resources gpu=0` forces CPU. The job
claims a free device slot (notpipe.core.gpu_slots) before it touches CUDA, so parallel
jobs never share a GPU. A run with `gpus: N` starts N processes (torch.distributed DDP:
NCCL with one claimed GPU each, gloo on the CPU).

Command line: python workflow/scripts/train.py --config configs/toy.yaml --run shapes_strong [--cpu]
"""

import argparse
import logging
from pathlib import Path

import torch

from notpipe import train as images
from notpipe.config import load_config
from notpipe.paths import Layout
from notpipe.stage import entry
from notpipe.train import distributed


def main(run: dict, name: str, data_dir: str, out_dir: str, gpu: bool = True, progress: bool = True,
         grid: dict | None = None, log: str | None = None, threads: int = 1, held: int | None = None,
         tracking: dict | None = None) -> None:
    """``grid``: grid_every / grid_inputs / grid_z when the rule passes them apart from ``run``
    (``tracking``: the ``logging`` block, likewise);
    ``log``: the file the ranks of a multi-process run append to; ``threads``: CPU threads in all;
    ``held``: the job's gpu resource (Snakemake caps it at --resources)."""
    run = {**run, **(grid or {}), **(tracking or {})}
    nproc = int(run.get("gpus", 1))
    if gpu and held is not None and 0 < held < nproc and torch.cuda.is_available():
        # Snakemake caps a job's resources at --resources: use what the job holds (the same maths)
        logging.getLogger("notpipe").warning(
            "%s asks for gpus: %d but the job holds gpu=%d (--resources): training on %d processes; the "
            "global batch and the result are the same", name, nproc, held, held)
        nproc = held
    if nproc == 1:
        images.train(run, name, data_dir, out_dir, images.pick_device(gpu), progress=progress)
        return
    cuda = images.pick_devices(gpu, nproc)  # claims nproc GPU slots, restricts CUDA_VISIBLE_DEVICES to them
    distributed.launch(run, name, data_dir, out_dir, nproc, cuda=cuda, threads=max(1, threads // nproc),
                       log_path=log, progress=progress)


def _cli_main(config: str, run: str, cpu: bool = False, results: str | None = None, log: str | None = None,
              threads: int = 2) -> None:
    cfg = load_config(config)
    runs = cfg["images"]["runs"]
    if run not in runs:
        raise SystemExit(f"unknown run {run!r}; known: {', '.join(runs) or '(none)'}")
    if results:
        cfg["results_dir"] = results
    main(runs[run], run, cfg["data"]["data_dir"], Layout.from_config(cfg).train_dir(run), gpu=not cpu, log=log,
         threads=threads)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config YAML (validated)")
    p.add_argument("--run", required=True, help="run name under images.runs")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is visible")
    p.add_argument("--results", help="results directory (default: results_dir of the config)")
    p.add_argument("--log", help="file the processes of a multi-process run (gpus > 1) log to (default: stderr)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (split over the processes)")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        run=s.params.run, grid=s.params.grid, tracking=s.params.tracking, name=s.wildcards.run,
        data_dir=s.params.data_dir,
        out_dir=str(Path(s.output.final).parent), gpu=int(s.resources.get("gpu", 0)) > 0,
        held=int(s.resources.get("gpu", 0)), log=s.log[0] if len(s.log) else None, threads=int(s.threads)), smk)
