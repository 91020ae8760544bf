r"""Draw one toy figure as PDF + PNG (the PNG is written beside the PDF).

Kinds and their input:
  scatter, transport, one_to_many   one samples.npz (from toy_evaluate)
  losses                            one log.csv (from toy_train)
  gamma_sweep                       one CSV with columns gamma, modes_covered, cond_var

Command line: python workflow/scripts/toy_figure.py --kind scatter \
    --input results/toy/moons/samples.npz --out report/figures/toy/moons_scatter.pdf \
    --title "moons: input, target, push-forward"
"""

import argparse
import logging
import sys

# Not notpipe.stage.entry: that imports torch (~2 s) and a figure needs none of it.
log = logging.getLogger("notpipe.toy_figure")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

KINDS = ("scatter", "transport", "one_to_many", "losses", "gamma_sweep")  # plots.plot_<kind>


def main(kind: str, inputs: list[str], out_pdf: str, title: str) -> None:
    """Read ``inputs[0]`` and write ``out_pdf`` plus the PNG beside it with ``plots.plot_<kind>``."""
    import numpy as np  # here, not at the top, so that --help stays instant
    import pandas as pd

    from notpipe.figures import toy as plots

    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; expected one of {sorted(KINDS)}")
    if len(inputs) != 1:
        raise ValueError(f"{kind} takes exactly one input file, got {len(inputs)}: {inputs}")
    if not out_pdf.endswith(".pdf"):
        raise ValueError(f"output must end in .pdf, got {out_pdf!r}")
    path = inputs[0]
    if kind in ("losses", "gamma_sweep"):
        data = pd.read_csv(path)
    else:
        with np.load(path) as npz:
            data = {k: npz[k] for k in npz.files}
    pdf, png = getattr(plots, f"plot_{kind}")(data, out_pdf[: -len(".pdf")], title)
    log.info("wrote %s and %s", pdf, png)


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--input", dest="inputs", nargs="+", required=True, metavar="FILE",
                   help="samples.npz, log.csv or sweep CSV (see above)")
    p.add_argument("--out", dest="out_pdf", required=True, metavar="OUT.pdf",
                   help="PDF path; the PNG goes beside it")
    p.add_argument("--title", default="", help="figure title")
    return p


if __name__ == "__main__":
    if "snakemake" in globals():
        from notpipe.stage import logged

        with logged(snakemake.log[0], "figure"):  # noqa: F821
            main(snakemake.params.kind, list(snakemake.input),  # noqa: F821
                 snakemake.output.pdf, snakemake.params.title)  # noqa: F821
    else:
        args = _parser().parse_args()
        logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr, force=True)
        main(args.kind, args.inputs, args.out_pdf, args.title)
