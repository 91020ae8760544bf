"""Write one LaTeX table (booktabs) of the report from a pipeline CSV.

Kinds: toy (results/SUITE/toy/summary.csv), images (results/SUITE/eval/summary.csv; with the restoration
table when the suite has OTM restoration runs).
Command line: python workflow/scripts/report_table.py --kind toy --input results/toy/toy/summary.csv --out t.tex
"""

import argparse
from pathlib import Path

from notpipe.stage import entry

EMPTY = {"toy": "No toy experiments in this configuration.\n", "images": "No image runs in this configuration.\n"}


def main(kind: str, inputs: list[str], out: str, generated: list[str] | None = None) -> None:
    """``generated``: the generated data sets (not real images) of the suite (images table; default: the
    built-in registry's)."""
    import pandas as pd

    from notpipe.report import tables

    if kind not in EMPTY:
        raise ValueError(f"unknown table {kind!r}; expected one of {sorted(EMPTY)}")
    text = EMPTY[kind]
    if inputs:
        df = pd.read_csv(inputs[0])
        text = (tables.toy_table(df) if kind == "toy"
                else tables.image_table(df, generated) + tables.restoration_table(df))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", required=True, choices=sorted(EMPTY))
    p.add_argument("--input", dest="inputs", action="append", default=[])
    p.add_argument("--out", required=True)
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(kind=s.params.kind, inputs=list(s.input), out=s.output[0],
                                    generated=getattr(s.params, "generated", None)), smk,
          torch_threads=False)
