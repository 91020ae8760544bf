"""The ``notpipe`` command: ``notpipe doctor [--configfile C] [--profile P]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from notpipe.cli import doctor

    parser = argparse.ArgumentParser(
        prog="notpipe", description="Neural Optimal Transport pipeline helpers (the workflow itself: snakemake).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
