"""Write or check ``envs/requirements.lock``: exact versions of every dependency, transitive ones included.

The lock is made from the environment the tests pass in: starting from notpipe's own
requirements (``pyproject.toml``, with the extras named below), it walks the installed
packages' metadata and pins each one it reaches at its installed version. Tools that are
not dependencies (ruff, pip itself) stay out. ``pyproject.toml`` keeps its ranges for
people who install notpipe into their own environment; ``tests/test_lock.py`` checks that
the lock satisfies them.

    python envs/lock.py            # rewrite envs/requirements.lock from this environment
    python envs/lock.py --check    # exit 1 if this environment differs from the lock
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
LOCK = HERE / "requirements.lock"
EXTRAS = ("test", "slurm", "tb")  # what the README's commands install


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def closure(root: str = "notpipe", extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """``{canonical name: installed version}`` of everything ``root[extras]`` needs, transitively."""
    pins: dict[str, str] = {}
    todo = [(root, set(extras))]
    while todo:
        name, ex = todo.pop()
        dist = metadata.distribution(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if not _wanted(req, ex):
                continue
            key = canon(req.name)
            if key not in pins:
                pins[key] = metadata.version(req.name)
                todo.append((req.name, set(req.extras)))
    pins.pop(canon(root), None)
    return dict(sorted(pins.items()))


def render(pins: dict[str, str]) -> str:
    head = ("# Exact versions of every notpipe dependency (transitive ones included), from the\n"
            "# environment the tests passed in. Made by `python envs/lock.py`; install with\n"
            "#   pip install -r envs/requirements.lock && pip install --no-deps -e .\n"
            f"# Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}; extras: "
            f"{', '.join(EXTRAS)}. torch here is PyPI's CUDA build (README: CPU-only install).\n")
    return head + "".join(f"{k}=={v}\n" for k, v in pins.items())


def read(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canon(name)] = version
    return pins


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare this environment with the lock")
    args = ap.parse_args(argv)
    pins = closure()
    if args.check:
        locked = read()
        diff = sorted(set(pins.items()) ^ set(locked.items()))
        for name, version in diff:
            where = "lock" if locked.get(name) == version else "environment"
            print(f"{name}=={version} only in the {where}")
        return 1 if diff else 0
    LOCK.write_text(render(pins))
    print(f"wrote {LOCK} ({len(pins)} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
