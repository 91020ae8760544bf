"""notpipe.environment: versions and commit recorded by the jobs, listed by the report."""

import json
import subprocess
import sys

from conftest import REPO

from notpipe import environment


def test_record_names_the_versions_and_the_commit():
    import torch

    rec = environment.record()
    for key in ("python", "torch", "pot", "clean_fid", "lpips", "snakemake", "cuda", "git_commit"):
        assert key in rec and rec[key], key
    assert rec["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert rec["cuda"] == (torch.version.cuda or "none (CPU build)")
    if (REPO / ".git").exists():
        assert len(rec["git_commit"].split("+")[0]) == 40


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert environment.git_commit(tmp_path) == "unknown"


def test_write_and_table_list_distinct_environments(tmp_path):
    a, b = tmp_path / "run_a" / "environment.json", tmp_path / "run_b" / "environment.json"
    a.parent.mkdir()
    b.parent.mkdir()
    rec = environment.record()
    environment.write(a, rec)
    environment.write(b, {**rec, "torch": "9.9.9"})
    assert json.loads(a.read_text()) == rec
    tex = environment.table([a, b, tmp_path / "missing" / "environment.json"])
    assert tex.count(r" \\") == 3  # header + two environments
    assert "9.9.9" in tex and "run\\_a" in tex and "run\\_b" in tex
    assert "no environment" in environment.table([])


def test_record_imports_no_torch_itself():
    code = ("import sys; from notpipe import environment; r = environment.record(); "
            "print('torch' in sys.modules, r['cuda'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "not", "read"]
