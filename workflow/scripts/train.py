"""Train NOT between two prepared image data sets (one run of images.runs); resumable.

Writes results/SUITE/train/RUN/final.pt (the final checkpoint), log.csv, grids/*.png and
keeps the newest checkpoints in results/SUITE/train/RUN/checkpoints/. It resumes only from
a checkpoint of the same run block and prepared arrays (else it starts at step 0). The device is CUDA
when the job holds a GPU (resources gpu >= 1, the default) and one is visible
(CUDA_VISIBLE_DEVICES is honoured), else CPU; `--resources gpu=0` forces CPU.

Command line: python workflow/scripts/train.py --config configs/toy.yaml --run shapes_strong [--cpu]
"""

import argparse
from pathlib import Path

from notpipe import train as images
from notpipe.config import load_config
from notpipe.paths import Layout
from notpipe.stage import entry


def main(run: dict, name: str, data_dir: str, out_dir: str, gpu: bool = True, progress: bool = True,
         grid: dict | None = None) -> None:
    """``grid``: grid_every / grid_inputs / grid_z when the rule passes them apart from ``run``."""
    images.train({**run, **(grid or {})}, name, data_dir, out_dir, images.pick_device(gpu), progress=progress)


def _cli_main(config: str, run: str, cpu: bool = False, results: str | None = None) -> None:
    cfg = load_config(config)
    runs = cfg["images"]["runs"]
    if run not in runs:
        raise SystemExit(f"unknown run {run!r}; known: {', '.join(runs) or '(none)'}")
    if results:
        cfg["results_dir"] = results
    main(runs[run], run, cfg["data"]["data_dir"], Layout.from_config(cfg).train_dir(run), gpu=not cpu)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config YAML (validated)")
    p.add_argument("--run", required=True, help="run name under images.runs")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is visible")
    p.add_argument("--results", help="results directory (default: results_dir of the config)")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        run=s.params.run, grid=s.params.grid, name=s.wildcards.run, data_dir=s.params.data_dir,
        out_dir=str(Path(s.output.final).parent), gpu=int(s.resources.get("gpu", 0)) > 0), smk)
