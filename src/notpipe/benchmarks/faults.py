"""Fault campaign (issue 15): inject faults into the real pipeline, count what survived.

Each fault kind is a function ``(rng, trials, work) -> Tally`` in one of the
``faults_*`` modules; it repeats its fault ``trials`` times at random points,
checks the result and records, per trial, whether the pipeline survived (the
documented outcome happened), whether data was lost (a file under its final name
that is half-written, unverified or different from an uninterrupted run), and
the one line a user would see. A message that is a Python traceback, or more than
one line, counts as a failure. All network traffic goes to 127.0.0.1.

``python benchmarks/faults.py`` is the command line; :func:`render` prints the table.
"""

from __future__ import annotations

import dataclasses
import random
import re
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

#: what a Python traceback shown to a user looks like
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+, in ", re.M)


def is_traceback(text: str) -> bool:
    return bool(_TRACEBACK.search(text or ""))


def one_clear_line(text: str) -> bool:
    """A message a user can act on: one non-empty line, no traceback."""
    text = (text or "").strip()
    return bool(text) and "\n" not in text and not is_traceback(text)


@dataclasses.dataclass
class Tally:
    """Counts of one fault kind."""

    kind: str
    title: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    example: str = ""
    example_ok: bool = False
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    detail: dict[str, int] = dataclasses.field(default_factory=dict)  # e.g. where each kill landed

    def add(self, ok: bool, message: str = "", *, lost: bool = False, what: str = "") -> None:
        """One trial: ``ok`` when the documented outcome happened; ``message``: what the user saw."""
        self.tried += 1
        self.survived += bool(ok) and not lost
        self.lost += bool(lost)
        message = (message or "").strip()
        if message:  # the first message of a trial that survived; else the first one seen
            if ok and not lost and not self.example_ok:
                self.example, self.example_ok = message.splitlines()[0], True
            elif not self.example:
                self.example = message.splitlines()[0]
        if not ok or lost:
            self.failures.append(f"{what or 'trial ' + str(self.tried)}: {'DATA LOST; ' if lost else ''}"
                                 f"{_short(message)}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _short(text: str, n: int = 300) -> str:
    text = " | ".join(line.strip() for line in (text or "").strip().splitlines() if line.strip())
    return text if len(text) <= n else "..." + text[3 - n:]  # the end says what went wrong


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    number: int  # the item of issue 15
    title: str
    trials: int  # default trial count (the whole default campaign: <= 15 min on 2 cores)
    run: Callable[[random.Random, int, Path], Tally]


def kinds() -> dict[str, Kind]:
    """Every fault kind, in the issue's order of cost (cheap first)."""
    from notpipe.benchmarks import (
        faults_config,
        faults_hostile,
        faults_net,
        faults_state,
        faults_train,
        faults_workflow,
    )

    found = [*faults_config.KINDS, *faults_net.KINDS, *faults_state.KINDS, *faults_train.KINDS,
             *faults_workflow.KINDS, *faults_hostile.KINDS]
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
