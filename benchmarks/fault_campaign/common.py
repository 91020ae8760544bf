"""What every fault kind uses: :class:`Tally` (the counts of one kind), :class:`Kind` (one
kind of the registry) and the judges of what a user sees (:func:`one_clear_line`).

The kind modules import it (and a few each other: ``train`` runs Snakemake with ``workflow``'s
helpers, ``workflow`` serves downloads with ``net``'s server); the registry,
:mod:`fault_campaign`, imports the kind modules and none of them imports the registry.
"""

from __future__ import annotations

import dataclasses
import random
import re
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
    number: int  # the kind's number (--kinds accepts it)
    title: str
    trials: int  # default trial count (the whole default campaign: <= 15 min on 2 cores)
    run: Callable[[random.Random, int, Path], Tally]
