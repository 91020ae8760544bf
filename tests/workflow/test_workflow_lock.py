"""notpipe.workflow_lock: one run per working directory. While a process holds the folder, a
second run is refused with one line before it builds its DAG; dry runs, the commands that do not
execute and the job processes of the holding run are not; the lock goes with its holder, even
on SIGKILL."""

import os
import subprocess
import sys

import pytest
import yaml
from snakemake_runner import run_snakemake

from notpipe.workflow_lock import FolderBusy, hold, lock_path, release

HOLDER = "import sys, time\nfrom notpipe.workflow_lock import hold\nhold(sys.argv[1])\nprint('held', flush=True)\n" \
         "time.sleep(600)\n"
EXP = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "strong"},
       "steps": 10, "batch": 16, "k_t": 2, "log_every": 5, "checkpoint_every": 5,
       "model": {"hidden_t": [16], "hidden_f": [16]}}
MODEL = "results/main/toy/g/model.pt"


def _holder(folder) -> subprocess.Popen:
    """Another process holding ``folder`` (as the main process of a run does)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def held(tmp_path):
    """``tmp_path`` with a toy config (c.yaml), held by another process; yields that process."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"toy": {"experiments": {"g": EXP}}}))
    p = _holder(tmp_path)
    yield p
    p.kill()
    p.wait()


def _smk(folder, *args, check=False):
    return run_snakemake("--cores", "1", "--configfile", str(folder / "c.yaml"), "--directory", str(folder), *args,
                         cwd=folder, check=check)


def test_second_holder_is_refused_with_one_line_and_the_lock_goes_with_a_killed_holder(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(FolderBusy) as err:
            hold(tmp_path)
    finally:
        p.kill()  # SIGKILL: no chance to unlock
        p.wait()
    msg = str(err.value)
    assert "\n" not in msg and f"pid {p.pid} on " in msg, msg
    assert f"is working in {tmp_path.resolve()}: wait for it to finish" in msg, msg
    try:
        assert hold(tmp_path) == lock_path(tmp_path.resolve())  # the kernel freed it with its holder
        assert hold(tmp_path) == lock_path(tmp_path.resolve())  # held already by this process: no-op
        other = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path)], capture_output=True, text=True,
                               timeout=60)
        assert other.returncode != 0 and f"FolderBusy: another snakemake run (pid {os.getpid()} on " in other.stderr
    finally:
        release(tmp_path)


def test_a_run_in_a_held_folder_is_refused_before_its_dag_but_a_dry_run_is_not(tmp_path, held):
    proc = _smk(tmp_path, MODEL)
    out = proc.stdout + proc.stderr
    line = f"another snakemake run (pid {held.pid} on "
    assert proc.returncode != 0 and line in out, out
    (refusal,) = [ln for ln in out.splitlines() if line in ln]
    assert f"is working in {tmp_path}: wait for it to finish or stop it" in refusal
    assert "Building DAG" not in out and not (tmp_path / "results").exists()
    dry = _smk(tmp_path, "-n", MODEL)
    assert dry.returncode == 0 and "toy_train" in dry.stdout and "is working in" not in dry.stdout + dry.stderr


@pytest.mark.slow
def test_commands_that_do_not_run_and_the_jobs_of_the_holding_run_ignore_the_lock(tmp_path, held):
    for args in (["--unlock"], ["--summary"], ["--rulegraph", "dot"], ["--dag", "dot"], ["--list-rules"],
                 ["--lint", "text"], ["--nolock", "-n"]):
        proc = _smk(tmp_path, *args, MODEL)
        assert "is working in" not in proc.stdout + proc.stderr, args
        assert proc.returncode == 0 or args[0] == "--lint", (args, proc.stderr[-2000:])  # lint: 1 on findings
    touch = _smk(tmp_path, "--touch", MODEL)  # --touch writes (mtimes): refused like a run
    assert touch.returncode != 0 and "is working in" in touch.stderr
    # a cluster job step of the holding run (what profiles/slurm's jobs run on a node) works in the folder
    job = _smk(tmp_path, "--mode", "remote", "--target-jobs", "toy_train:name=g", "--allowed-rules", "toy_train")
    assert job.returncode == 0, job.stderr[-2000:]
    assert (tmp_path / MODEL).exists()
    held.kill()  # SIGKILL of the holder: the next run is not refused
    held.wait()
    after = _smk(tmp_path, MODEL)
    assert after.returncode == 0 and "is working in" not in after.stdout + after.stderr, after.stderr[-2000:]
