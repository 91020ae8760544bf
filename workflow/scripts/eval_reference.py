"""FID reference statistics of a target test split, cached under results/SUITE/eval/refstats/.

Command line: python workflow/scripts/eval_reference.py --config configs/toy.yaml --dataset shapes_squares --size 32
"""

import argparse
from pathlib import Path

from notpipe import evaluate
from notpipe.config import load_config
from notpipe.paths import Layout, fid_tag
from notpipe.stage import entry
from notpipe.train import pick_device


def main(dataset: str, size: int, data_dir: str, out: str, ev: dict, gpu: bool = True) -> None:
    res = evaluate.reference(dataset, int(size), data_dir, Path(out).parent, ev, pick_device(gpu))
    if Path(res["path"]) != Path(out):
        raise RuntimeError(f"statistics written to {res['path']}, expected {out}")


def _cli_main(config: str, dataset: str, size: int, cpu: bool = False) -> None:
    cfg = load_config(config)
    ev = cfg["eval"]
    out = Layout.from_config(cfg).refstats(dataset, size, fid_tag(ev))
    main(dataset, size, cfg["data"]["data_dir"], out, ev, gpu=not cpu)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", required=True, help="target data set")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is visible")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        dataset=s.wildcards.dataset, size=s.wildcards.size, data_dir=s.params.data_dir, out=s.output[0],
        ev=s.params.eval, gpu=int(s.resources.get("gpu", 0)) > 0), smk)
