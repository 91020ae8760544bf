"""Fault campaign: kill, corrupt, fill the disk and feed bad input, then count what survived.

    python benchmarks/faults.py                       # every kind, default trial counts (<= 15 min, 2 cores)
    python benchmarks/faults.py --kinds config,download --trials 50 --json faults.json

Prints one Markdown table: per fault kind, trials tried, survived, data lost
(must be 0) and an example of the one line a user sees. Traffic goes only to
127.0.0.1; every run works in a temporary folder and stops by itself. Exit status
1 when a trial failed or lost data. The kinds live in benchmarks/fault_campaign/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
for _var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_var, None)
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "*"  # loopback only, never through a proxy


def main(argv: list[str] | None = None) -> int:
    import fault_campaign as faults  # benchmarks/fault_campaign (this script's folder is on sys.path)

    kinds = faults.kinds()
    listing = "; ".join(f"{k.name} (#{k.number}, default {k.trials})" for k in kinds.values())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"kinds: {listing}. For 'config' every generated mutation is "
                                "validated; --trials is how many also go through snakemake -n.")
    p.add_argument("--trials", type=int, help="trials per kind (default: each kind's own count)")
    p.add_argument("--kinds", help="comma-separated kinds or kind numbers (default: all)")
    p.add_argument("--json", metavar="PATH", help="also write the results (with every failure) as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the random fault points")
    p.add_argument("--log", metavar="PATH", help="warnings of the code under test (default: discarded)")
    args = p.parse_args(argv)
    chosen = list(kinds.values())
    if args.kinds:
        by_number = {str(k.number): k for k in kinds.values()}
        chosen = []
        for name in args.kinds.split(","):
            name = name.strip()
            if name not in kinds and name not in by_number:
                p.error(f"unknown kind {name!r}; known: {', '.join(kinds)}")
            chosen.append(kinds.get(name) or by_number[name])
    handler = logging.FileHandler(args.log) if args.log else logging.NullHandler()
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    t0 = time.perf_counter()
    tallies = []
    for kind in chosen:
        print(f"[{time.perf_counter() - t0:6.0f} s] {kind.name} ...", file=sys.stderr, flush=True)
        tallies.append(faults.run_kind(kind, args.trials, args.seed))
    print(faults.render(tallies))
    print(f"\n{started}, {time.perf_counter() - t0:.0f} s: python benchmarks/faults.py"
          + (" " + " ".join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else ""))
    for t in tallies:  # e.g. where the kills of kind 1 landed
        if t.detail:
            print(f"\n{t.kind}: " + "; ".join(f"{k} {v}" for k, v in sorted(t.detail.items())))
    bad = [t for t in tallies if t.failures]
    if bad:  # each failure under the table
        print("\nfailures:")
        for t in bad:
            for f in t.failures:
                print(f"  {t.kind}: {f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": started, "seed": args.seed, "kinds": [t.as_dict() for t in tallies]}, fh, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
