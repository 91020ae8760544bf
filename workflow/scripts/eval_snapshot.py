"""Evaluate one snapshot of a run: FID/KID, LPIPS content/diversity, transport cost, attributes.

Writes one CSV (long format: one row per metric and map). Command line:
python workflow/scripts/eval_snapshot.py --config configs/toy.yaml --run shapes_strong --step 300
(reads results/SUITE/train/RUN/snapshots/step_*.pt, writes results/SUITE/eval/RUN/steps/)
"""

import argparse
from pathlib import Path

import numpy as np

from notpipe import evaluate
from notpipe.config import load_config
from notpipe.paths import Layout, fid_tag
from notpipe import environment
from notpipe.stage import entry
from notpipe.train import pick_device, tracking


def main(snapshot: str, ref: str, out: str, data_dir: str, ev: dict, gpu: bool = True,
         images: str | None = None, run: dict | None = None, tracking_keys: dict | None = None) -> None:
    """``run``: the run block to evaluate; a snapshot trained by another config is refused.
    ``tracking_keys``: the run's ``logging`` block; with tensorboard the scalar metrics also go to
    the run's ``tb/`` (``<train dir>/tb``, the train dir being the snapshot's grandparent)."""
    tracker = tracking.Tracker.for_run(tracking_keys or {}, Path(snapshot).parent.parent)  # fails early
    if not Path(snapshot).exists():
        raise FileNotFoundError(f"{snapshot} missing: rerun training (delete final.pt of the run) "
                                "or set eval.curve: false to evaluate the last snapshot only")
    with np.load(ref) as z:
        stats = {k: z[k] for k in z.files}
    stats.update(n=int(stats["n"]), tag=str(stats["tag"]), smoke=bool(stats["smoke"]))
    df = evaluate.evaluate_snapshot(snapshot, data_dir, stats, ev, pick_device(gpu), save_images=images,
                                    expected=run)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    if tracker.active:
        tracker.eval_metrics(int(df.step.iloc[0]), tracking.metrics_of(df))
        tracker.close()
    environment.write(Path(out).with_suffix(".environment.json"))  # what it was computed with


def _cli_main(config: str, run: str, step: int, cpu: bool = False) -> None:
    cfg = load_config(config)
    ev, r = cfg["eval"], cfg["images"]["runs"][run]
    lay = Layout.from_config(cfg)
    main(lay.snapshot(run, step), lay.refstats(r["target"], r["image_size"], fid_tag(ev)),
         lay.eval_step(run, step), cfg["data"]["data_dir"], ev, not cpu, run=r,
         tracking_keys={"logging": r["logging"]})


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--step", type=int, required=True, help="f-step of a kept snapshot")
    p.add_argument("--cpu", action="store_true")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        snapshot=s.params.snapshot, ref=s.input.ref, out=s.output[0], data_dir=s.params.data_dir,
        ev=s.params.eval, gpu=int(s.resources.get("gpu", 0)) > 0, images=s.params.images, run=s.params.run,
        tracking_keys=s.params.tracking), smk)
