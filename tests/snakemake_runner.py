"""Running Snakemake from the tests: the repository root, the shipped configs, one runner."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args, cwd=REPO, check=True):
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
