"""Join a run's per-snapshot evaluations: curve.csv (step x metric) and metrics.csv (last step, long).

Command line: python workflow/scripts/eval_curve.py STEP_CSV... --curve C --metrics M
"""

import argparse

import pandas as pd

from notpipe import evaluate
from notpipe.stage import entry


def main(steps: list[str], curve: str, metrics: str) -> None:
    evaluate.curve(steps).to_csv(curve, index=False)
    last = pd.concat([pd.read_csv(p) for p in steps])
    last[last.step == last.step.max()].to_csv(metrics, index=False)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("steps", nargs="+")
    p.add_argument("--curve", required=True)
    p.add_argument("--metrics", required=True)
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(steps=list(s.input), curve=s.output.curve,
                                           metrics=s.output.metrics), smk, torch_threads=False)
