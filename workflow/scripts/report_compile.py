"""Compile report/SUITE.pdf with latexmk from report/main.tex and the suite's generated includes.

Command line: python workflow/scripts/report_compile.py --build results/toy/report --out report/toy.pdf
(after the figure and table rules have run).
"""

import argparse

from notpipe.report import compile_pdf
from notpipe.stage import entry


def main(build: str, out: str, tex: list[str], log_path: str | None = None) -> None:
    compile_pdf(build, out, log_path, sources=tex)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, help="folder holding generated/ (results/SUITE/report)")
    p.add_argument("--out", required=True)
    p.add_argument("--tex", nargs="+", default=["report/main.tex", "report/notpipe.sty"],
                   help="the report sources copied into the build folder")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main, _parser(), lambda s: dict(build=s.params.build, out=s.output[0], tex=list(s.input.tex),
                                           log_path=s.log[0] + ".latexmk" if s.log else None), smk, torch_threads=False)
