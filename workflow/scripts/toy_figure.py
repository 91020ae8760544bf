r"""Draw one toy figure as PDF + PNG (the PNG is written beside the PDF).

Kinds and their input:
  scatter, transport, one_to_many   one samples.npz (from toy_evaluate)
  losses                            one log.csv (from toy_train)
  gamma_sweep                       one CSV with columns gamma, modes_covered, cond_var
  l2_uvp_dim                        the toy summary.csv (Gaussian pairs: dim, l2_uvp, ...)

Command line: python workflow/scripts/toy_figure.py --kind scatter \
    --input results/toy/toy/moons/samples.npz --out report/figures/toy/toy/moons_scatter.pdf \
    --title "moons: input, target, push-forward"
"""

import argparse
import logging

from notpipe.stage import entry  # torch-free: a figure job never imports torch (~2 s)

log = logging.getLogger("notpipe.toy_figure")

KINDS = ("scatter", "transport", "one_to_many", "losses", "gamma_sweep", "l2_uvp_dim")  # plots.plot_<kind>


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
    if kind in ("losses", "gamma_sweep", "l2_uvp_dim"):
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


def _from_snakemake(smk) -> dict:
    return dict(kind=smk.params.kind, inputs=list(smk.input), out_pdf=smk.output.pdf, title=smk.params.title)


if __name__ == "__main__":
    entry(main, _parser(), _from_snakemake, globals().get("snakemake"), torch_threads=False)
