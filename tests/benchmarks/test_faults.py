"""Fault campaign (benchmarks/fault_campaign, run by benchmarks/faults.py): each fault kind
survives a few real trials, and each fault the campaign found stays fixed. The whole file runs
in about 2 minutes on 2 cores."""

import logging
import socket
import subprocess
import sys

import pytest
import torch

import fault_campaign as faults  # benchmarks/fault_campaign (pythonpath in pyproject.toml)
from fault_campaign import config as faults_config
from fault_campaign import net as faults_net
from fault_campaign import state as faults_state
from fault_campaign import train as faults_train
from fault_campaign import workflow as faults_workflow
from snakemake_runner import REPO


def _run(kind, trials, tmp_path):
    tally = faults.run_kind(faults.kinds()[kind], trials, seed=1, work=tmp_path)
    assert tally.tried >= trials and not tally.failures, tally.failures
    assert tally.survived == tally.tried and tally.lost == 0
    return tally


# ------------------------------------------------------------------ one case per kind
def test_config_mutations_fail_naming_the_key_also_through_snakemake(tmp_path):
    tally = _run("config", 1, tmp_path)  # every mutation validated, one through snakemake -n
    assert tally.tried >= 40


def test_download_faults_resume_or_fail_with_one_line(tmp_path):
    _run("download", len(faults_net.FAULTS), tmp_path)


def test_no_network_is_one_line_naming_host_and_offline(tmp_path):
    _run("offline", 4, tmp_path)


def test_checkpoint_damage_uses_newest_readable(tmp_path):
    _run("checkpoint", len(faults_state.DAMAGE), tmp_path)


def test_disk_full_keeps_previous_file_and_names_path(tmp_path):
    _run("disk_full", 3, tmp_path)


def test_corrupt_images_counted_listed_and_thresholded(tmp_path):
    _run("images", len(faults_state.RATES), tmp_path)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    _run("nan", 1, tmp_path)


@pytest.mark.slow
def test_second_concurrent_snakemake_is_refused(tmp_path):
    # one pair per case: second while the first job is held; second's DAG built, the first ends
    # before Snakemake's lock; both at once
    tally = _run("concurrent", len(faults_workflow.CASES), tmp_path)
    assert all(tally.detail[case] == 1 for case in faults_workflow.CASES), tally.detail
    assert "is working in " in tally.example and "wait for it to finish" in tally.example


def test_gpu_slots_never_held_twice_over_100_starts_and_kills(tmp_path):
    _run("gpu_slots", 1, tmp_path)


@pytest.mark.slow
def test_killed_train_job_resumes_bit_identical(tmp_path):
    # one shapes kill during a checkpoint write (the first moment), one toy kill during a step
    tally = _run("kill_train", 2, tmp_path)
    assert sum(v for k, v in tally.detail.items() if k.startswith("shapes ")) == 1
    assert sum(v for k, v in tally.detail.items() if k.startswith("toy ")) == 1


def test_kill_train_moments_cover_every_write():
    assert faults_train.SHAPES.moments[0] == "checkpoint"  # what the case above runs
    assert {"checkpoint", "snapshot", "final", "after_checkpoint", "step"} == set(faults_train.SHAPES.moments)
    assert faults.kinds()["kill_train"].trials >= 30
    seen = faults_train._nth_tmp("step_", 2)
    assert seen(["step_00000004.pt", ".step_00000008.pt.ab_c1.tmp"]) is None
    assert seen([".step_00000012.pt.x1.tmp", ".final.pt.y.tmp"]) == ".step_00000012.pt.x1.tmp"


@pytest.mark.slow
def test_killed_download_resumes_with_range_and_identical_arrays(tmp_path):
    _run("kill_data", 1, tmp_path)


# ------------------------------------------------------------------ the harness itself
def test_harness_counts_tracebacks_and_wrong_keys_as_failures():
    assert not faults.one_clear_line('Traceback (most recent call last):\n  File "x.py", line 1, in <module>')
    assert not faults.one_clear_line("two\nlines") and faults.one_clear_line("error: one line")
    assert faults_config.names_key("  toy.experiments.a.steps: -5 is less than 1", "toy.experiments.a.steps")
    assert not faults_config.names_key("  toy.experiments.b.steps: -5 is less than 1", "toy.experiments.a.steps")
    t = faults.Tally("x", "x")
    t.add(True, "fine")
    t.add(False, "boom", lost=True)
    assert (t.tried, t.survived, t.lost, t.example) == (2, 1, 1, "fine")


