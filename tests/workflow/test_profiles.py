"""Profiles: profiles/default, profiles/slurm and profiles/slurm-cpu dry-run the toy suite;
the localrules cover every download, summary, table, figure and report rule; slurm-cpu
differs from slurm in set-resources only.

Stand-ins, for what a single CPU node cannot show: profiles/slurm submits a train job of
configs/toy.yaml through stand-in SLURM commands (sbatch, sacct, squeue, sinfo, scontrol,
sacctmgr, sshare, scancel, srun) that record how they were called: the GPU partition and
the --gpus=1/--cpus-per-gpu/--mem 32000 requests, while the localrules run in the Snakemake
process itself. What a real single-node SLURM shows (jobs run to COMPLETED, logs, scancel,
no accounting) is in tests/workflow/test_slurm_real.py."""

import itertools
import json
import os
import re
import sys

import pytest
import yaml
from snakemake_runner import REPO, run_snakemake

TOY = REPO / "configs" / "toy.yaml"
SLURM = REPO / "profiles" / "slurm"
SLURM_CPU = REPO / "profiles" / "slurm-cpu"
GPU_RULES = {"train", "eval_snapshot", "eval_reference"}
ENV = {"NOTPIPE_SLURM_ACCOUNT": "notpipe_acct", "NOTPIPE_SLURM_PARTITION": "cpu",
       "NOTPIPE_SLURM_GPU_PARTITION": "gpu"}
#: rules that must run on the submitting host (by name) ...
LOCAL = re.compile(r"^all$|download|summary|table|figure|report")
#: ... and the compute rules that must become SLURM jobs
SUBMITTED = {"data_prepare", "toy_train", "toy_evaluate", "train", "eval_reference", "eval_snapshot"}

# One script behind every stand-in command: it appends {"cmd", "argv", "stdin"} to
# $NOTPIPE_STUB_DIR/calls.jsonl and answers the way the plugin parses SLURM's output.
STUB = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path

