r"""Draw one image-stage figure as PDF + PNG (the PNG is written beside the PDF).

Kinds and their input:
  grid        one snapshot (results/SUITE/train/RUN/snapshots/step_*.pt, a checkpoint or final.pt);
              needs --data-dir; the first --n-inputs source test images and, for a
              stochastic map, --n-z draws T(x, z_j) (fixed seed)
  losses      one log.csv (from train)
  fid_curve   one curve.csv (from eval_curve); with --baselines the run's baselines.csv (from
              eval_baselines): the identity map's FID and the floor as labelled lines
  tradeoff    one summary.csv (from eval_summary)
  throughput  several results/SUITE/train/RUN/log.csv (the run name is the parent folder)

Command line: python workflow/scripts/image_figure.py --kind losses \
    --input results/toy/train/shapes_strong/log.csv \
    --out report/figures/toy/images/shapes_strong_losses.pdf --title "shapes_strong: training"
"""

import argparse
import logging
from pathlib import Path

from notpipe.seeds import FIGURE_GRID
from notpipe.stage import entry  # torch-free; only the grid kind imports torch, inside grid_rows

log = logging.getLogger("notpipe.image_figure")

KINDS = ("grid", "losses", "fid_curve", "tradeoff", "throughput")  # image_plots.plot_<kind>
GRID_SEED = FIGURE_GRID  # noise of the grid's T(x, z_j) draws
N_INPUTS, N_Z = 8, 4


def grid_rows(snapshot: str, data_dir: str, n_inputs: int = N_INPUTS, n_z: int = N_Z,
              seed: int = GRID_SEED, expected: dict | None = None) -> tuple[list, list[str], dict]:
    """uint8 NHWC rows (inputs, then one per draw), their labels and the snapshot state.

    ``expected``: the run block the snapshot must come from (its fingerprint is checked)."""
    import numpy as np
    import torch

    from notpipe import train as images
    from notpipe.data.loader import to_float, to_uint8
    from notpipe.figures import images as image_plots

    setup, state = images.load_map(snapshot, data_dir, "cpu", expected=expected)
    x_np = np.array(setup.source_test[:n_inputs])
    if len(x_np) == 0:
        raise ValueError(f"no source test images under {data_dir} for {snapshot}")
    draws = n_z if setup.trainer.noise is not None else 1
    ys = setup.trainer.infer(to_float(torch.from_numpy(x_np)), draws, torch.Generator().manual_seed(seed))
    # a generation run's inputs are float Q(z): shown clamped to the image range
    shown = x_np if x_np.dtype == np.uint8 else to_uint8(torch.from_numpy(x_np))
    rows = [shown] + [to_uint8(ys[:, j]) for j in range(ys.shape[1])]
    return rows, image_plots.grid_labels(len(rows)), state


def main(kind: str, inputs: list[str], out_pdf: str, title: str = "", data_dir: str | None = None,
         n_inputs: int = N_INPUTS, n_z: int = N_Z, run: dict | None = None,
         baselines: str | None = None) -> tuple[Path, Path]:
    """Read ``inputs`` and write ``out_pdf`` plus the PNG beside it with ``image_plots.plot_<kind>``.

    ``baselines``: a run's baselines.csv, drawn on the fid_curve figure (refused for other kinds)."""
    import pandas as pd  # here, not at the top, so that --help stays instant

    from notpipe.figures import images as image_plots

    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; expected one of {sorted(KINDS)}")
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise ValueError(f"{kind} needs at least one input file")
    if kind != "throughput" and len(inputs) != 1:
        raise ValueError(f"{kind} takes exactly one input file, got {len(inputs)}: {inputs}")
    if baselines and kind != "fid_curve":
        raise ValueError(f"--baselines {baselines}: only --kind fid_curve draws baselines, not {kind}; drop it")
    out_pdf = str(out_pdf)
    if not out_pdf.endswith(".pdf"):
        raise ValueError(f"output must end in .pdf, got {out_pdf!r}")
    stem = out_pdf[: -len(".pdf")]

    if kind == "grid":
        if not data_dir:
            raise ValueError("grid needs the prepared data folder (--data-dir / params.data_dir)")
        rows, labels, state = grid_rows(inputs[0], data_dir, int(n_inputs), int(n_z), expected=run)
        if not title:  # snapshots hold "step"; checkpoints and final.pt hold trainer.step
            step = state.get("step", state.get("trainer", {}).get("step", "?"))
            title = f"{state.get('name', Path(inputs[0]).parent.parent.name)}, f-step {step}"
        pdf, png = image_plots.plot_grid(rows, labels, stem, title)
    elif kind == "throughput":
        logs: dict[str, pd.DataFrame] = {}
        for p in inputs:
            name = Path(p).parent.name or Path(p).stem
            key, k = name, 2
            while key in logs:  # two logs of the same folder name stay apart
                key, k = f"{name} ({k})", k + 1
            logs[key] = pd.read_csv(p)
        pdf, png = image_plots.plot_throughput(logs, stem, title)
    elif kind == "fid_curve":
        pdf, png = image_plots.plot_fid_curve(pd.read_csv(inputs[0]), stem, title,
                                              pd.read_csv(baselines) if baselines else None)
        if baselines:
            log.info("the identity map's FID and the floor drawn from %s", baselines)
    else:
        pdf, png = getattr(image_plots, f"plot_{kind}")(pd.read_csv(inputs[0]), stem, title)
    log.info("wrote %s and %s", pdf, png)
    return pdf, png


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--input", dest="inputs", action="extend", nargs="+", required=True, metavar="FILE",
                   help="snapshot, log.csv, curve.csv or summary.csv (see above); repeatable")
    p.add_argument("--out", dest="out_pdf", required=True, metavar="OUT.pdf",
                   help="PDF path; the PNG goes beside it")
    p.add_argument("--baselines", default=None, metavar="CSV",
                   help="fid_curve: the run's baselines.csv (identity map and floor lines)")
    p.add_argument("--title", default="", help="figure title (grid: run and f-step when empty)")
    p.add_argument("--data-dir", default=None, help="prepared data folder (grid only), e.g. results/data")
    p.add_argument("--n-inputs", type=int, default=N_INPUTS, help="grid: test inputs (columns)")
    p.add_argument("--n-z", type=int, default=N_Z, help="grid: noise draws per input (stochastic maps)")
    return p


def _from_snakemake(smk) -> dict:
    prm = smk.params
    baselines = getattr(smk.input, "baselines", None)  # a named input of the fid_curve rule
    return dict(kind=prm.kind, inputs=[p for p in smk.input if p != baselines], out_pdf=smk.output[0],
                baselines=baselines,
                title=getattr(prm, "title", "") or "", data_dir=getattr(prm, "data_dir", None),
                n_inputs=getattr(prm, "n_inputs", N_INPUTS), n_z=getattr(prm, "n_z", N_Z),
                run=getattr(prm, "run", None))


if __name__ == "__main__":
    entry(main, _parser(), _from_snakemake, globals().get("snakemake"), torch_threads=False)
