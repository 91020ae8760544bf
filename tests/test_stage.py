"""notpipe.stage.entry on the command line: an error a user can cause is one line, no traceback."""

import subprocess
import sys

import pytest
import yaml
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


def test_under_snakemake_a_warning_reaches_the_terminal_as_one_line(tmp_path, capsys):
    """entry() with a Snakemake-like object: the log gets the record, the terminal one line."""
    import logging
    import types

    from notpipe.stage import entry

    log = tmp_path / "logs" / "job.log"

    def main():
        logging.getLogger("notpipe.core.checkpoint").warning("moons: not resuming x.pt (config changed: a: 1 -> 2)\nmore")
        logging.getLogger("notpipe").info("training from step 0")

    smk = types.SimpleNamespace(log=[str(log)], threads=1)
    entry(main, None, lambda s: {}, smk, torch_threads=False)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: moons: not resuming x.pt (config changed: a: 1 -> 2) (log: {log})"]
    text = log.read_text()
    assert "WARNING notpipe.core.checkpoint: moons: not resuming" in text and "training from step 0" in text
    assert not logging.getLogger("notpipe").handlers  # removed again when the job ends


@pytest.mark.slow
def test_a_config_change_that_restarts_a_toy_run_is_on_the_terminal(tmp_path):
    from snakemake_runner import run_snakemake

    exp = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "gaussian", "dim": 2, "mean": [1.0, 0.0]},
           "cost": {"name": "strong"}, "steps": 20, "batch": 16, "k_t": 2, "log_every": 10,
           "checkpoint_every": 10, "model": {"hidden_t": [16], "hidden_f": [16]}}
    model = "results/main/toy/g/model.pt"
    args = [model, "--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "--directory", str(tmp_path)]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"toy": {"experiments": {"g": exp}}}))
    run_snakemake(*args)
    exp["source"]["cov"] = "random"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"toy": {"experiments": {"g": exp}}}))
    proc = run_snakemake(*args)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "g: not resuming" in lines[0] and "source.cov: '<unset>' -> 'random'" in lines[0]
    assert lines[0].endswith("(log: results/logs/main/toy/g.train.log)")
