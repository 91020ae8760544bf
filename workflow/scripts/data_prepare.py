"""Prepare one data set at one size: decode, crop, resize, split, store uint8 .npy + manifest.json.

A derived data set (OTM restoration: a half of a prepared base set, maybe degraded) is cut from
its base's arrays instead, which the data stage prepares first.

Command line: python workflow/scripts/data_prepare.py --config configs/toy.yaml --dataset shapes_circles --size 32
"""

import argparse
from pathlib import Path

from notpipe.config import load_config
from notpipe.data.datasets import dataset_dir, resolve_datasets
from notpipe.data.derive import derive
from notpipe.data.prepare import Limits, prepare
from notpipe.stage import entry


def main(name: str, spec: dict, size: int, out_dir: str, raw_dir: str, threads: int = 1,
         max_bad_fraction: float = 0.01, offline: bool = False, suite: str | None = None,
         lock_wait: float = 7200.0, limits: dict | None = None) -> None:
    """``limits``: the config's ``data`` block (its max_member_bytes, max_expansion, max_image_pixels)."""
    if spec["format"] == "derived":  # out_dir is {data_dir}/{name}_{size}: the base lies beside it
        derive(name, spec, int(size), out_dir, dataset_dir(Path(out_dir).parent, spec["base"], int(size)))
        return
    prepare(name, spec, int(size), out_dir, raw_dir, threads=threads,
            max_bad_fraction=max_bad_fraction, offline=offline, suite=suite, lock_wait=lock_wait,
            limits=Limits.from_config(limits or {}))


def _cli_main(config: str, dataset: str, size: int, threads: int) -> None:
    cfg = load_config(config)
    known = resolve_datasets(cfg["datasets"])
    if dataset not in known:
        raise SystemExit(f"unknown data set {dataset!r}; known: {', '.join(sorted(known))}")
    data = cfg["data"]
    main(dataset, known[dataset], size, str(dataset_dir(data["data_dir"], dataset, size)),
         str(Path(data["data_dir"]) / "raw"), threads, data["max_bad_fraction"], data["offline"],
         cfg["suite"], data["lock_wait"], data)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config YAML (validated)")
    p.add_argument("--dataset", required=True, help="data set name (registry or config)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (square)")
    p.add_argument("--threads", type=int, default=2, help="worker processes")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        name=s.wildcards.dataset, spec=s.params.spec, size=int(s.wildcards.size),
        out_dir=str(Path(s.output.manifest).parent), raw_dir=s.params.raw_dir, threads=s.threads,
        max_bad_fraction=s.params.max_bad_fraction, offline=s.params.offline,
        # from the config, not params: a new param would make Snakemake rebuild every data set
        suite=s.config["suite"], lock_wait=s.config["data"]["lock_wait"], limits=s.config["data"]), smk)