name = Path(sys.argv[0]).name
log = Path(os.environ["NOTPIPE_STUB_DIR"]) / "calls.jsonl"
# the plugin feeds sbatch a script on stdin only with --slurm-pass-command-as-script;
# srun's stdin stays open, so never read it
stdin = sys.stdin.read() if name == "sbatch" and "/dev/stdin" in sys.argv else ""
with log.open("a") as f:
    f.write(json.dumps({{"cmd": name, "argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
calls = [json.loads(line) for line in log.read_text().splitlines()]
ids = [1000 + i for i, c in enumerate(c for c in calls if c["cmd"] == "sbatch")]
if name == "sbatch":  # --parsable: "<jobid>" (or "<jobid>;<cluster>")
    print(ids[-1])
elif name in ("sacct", "squeue") and "--name" in sys.argv:  # status poll: "<jobid>|<state>"
    for i in ids:
        print(f"{{i}}|{{os.environ.get('NOTPIPE_STUB_STATE', 'FAILED')}}")
elif name == "sinfo":  # default partition (starred)
    print("PARTITION\\ncpu*\\ngpu")
elif name == "scontrol":  # show config: MaxArraySize (and MinJobAge, absent here)
    print("MaxArraySize            = 1001")
elif name in ("sacctmgr", "sshare"):  # the accounts of the user
    print("notpipe_acct")
elif name == "srun":  # inside a job: run the command after the options
    args = sys.argv[1:]
    while args and args[0].startswith("-"):
        args.pop(0)
    os.execvp(args[0], args)
"""
STUBS = ("sbatch", "sacct", "squeue", "sinfo", "scontrol", "sacctmgr", "sshare", "scancel", "srun")


def localrules() -> list[str]:
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", (REPO / "Snakefile").read_text(), flags=re.M)
    assert block, "no localrules: directive in the Snakefile"
    return re.findall(r"\w+", block.group(1))


@pytest.fixture
def slurm_env(monkeypatch):
    for var in list(os.environ):
        if var.startswith(("SLURM_", "SBATCH_", "SRUN_")):  # as on a login node, not inside a job
            monkeypatch.delenv(var)
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)


@pytest.fixture
def stand_ins(tmp_path, monkeypatch, slurm_env):
    """PATH starts with the stand-in SLURM commands; returns a reader of their recorded calls."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[test]"')
    bin_dir, stub_dir = tmp_path / "slurm_bin", tmp_path / "slurm_calls"
    bin_dir.mkdir()
    stub_dir.mkdir()
    stub = bin_dir / "slurm_stub.py"
    stub.write_text(STUB)
    stub.chmod(0o755)
    for name in STUBS:
        (bin_dir / name).symlink_to(stub)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NOTPIPE_STUB_DIR", str(stub_dir))

    def calls(cmd=None):
        log = stub_dir / "calls.jsonl"
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r for r in rows if cmd is None or r["cmd"] == cmd]
    return calls


def test_profiles_are_long_option_names():
    for name in ("default", "slurm", "slurm-cpu"):
        prof = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
        for key in prof:
            assert re.fullmatch(r"[a-z][a-z-]+", key), f"profiles/{name}: {key!r} is no long option name"
    slurm = yaml.safe_load((SLURM / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert {"train", "eval_snapshot", "eval_reference"} <= set(slurm["set-resources"])
    # the train rule decides its GPU count (a run's gpus: N); set-resources would replace it
    assert "gpu" not in slurm["set-resources"]["train"]


def test_slurm_cpu_profile_is_slurm_with_the_gpu_rules_on_cpus():
    slurm = yaml.safe_load((SLURM / "config.yaml").read_text())
    cpu = yaml.safe_load((SLURM_CPU / "config.yaml").read_text())
    assert {k: v for k, v in cpu.items() if k != "set-resources"} == \
        {k: v for k, v in slurm.items() if k != "set-resources"}
    assert set(cpu["set-resources"]) == GPU_RULES
    for rule, res in cpu["set-resources"].items():
        assert res["gpu"] == 0 and "slurm_partition" not in res and "cpus_per_gpu" not in res, rule
    # both poll squeue: sacct hangs without accounting storage and on 'CANCELLED by <uid>'
    assert slurm["slurm-status-command"] == "squeue"


def test_slurm_cpu_profile_dry_run(tmp_path, slurm_env):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[test]"')
    proc = run_snakemake("-n", "--workflow-profile", str(SLURM_CPU), "--configfile", str(TOY),
                         "--directory", str(tmp_path), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    train = re.search(r"^rule train:\n(.*?)^\S", out, flags=re.M | re.S).group(1)  # its indented lines
    assert "gpu=0" in train and "slurm_partition=cpu" in train and "mem_mb=8000" in train, train
    assert "runtime=2880" in train and "cpus_per_gpu" not in train, train


def test_localrules_cover_downloads_summaries_tables_figures_and_report(tmp_path):
    proc = run_snakemake("--list-rules", "--configfile", str(TOY), "--directory", str(tmp_path), cwd=tmp_path)
    rules = set(re.findall(r"^(\w+)$", proc.stdout, flags=re.M))
    assert SUBMITTED <= rules, rules
    local = set(localrules())
    assert local <= rules, f"localrules names unknown rules: {sorted(local - rules)}"
    assert {r for r in rules if LOCAL.search(r)} <= local, sorted({r for r in rules if LOCAL.search(r)} - local)
    assert not local & SUBMITTED


def test_default_profile_dry_run(tmp_path):
    proc = run_snakemake("-n", "--profile", str(REPO / "profiles" / "default"), "--configfile", str(TOY),
                         "--directory", str(tmp_path), cwd=tmp_path)
    assert "This was a dry-run" in proc.stdout
    assert "\ntrain " in proc.stdout


@pytest.mark.parametrize("how", ["--workflow-profile", "--profile"])
def test_slurm_profile_dry_run(how, tmp_path, slurm_env):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[test]"')
    proc = run_snakemake("-n", how, str(SLURM), "--configfile", str(TOY), "--directory", str(tmp_path), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert "This was a dry-run" in out
    # the train job's block: its indented lines, up to the next job's header
    lines = out[out.index("rule train:"):].splitlines()
    train = "\n".join([lines[0]] + list(itertools.takewhile(lambda ln: ln.startswith("    "), lines[1:])))
    assert "resources:" in train, train
    # set-resources for train, the environment variables expanded, gpu from the rule
    assert "slurm_partition=gpu" in train and "slurm_account=notpipe_acct" in train, train
    assert "runtime=2880" in train and "mem_mb=32000" in train and "gpu=1" in train and "cpus_per_gpu=4" in train


@pytest.mark.slow
def test_slurm_profile_submits_train_and_keeps_localrules_local(tmp_path, stand_ins):
    """Stand-ins: the GPU request of profiles/slurm, which a node without GPUs refuses."""
    cfg = yaml.safe_load(TOY.read_text())
    run = next(iter(cfg["images"]["runs"]))
    size = cfg["images"]["runs"][run]["image_size"]
    manifests = [f"results/data/{cfg['images']['runs'][run][s]}_{size}/manifest.json" for s in ("source", "target")]
    final = f"results/{cfg['suite']}/train/{run}/final.pt"
    includes = f"results/{cfg['suite']}/report/generated/paths.tex"  # report_includes: a localrule without inputs
    # the data sets first, here (the stand-in sbatch runs nothing): then train is the one job to submit
    run_snakemake("--cores", "2", *manifests, "--configfile", str(TOY), "--directory", str(tmp_path), cwd=tmp_path)
    # nothing submitted (importing the plugin already asks `scontrol show config`, for its --help)
    assert stand_ins("sbatch") == []

    proc = run_snakemake("--workflow-profile", str(SLURM), final, includes, "--configfile", str(TOY),
                         "--directory", str(tmp_path), "--slurm-init-seconds-before-status-checks", "1",
                         cwd=tmp_path, check=False)
    out = proc.stdout + proc.stderr
    # the stand-in sacct reports the job FAILED: Snakemake stops after one status poll
    assert proc.returncode != 0
    assert "SLURM-job '1000' failed, SLURM status is: 'FAILED'" in out, out[-3000:]

    (sbatch,) = stand_ins("sbatch")  # train only: report_includes ran here, data_prepare was done
    argv = sbatch["argv"]
    print("sbatch", " ".join(argv))

    def value(flag):
        return argv[argv.index(flag) + 1]
    assert "--parsable" in argv and "--export=ALL" in argv
    assert value("--comment") == f"rule_train_wildcards_{run}"
    assert value("-A") == "notpipe_acct" and value("-p") == "gpu"
    assert value("-t") == "2880"  # runtime 2d of set-resources, in minutes
    assert value("--mem") == "32000"  # mem_mb
    assert "--gpus=1" in argv  # the rule's gpu=1 (gpu_model unset)
    assert "--cpus-per-gpu=4" in argv and not any(a.startswith("--ntasks") for a in argv)
    assert value("-D") == str(tmp_path)
    assert value("--output") == str(tmp_path / ".snakemake/slurm_logs/rule_train" / run / "%j.log")
    (wrap,) = [a[len("--wrap="):] for a in argv if a.startswith("--wrap=")]
    assert f"--target-jobs 'train:run={run}'" in wrap and "--executor slurm-jobstep" in wrap
    assert (tmp_path / includes).exists()  # the localrule ran in this process
    assert "localrule report_includes:" in out and "\nrule train:" in out

    # what else the plugin asked SLURM: the account check, the status poll and the failure reasons
    cmds = {c["cmd"] for c in stand_ins()}
    assert cmds <= {"sbatch", "sacct", "sacctmgr", "sshare", "scontrol", "sinfo", "squeue"}, cmds
    assert ["-n", "-s", "list", "user"] == stand_ins("sacctmgr")[0]["argv"][:4]
    poll = [c["argv"] for c in stand_ins("sacct") if "--name" in c["argv"]]
    assert poll and poll[0][poll[0].index("--name") + 1] == value("--job-name")
