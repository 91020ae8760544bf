"""One-line errors for ``--configfile`` mistakes, installed with notpipe.

Snakemake reads the ``--configfile`` files in its own command line, before any
workflow code runs, and opens them outside its error handling: a missing file ends
in a Python traceback. The usual cause is a target typed after ``--configfile``,
which takes every following word as a config file. Snakemake imports every
installed ``snakemake_logger_plugin_*`` package while it builds its command line,
so importing this one is the earliest point a project can act: it wraps the loader
``snakemake.settings.types`` uses, so that a word that is not a config file, or a
config file that does not exist, stops Snakemake with one line saying what to type.
Nothing else changes. As a logger (``--logger notpipe``) it writes Snakemake's
messages to stderr as they are.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from snakemake_interface_logger_plugins.base import LogHandlerBase

#: what a config file is called; anything else after --configfile is taken for a target
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
#: folders the workflow writes: a path in them is a target, not a config
OUTPUT_FOLDERS = ("results", "report")
OPTIONS = ("--configfile", "--configfiles")


def looks_like_target(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() not in CONFIG_SUFFIXES or (not p.is_absolute() and p.parts[:1] in
                                                       [(f,) for f in OUTPUT_FOLDERS])


def reordered(argv: list[str]) -> list[str]:
    """``argv`` with the targets that follow ``--configfile`` moved in front of that option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] not in OPTIONS:
            out.append(argv[i])
            i += 1
            continue
        j = i + 1
        while j < len(argv) and not argv[j].startswith("-"):
            j += 1
        words = argv[i + 1:j]
        out += [w for w in words if looks_like_target(w)] + [argv[i]] + [w for w in words if not looks_like_target(w)]
        i = j
    return out


def configfile_problem(path: str | Path, argv: list[str]) -> str | None:
    """One line saying what is wrong with ``--configfile path``, or ``None`` when it is a config file."""
    shown = str(path)
    if looks_like_target(path):
        fixed = "snakemake " + shlex.join(reordered(argv)) if any(a in OPTIONS for a in argv) else ""
        return (f"--configfile reads every word after it as a config file, and {shown!r} is not one: "
                "put targets before --configfile" + (f", e.g. {fixed}" if fixed else ""))
    if not Path(path).is_file():
        configs = sorted(p.name for p in Path("configs").glob("*.yaml")) if Path("configs").is_dir() else []
        known = f" (configs/ holds {', '.join(configs)})" if configs else ""
        return f"--configfile {shown}: no such file{known}; run snakemake from the repository root"
    return None


def _install() -> None:
    """Wrap the loader of ``--configfile`` files in Snakemake's settings."""
    try:
        from snakemake.exceptions import CliException  # printed as one line: "Error: ..."
        from snakemake.settings import types
    except ImportError:  # another Snakemake layout: leave it as it is
        return
    original = getattr(types, "load_configfile", None)
    if original is None or getattr(original, "_notpipe", False):
        return

    def load_configfile(path):
        problem = configfile_problem(path, sys.argv[1:])
        if problem:
            raise CliException(problem)
        return original(path)

    load_configfile._notpipe = True
    types.load_configfile = load_configfile


class LogHandler(LogHandlerBase, logging.StreamHandler):
    """``--logger notpipe``: Snakemake's messages on stderr, unchanged."""

    def __post_init__(self) -> None:
        logging.StreamHandler.__init__(self, sys.stderr)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False

    @property
    def has_formatter(self) -> bool:
        return False

    @property
    def needs_rulegraph(self) -> bool:
        return False

    def emit(self, record: logging.LogRecord) -> None:
        logging.StreamHandler.emit(self, record)


_install()