def test_cli_help_and_one_kind_with_json(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "faults.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--trials" in out and "--json" in out and "--kinds" in out
    js = tmp_path / "f.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "faults.py"), "--kinds", "11",
                           "--trials", "2", "--json", str(js)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| 11 | no network" in proc.stdout and '"survived": 2' in js.read_text()


# ------------------------------------------------------------------ the faults it found, fixed
def test_incomplete_newest_checkpoint_is_skipped_not_a_keyerror(tmp_path, caplog):
    """Found by kind 3: a newest checkpoint missing trainer keys crashed resume with KeyError."""
    from notpipe.core import checkpoint as ckpt

    exp = faults_state.experiment()
    faults_state._train(exp, tmp_path)
    ref = faults_state.weights(tmp_path / "model.pt")
    (tmp_path / "model.pt").unlink()
    newest = ckpt.list_checkpoints(tmp_path / "checkpoints")[-1]
    state = ckpt.load(newest)
    del state["trainer"]["opt_f"]
    torch.save(state, newest)
    with caplog.at_level(logging.WARNING, logger="notpipe"):
        faults_state._train(exp, tmp_path)
    assert f"skipping incomplete checkpoint {newest} (missing opt_f)" in caplog.text
    assert faults_state.identical(faults_state.weights(tmp_path / "model.pt"), ref)


def test_full_disk_is_one_line_naming_the_path(tmp_path):
    """Found by kind 4: torch.save / np.save on a full disk gave a traceback without the path."""
    import errno

    from notpipe.io import WriteError, atomic_write

    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def full(fh):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(WriteError) as err:
        atomic_write(target, full)
    assert str(err.value).startswith(f"cannot write {target}: No space left on device")
    assert err.value.one_line and target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError):  # other errors pass through unchanged
        atomic_write(target, lambda fh: (_ for _ in ()).throw(ValueError("x")))


def test_unreachable_host_says_what_and_how_to_work_offline(tmp_path):
    """Found by kind 11: connection refused / DNS failure showed a bare URLError."""
    from notpipe.data.download import DownloadError, fetch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        fetch(f"http://127.0.0.1:{port}/a.zip", tmp_path / "a.zip", retries=0, progress=False)
    msg = str(err.value)
    assert f"cannot reach 127.0.0.1:{port} (connection refused)" in msg and "data.offline: true" in msg


def test_prepare_and_nan_errors_are_one_line_on_the_command_line():
    """Found by kinds 7 and 8: PrepareError and NonFiniteLossError printed tracebacks."""
    from notpipe.core.trainer import NonFiniteLossError
    from notpipe.data.prepare import PrepareError

    assert PrepareError.one_line and NonFiniteLossError.one_line


def test_nan_hook_is_off_by_default(monkeypatch):
    from notpipe.core import trainer

    monkeypatch.delenv(trainer.FAULT_NAN_STEP, raising=False)
    assert trainer._fault_nan_step() is None
    monkeypatch.setenv(trainer.FAULT_NAN_STEP, "7")
    assert trainer._fault_nan_step() == 7


def test_checkpoint_without_its_snapshot_resumes_and_publishes_it(shapes_data, tmp_path):
    """Found by kind 1: a kill after a checkpoint but before its snapshot left an image run that failed
    on every rerun (snapshot missing). Snapshots are written first now; a missing one is rebuilt."""
    from conftest import tiny_image_run

    from notpipe import train as images
    from notpipe.core import checkpoint as ckpt

    run = tiny_image_run(steps=6, snapshot_every=2, grid_every=0, cost={"name": "weak", "gamma": 0.5, "z_size": 2})
    images.train(run, "r", shapes_data, tmp_path / "clean", progress=False)
    images.train(dict(run, steps=4), "r", shapes_data, tmp_path / "cut", progress=False)
    kept = tmp_path / "cut/checkpoints/snapshots/step_00000004.pt"
    kept.unlink()  # as left by a kill between step_00000004.pt and its snapshot
    images.train(run, "r", shapes_data, tmp_path / "cut", progress=False)

    def w(path, keys=("T", "f")):
        s = ckpt.load(path)
        s = s.get("trainer", s)
        return {k: s[k] for k in keys}
    assert faults_workflow._same(w(tmp_path / "cut/final.pt"), w(tmp_path / "clean/final.pt"))
    snap = "snapshots/step_00000004.pt"
    assert faults_workflow._same(w(tmp_path / "cut" / snap, ("T",)), w(tmp_path / "clean" / snap, ("T",)))


def test_yaml_syntax_error_in_the_default_config_names_file_and_line(tmp_path):
    """Issue 15 ('a YAML syntax error names the file and the line'): the default config.yaml went through
    Snakemake's `configfile:`, whose error names neither. A copy of the Snakefile beside a broken config.yaml."""
    (tmp_path / "Snakefile").write_text((REPO / "Snakefile").read_text())
    for sub in ("workflow", "envs", "profiles", "report"):
        (tmp_path / sub).symlink_to(REPO / sub)
    (tmp_path / "config.yaml").write_text("suite: main\ntoy:\n  experiments: {a: [1, 2\nresults_dir: results\n")
    (tmp_path / "w").mkdir()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "-n",
                           "--cores", "1", "--directory", str(tmp_path / "w")], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert f"{tmp_path / 'config.yaml'}, line 4, column 12: YAML syntax error" in out, out
    assert "not valid JSON or YAML" not in out


def test_workflow_job_finder_sees_only_its_group():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)  # fault-finder"],
                         start_new_session=True)
    try:
        assert faults_workflow.job_pids(p.pid, "fault-finder") == []  # the leader itself is excluded
        assert faults_workflow.job_pids(1, "fault-finder") == []
    finally:
        p.kill()
        p.wait()
