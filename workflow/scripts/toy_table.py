r"""Join toy metrics: --kind summary (one row per experiment, one column per metric)
or --kind sweep (gamma, modes_covered, cond_var, ... for one gamma sweep).

Command line: python workflow/scripts/toy_table.py --kind summary --out s.csv \
    --input results/toy/toy/moons/metrics.csv results/toy/toy/swissroll/metrics.csv
"""

import argparse
from pathlib import Path

import pandas as pd

from notpipe.stage import entry


def main(kind: str, inputs: list[str], out: str, gammas: list[float] | None = None,
         methods: dict | None = None) -> None:
    """``methods``: experiment -> the method that trained it (NOT, WGAN-GP): a ``method`` column."""
    rows = []
    for i, path in enumerate(inputs):
        m = pd.read_csv(path).set_index("metric")["value"].to_dict()
        name = Path(path).parent.name
        row = {"experiment": name, **({"method": methods.get(name)} if methods else {}), **m}
        if kind == "sweep":
            row = {"gamma": gammas[i] if gammas else float("nan"), **row}
        rows.append(row)
    df = pd.DataFrame(rows)
    if kind == "sweep":
        df = df.sort_values("gamma")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["summary", "sweep"], required=True)
    p.add_argument("--input", dest="inputs", nargs="+", required=True, help="metrics.csv files")
    p.add_argument("--out", required=True)
    p.add_argument("--gammas", type=float, nargs="+", help="sweep: gamma of each input, in order")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(
        kind=s.params.kind, inputs=list(s.input), out=s.output[0], gammas=s.params.gammas,
        methods=getattr(s.params, "methods", None)), smk, torch_threads=False)
