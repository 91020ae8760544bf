"""Entry-point plumbing shared by the stage scripts in ``workflow/scripts/``.

A stage script defines ``main(**kwargs)``, an ``argparse`` parser and a function
mapping Snakemake's ``snakemake`` object to the same keyword arguments, then
calls :func:`entry`. Under Snakemake's ``script:`` directive, logging (and
stderr, so tqdm bars and tracebacks) go to ``snakemake.log[0]`` and torch uses
``snakemake.threads`` threads; a warning of the ``notpipe`` loggers also reaches
the terminal as one line, as an error does. From the command line, logging goes
to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(stream=None) -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=stream or sys.stderr, force=True)


class TerminalWarnings(logging.Handler):
    """Each warning as one line ``warning: ... (log: PATH)`` on ``stream`` (the terminal), while
    the job's log keeps the full record. Errors are not repeated here: :func:`entry` prints them."""

    def __init__(self, stream, log: str | None = None):
        super().__init__(logging.WARNING)
        self.stream, self.log = stream, log

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno == logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        try:
            first = (record.getMessage().splitlines() or [""])[0]
            self.stream.write(f"warning: {first}" + (f" (log: {self.log})" if self.log else "") + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 (logging's own convention: never raise from a handler)
            self.handleError(record)


@contextlib.contextmanager
def warnings_to(stream, log: str | None):
    """Send the ``notpipe`` loggers' warnings to ``stream`` as one line each while inside."""
    handler, logger = TerminalWarnings(stream, log), logging.getLogger("notpipe")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _stderr_to(path: str | None):
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh:
        old, sys.stderr = sys.stderr, fh
        try:
            setup_logging(fh)
            with warnings_to(old, path):  # the terminal still gets what a user must see
                yield
        finally:
            sys.stderr = old


def entry(main: Callable[..., object], parser: argparse.ArgumentParser,
          from_snakemake: Callable[[object], dict], smk=None, threads: int | None = None,
          torch_threads: bool = True) -> None:
    """Run ``main`` with arguments from Snakemake (``smk``) or the command line.

    ``torch_threads=False``: the script does not use torch (tables, summaries, figures),
    so torch is not imported at all (about 2 s per job). Every stage script ends in
    this call: one convention for logs, threads and the command line.
    """
    if smk is not None:
        log = smk.log[0] if len(smk.log) else None
        try:
            with _stderr_to(log):
                if torch_threads:
                    import torch  # here: table and figure scripts never pay for it

                    torch.set_num_threads(max(1, int(smk.threads)))
                try:
                    main(**from_snakemake(smk))
                except Exception:
                    logging.getLogger("notpipe").exception("stage failed")  # the full trace: the job's log
                    raise
        except Exception as exc:
            if getattr(exc, "one_line", False):  # the console gets the one line, not the trace
                print(f"error: {exc}" + (f" (full trace: {log})" if log else ""), file=sys.stderr)
                raise SystemExit(1) from None
            raise
        return
    args = parser.parse_args()
    setup_logging()
    if threads is not None and torch_threads:
        import torch

        torch.set_num_threads(threads)
    try:
        main(**vars(args))
    except Exception as exc:
        if getattr(exc, "one_line", False):  # an error that says all a user needs: no traceback
            raise SystemExit(f"error: {exc}") from None
        raise
