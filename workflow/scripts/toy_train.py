"""Train NOT on one toy experiment; resumes from results/SUITE/toy/NAME/checkpoints/
when the checkpoint was written by the same experiment block (else it starts at step 0).

Command line: python workflow/scripts/toy_train.py --config configs/toy.yaml --name moons
"""

import argparse
from pathlib import Path

from notpipe import toy
from notpipe.config import load_config, toy_experiments
from notpipe.paths import Layout
from notpipe import environment
from notpipe.stage import entry


def main(exp: dict, name: str, model: str, log_csv: str, progress: bool = True) -> None:
    toy.train(exp, model, log_csv, Path(model).parent / "checkpoints", progress=progress, name=name)
    environment.write(Path(model).parent / "environment.json")  # what it was computed with (report)


def _cli_main(config: str, name: str, results: str | None = None) -> None:
    cfg = load_config(config)
    exps = toy_experiments(cfg)
    if name not in exps:
        raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(exps)}")
    if results:
        cfg["results_dir"] = results
    lay = Layout.from_config(cfg)
    main(exps[name], name, lay.toy_model(name), lay.toy_log(name))


def _parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config YAML (validated)")
    p.add_argument("--name", required=True, help="experiment name (after gamma_sweep expansion)")
    p.add_argument("--results", help="results directory (default: results_dir of the config)")
    return p


if __name__ == "__main__":
    smk = globals().get("snakemake")
    entry(main if smk else _cli_main, _parser(), lambda s: dict(
        exp=s.params.exp, name=s.wildcards.name, model=s.output.model, log_csv=s.output.log_csv), smk, threads=1)
