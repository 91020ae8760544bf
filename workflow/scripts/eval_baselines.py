"""FID/KID of a run's baselines: the identity map (source test inputs as they are) and the two halves
of the target test split (the floor), against the run's reference statistics. One CSV per run.

Command line: python workflow/scripts/eval_baselines.py --config configs/mnist.yaml --run mnist_fashion_strong
(reads results/SUITE/eval/refstats/, writes results/SUITE/eval/RUN/baselines.csv)
"""

import argparse
from pathlib import Path

import numpy as np

from notpipe import evaluate
from notpipe.config import load_config
from notpipe.data.datasets import NOISE_SOURCE, dataset_dir
from notpipe.data.fresh_degrade import DegradedSplit
from notpipe.paths import Layout, fid_tag
from notpipe.stage import entry
from notpipe.train import pick_device
from notpipe.train.run import source_degradation


def _stats(path: str | None) -> dict | None:
    if path is None:
        return None
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    return {**d, "n": int(d["n"]), "tag": str(d["tag"]), "smoke": bool(d["smoke"])}


def main(run_name: str, run: dict, ref: str, out: str, data_dir: str, ev: dict, source_ref: str | None = None,
         gpu: bool = True) -> None:
    size = run["image_size"]
    target = np.load(dataset_dir(data_dir, run["target"], size) / "test.npy", mmap_mode="r")
    source = None
    if run["source"] != NOISE_SOURCE:
        source = np.load(dataset_dir(data_dir, run["source"], size) / "test.npy", mmap_mode="r")
        deg = source_degradation(run, data_dir)
        if deg is not None:  # degraded per batch: test.npy is clean; the inputs are its degraded copy
            source, source_ref = DegradedSplit(source, deg), None
    extractor = evaluate.extractor_from_config(ev, pick_device(gpu))
    df = evaluate.baselines(run_name, run, source, target, _stats(ref), ev, extractor, _stats(source_ref))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)


def _cli_main(config: str, run: str, cpu: bool = False) -> None:
    cfg = load_config(config)
    ev, r = cfg["eval"], cfg["images"]["runs"][run]
    lay = Layout.from_config(cfg)
    src = None if r["source"] == NOISE_SOURCE else lay.refstats(r["source"], r["image_size"], fid_tag(ev))
    main(run, r, lay.refstats(r["target"], r["image_size"], fid_tag(ev)), lay.eval_baselines(run),
         cfg["data"]["data_dir"], ev, src if src and Path(src).is_file() else None, gpu=not cpu)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        run_name=s.wildcards.run, run=s.params.run, ref=s.input.ref, out=s.output[0], data_dir=s.params.data_dir,
        ev=s.params.eval, source_ref=s.input.get("source_ref"), gpu=int(s.resources.get("gpu", 0)) > 0), smk)
