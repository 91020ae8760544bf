"""notpipe.stage.entry on the command line: an error a user can cause is one line, no traceback."""

import subprocess
import sys

from conftest import REPO


def test_a_user_error_is_one_line_without_traceback(tmp_path):
    dest = tmp_path / "weights" / "alexnet-owt-7be5be79.pth"
    proc = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / "weights_download.py"),
                           "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", str(dest), "--offline"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(dest) in last and "alexnet-owt-7be5be79.pth" in last


def test_a_bug_keeps_its_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("toy: {experiments: {m: {source: {name: gaussian}, target: {name: moons}, cost: {name: strong}}}}\n")
    proc = subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / "toy_train.py"), "--config", str(bad),
                           "--name", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown experiment 'nope'" in proc.stderr


def test_under_snakemake_a_user_error_is_one_line_and_the_trace_goes_to_the_log(tmp_path):
    """The real data_prepare rule on a missing local archive: the console shows one line."""
    from snakemake_runner import run_snakemake

    (tmp_path / "c.yaml").write_text("data: {offline: true}\n")
    proc = run_snakemake("results/data/anime_16/manifest.json", "--cores", "1", "--configfile",
                         str(tmp_path / "c.yaml"), "--directory", str(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    line = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "anime_faces.zip not found" in line[0] and "full trace: results/logs/" in line[0]
    log = (tmp_path / "results/logs/data/anime_16.prepare.log").read_text()
    assert "Traceback" in log and "DatasetError" in log
