"""Write the report's software table: the distinct environments the training jobs recorded
(environment.json beside each toy model and each image run's final.pt).

Runs under Snakemake (rule report_table_environment) or from the command line:
python workflow/scripts/report_environment.py OUT.tex results/toy/toy/*/environment.json
"""

import argparse
from pathlib import Path

from notpipe import environment
from notpipe.stage import entry


def main(out: str, records: list[str]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(environment.table(records))


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="LaTeX file to write")
    p.add_argument("records", nargs="*", help="environment.json files")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(out=s.output[0], records=list(s.params.records)), smk,
          torch_threads=False)
