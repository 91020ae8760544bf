"""Fault campaign: inject faults into the real pipeline, count what survived.

Each fault kind is a function ``(rng, trials, work) -> Tally`` in one of this package's kind
modules (``config``, ``net``, ``state``, ``train``, ``workflow``, ``hostile``, ``inputs``); it
repeats its fault ``trials`` times at random points, checks the result and records, per trial,
whether the pipeline survived (the documented outcome happened), whether data was lost (a file
under its final name that is half-written, unverified or different from an uninterrupted run),
and the one line a user would see. A message that is a Python traceback, or more than one
line, counts as a failure. All network traffic goes to 127.0.0.1.

This is a test harness, not part of the installed ``notpipe`` package. ``python
benchmarks/faults.py`` is its command line (Python puts ``benchmarks/`` on ``sys.path``, so it
imports this package as ``fault_campaign``); the tests find it through ``pythonpath`` in
``pyproject.toml``. :func:`kinds` is the registry, :func:`render` prints the table.
"""

from __future__ import annotations

import random
import tempfile
import time
import traceback
from pathlib import Path

from . import config, hostile, inputs, net, state, train, workflow
from .common import Kind, Tally, is_traceback, one_clear_line

__all__ = ["Kind", "Tally", "is_traceback", "one_clear_line", "kinds", "run_kind", "render"]
#: the kind modules, each with its ``KINDS``
MODULES = (config, net, state, train, workflow, hostile, inputs)


def kinds() -> dict[str, Kind]:
    """Every fault kind, by number (cheap kinds first)."""
    found = [k for module in MODULES for k in module.KINDS]
    return {k.name: k for k in sorted(found, key=lambda k: k.number)}


def run_kind(kind: Kind, trials: int | None = None, seed: int = 0, work: Path | None = None) -> Tally:
    """Run one kind in a fresh temporary folder (under ``work``); an unexpected crash of the
    campaign itself counts as one failed trial, never as a pass."""
    rng = random.Random(f"{seed}:{kind.name}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fault-{kind.name}-", dir=work) as tmp:
        try:
            tally = kind.run(rng, kind.trials if trials is None else trials, Path(tmp))
        except Exception:  # a crash of the harness or of the code under test
            tally = Tally(kind.name, kind.title)
            tally.add(False, traceback.format_exc(), what="campaign crashed")
    tally.seconds = time.perf_counter() - t0
    return tally


def render(tallies: list[Tally]) -> str:
    """The campaign table (Markdown): tried, survived, data lost, example message."""
    rows = ["| # | fault | tried | survived | data lost | time | example message users see |",
            "|---|---|---:|---:|---:|---:|---|"]
    by_name = kinds()
    for t in tallies:
        num = by_name[t.kind].number if t.kind in by_name else ""
        example = t.example.replace("|", "\\|")
        if len(example) > 160:
            example = example[:157] + "..."
        rows.append(f"| {num} | {t.title} | {t.tried} | {t.survived} | {t.lost} | {t.seconds:.0f} s | {example} |")
    total = [sum(getattr(t, k) for t in tallies) for k in ("tried", "survived", "lost")]
    rows.append(f"| | **all** | {total[0]} | {total[1]} | {total[2]} | "
                f"{sum(t.seconds for t in tallies):.0f} s | |")
    return "\n".join(rows)
