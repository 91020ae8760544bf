"""What the terminal shows: one line for a --configfile mistake, rule all's files once each,
no `Shell command: None` blocks."""

import re

import pytest
import yaml
from snakemake_runner import REPO, run_snakemake

from snakemake_logger_plugin_notpipe import configfile_problem, reordered


def _workdir(tmp_path):
    for name in ("configs", "config.yaml"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def test_a_target_after_configfile_is_one_line_with_the_command_to_type(tmp_path):
    target = "report/figures/toy/toy/moons_transport.pdf"
    proc = run_snakemake("-n", "--cores", "2", "--configfile", "configs/toy.yaml", target,
                         cwd=_workdir(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1 and f"{target!r} is not one: put targets before --configfile" in lines[0]
    assert lines[0].endswith(f"-n --cores 2 {target} --configfile configs/toy.yaml")


def test_a_missing_configfile_is_one_line(tmp_path):
    proc = run_snakemake("-n", "--configfile", "configs/toyy.yaml", cwd=_workdir(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1 and "--configfile configs/toyy.yaml: no such file" in lines[0] and "toy.yaml" in lines[0]


def test_which_words_are_config_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("suite: x\n")
    assert configfile_problem("c.yaml", []) is None
    assert configfile_problem(tmp_path / "c.yaml", []) is None
    assert "no such file" in configfile_problem("nope.yml", [])
    for target in ("results/data/shoes_128/manifest.json", "report/toy.pdf", "results/toy/toy/summary.csv"):
        assert "is not one" in configfile_problem(target, [])
    argv = ["--cores", "2", "--configfile", "configs/toy.yaml", "report/toy.pdf", "-n"]
    assert reordered(argv) == ["--cores", "2", "report/toy.pdf", "--configfile", "configs/toy.yaml", "-n"]


@pytest.mark.slow
def test_rule_all_lists_each_file_once_and_jobs_print_no_shell_command(tmp_path):
    work = _workdir(tmp_path)
    cfg = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())
    cfg["report"] = {**cfg.get("report", {}), "build": False}  # figures and tables instead of the PDF
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake("-n", "--cores", "2", "--configfile", "c.yaml", cwd=work)  # through profiles/default
    out = proc.stdout + proc.stderr
    files = re.search(r"^rule all:\n\s+input: (.*)$", out, flags=re.M)[1].split(", ")
    assert any(f.endswith("moons_transport.pdf") for f in files)
    assert len(files) == len(set(files)), sorted({f for f in files if files.count(f) > 1})[:5]
    assert "Shell command" not in out


SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
#: folders under results/SUITE/ and results/ (shared by the suites)
SUITE_PARTS, SHARED = {"toy", "train", "eval", "report"}, {"data", "weights", "logs", "benchmarks"}


def _help(script):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_help_shows_the_paths_the_pipeline_writes(script):
    """results/SUITE/{toy,train,eval,report}/..., report/figures/SUITE/..., report/SUITE.pdf."""
    text = _help(script) if script.stem != "report_includes" else script.read_text()  # Snakemake-only script
    assert not re.search(r"\bissue\b", text, flags=re.I)
    for path in re.findall(r"\b(?:results|report)/[\w./*{}-]+", text):
        parts = path.split("/")
        if parts[0] == "results":
            assert parts[1] in SHARED or (len(parts) > 2 and parts[2] in SUITE_PARTS), path
        else:
            assert path != "report/main.pdf" and (
                parts[1] == "main.tex" or parts[1].endswith(".pdf")
                or (parts[1] == "figures" and len(parts) > 3 and parts[3] in {"toy", "images", "speed"})), path
