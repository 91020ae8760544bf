"""All runs' final metrics in one table, with the published numbers in their own columns.

Command line: python workflow/scripts/eval_summary.py --config config.yaml METRICS_CSV... --out summary.csv
"""

import argparse
from pathlib import Path

from notpipe import evaluate
from notpipe.config import load_config
from notpipe.stage import entry

PUBLISHED = "workflow/resources/published_fid.csv"


def main(metrics: list[str], runs: dict, published: str, out: str, curves: list[str] | None = None,
         baselines: list[str] | None = None) -> None:
    """``curves``: each run's curve.csv (the best snapshot by FID); default: beside its metrics.csv.
    ``baselines``: each run's baselines.csv (identity map, target halves); default: beside it, if there."""
    curves = curves or [str(Path(m).with_name("curve.csv")) for m in metrics]
    if baselines is None:
        found = [Path(m).with_name("baselines.csv") for m in metrics]
        baselines = [str(p) for p in found] if all(p.is_file() for p in found) else None
    evaluate.summary(metrics, runs, published, curves, baselines).to_csv(out, index=False)


def _cli_main(config: str, metrics: list[str], out: str) -> None:
    main(metrics, load_config(config)["images"]["runs"], PUBLISHED, out)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("metrics", nargs="+")
    p.add_argument("--out", required=True)
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        metrics=list(s.input.metrics), runs=s.params.runs, published=s.input.published, out=s.output[0],
        curves=list(s.input.curves), baselines=list(s.input.baselines)), smk, torch_threads=False)
