# Config validation (before any job starts), path helpers and wildcard constraints.
import re
from pathlib import Path

from notpipe.config import ConfigError, toy_experiments, toy_sweeps, validate_config

try:
    _checked = validate_config(config, schema=None)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_checked)

RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../../envs/notpipe.yaml"

TOY = toy_experiments(config)
TOY_SWEEPS = toy_sweeps(config)
TOY_FIGURES = ["scatter", "transport", "losses", "one_to_many"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "NO_MATCH"


wildcard_constraints:
    name=_alternatives(TOY),
    sweep=_alternatives(TOY_SWEEPS),


def toy_is_stochastic(name):
    return TOY[name]["cost"]["name"] != "strong"


def toy_figure_kinds(name):
    return [k for k in TOY_FIGURES if k != "one_to_many" or toy_is_stochastic(name)]


def toy_outputs():
    out = [f"{RESULTS}/toy/summary.csv"]
    for name in TOY:
        out += [f"{FIGURES}/toy/{name}_{kind}.pdf" for kind in toy_figure_kinds(name)]
    out += [f"{FIGURES}/toy/{sweep}_gamma_sweep.pdf" for sweep in TOY_SWEEPS]
    return out


def all_outputs():
    return toy_outputs()
