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
