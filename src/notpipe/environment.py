"""What a result was computed with: package versions, the CUDA build and the pipeline's git commit.

Training and evaluation jobs store :func:`record` in their outputs (``final.pt`` and
``environment.json`` beside it; one ``*.environment.json`` per evaluated snapshot), and
the report lists the distinct records it finds (:func:`table`). Versions come from the
installed packages' metadata, so this imports neither torch nor the evaluation libraries,
except that the CUDA build is read from torch when torch is already imported.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from notpipe.io import atomic_write

#: distribution name -> column of the record
PACKAGES = {"torch": "torch", "torchvision": "torchvision", "POT": "pot", "clean-fid": "clean_fid",
            "lpips": "lpips", "snakemake": "snakemake", "numpy": "numpy", "notpipe": "notpipe"}
REPO = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = REPO) -> str:
    """``HEAD``'s commit of the pipeline checkout, ``+dirty`` with uncommitted changes; ``unknown``
    outside a git checkout (an installed wheel)."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def record() -> dict:
    """Versions of Python, torch (and its CUDA build), POT, clean-fid, lpips, snakemake, ..., the commit."""
    out = {"python": platform.python_version()}
    out.update({col: _version(dist) for dist, col in PACKAGES.items()})
    torch = sys.modules.get("torch")
    out["cuda"] = (torch.version.cuda or "none (CPU build)") if torch is not None else "not read"
    if torch is not None and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
    out["git_commit"] = git_commit()
    return out


def write(path: str | Path, rec: dict | None = None) -> Path:
    """``record()`` (or ``rec``) as JSON, atomically."""
    text = json.dumps(rec or record(), indent=1, sort_keys=True) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def table(paths: list[str | Path]) -> str:
    """LaTeX table of the distinct environments recorded in ``paths`` (missing files are skipped)."""
    from notpipe.report.tables import tex

    seen: dict[str, list[str]] = {}
    recs = {}
    for p in map(Path, paths):
        if not p.is_file():
            continue
        rec = json.loads(p.read_text())
        key = json.dumps(rec, sort_keys=True)
        recs[key] = rec
        seen.setdefault(key, []).append(p.parent.name if p.name == "environment.json" else p.name.split(".")[0])
    if not recs:
        return "% no environment recorded yet\n"
    cols = ["python", *PACKAGES.values(), "cuda", "git_commit"]
    rows = []
    for key, rec in recs.items():
        cells = [tex(str(rec.get(c, "--"))[:12] if c == "git_commit" else str(rec.get(c, "--"))) for c in cols]
        rows.append(" & ".join([tex(", ".join(sorted(set(seen[key])))[:40]), *cells]) + r" \\")
    head = " & ".join(["outputs", *[tex(c) for c in cols]]) + r" \\"
    return "\n".join([r"\begin{table}[H]", r"\centering", r"\small",
                      r"\caption{Software the results were computed with (recorded by the jobs).}",
                      r"\label{tab:environment}", r"\resizebox{\linewidth}{!}{%",
                      r"\begin{tabular}{l" + "l" * len(cols) + "}", r"\toprule", head, r"\midrule", *rows,
                      r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""])
