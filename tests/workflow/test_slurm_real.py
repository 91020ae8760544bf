"""The SLURM profiles against a real single-node SLURM (tests/slurm_cluster.py: munged, MariaDB,
slurmdbd, slurmctld and slurmd started here and stopped by their pids; skipped, saying why,
where they cannot run: not root, packages missing, a daemon that does not start).

What one node shows, with real sbatch/squeue/sacct/scancel: a target of configs/smoke.yaml
through profiles/slurm-cpu (the GPU rules as CPU jobs) ends with every job COMPLETED in sacct,
its outputs and logs in place and the local rule run here; a job cancelled with scancel ends
Snakemake with a failure; a cluster without accounting storage (sacct fails) still runs a job
to the end. What it cannot show (several nodes, GPUs, profiles/slurm's --gpus and
--cpus-per-gpu requests): tests/workflow/test_profiles.py, with stand-in SLURM commands.
Select these with `-m slurm`."""

import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_cluster import ACCOUNT, PARTITION, Cluster, ClusterUnavailable, unavailable_reason
from snakemake_runner import REPO, SNAKEMAKE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_CPU = REPO / "profiles" / "slurm-cpu"
SMOKE = REPO / "configs" / "smoke.yaml"
RUN = "shapes_weak"
#: the jobs of the smoke target that must become SLURM jobs, by rule (eval_curve runs here)
SUBMITTED = {"data_prepare": 2, "eval_reference": 1, "train": 1, "eval_snapshot": 2}
#: seconds before the plugin's first status query (its default, 40, would double the test's time)
POLL = ["--slurm-init-seconds-before-status-checks", "2"]
SLEEPER = 'rule sleeper:\n    output: "slept.txt"\n    shell: "sleep 600 && touch {output}"\n'
ECHO = 'rule echo:\n    output: "said.txt"\n    shell: "echo done > {output}"\n'


def _start(root, **kw) -> Cluster:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[test]"')
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no single-node SLURM: {reason}")
    cluster = Cluster(root, **kw)
    try:
        cluster.start()
    except ClusterUnavailable as e:
        cluster.stop()
        pytest.skip(f"single-node SLURM did not start: {e}")
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster with accounting (slurmdbd on MariaDB) for the module; stopped even on failure."""
    c = _start(tmp_path_factory.mktemp("slurm"))
    try:
        yield c
    finally:
        c.stop()


def snakemake(env, workdir, *args, snakefile=REPO / "Snakefile", timeout=420):
    return subprocess.run([*SNAKEMAKE, "--snakefile", str(snakefile), "--directory", str(workdir), *args],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def slurm_ids(out: str) -> list[str]:
    """The SLURM job ids Snakemake reports as submitted."""
    return re.findall(r"SLURM jobid (\d+)", out)


def sacct(cluster, ids, fields="JobIDRaw,State,Comment,Account,Partition,ReqTRES") -> list[dict]:
    proc = cluster.run("sacct", "-X", "--parsable2", "--noheader", f"--format={fields}", "-j", ",".join(ids))
    names = fields.split(",")
    return [dict(zip(names, line.split("|"))) for line in proc.stdout.splitlines() if line]


def test_cpu_profile_runs_the_smoke_target_as_slurm_jobs(cluster, tmp_path):
    target = f"results/smoke/eval/{RUN}/metrics.csv"
    t0 = time.monotonic()
    proc = snakemake(cluster.profile_env(), tmp_path, "--workflow-profile", str(SLURM_CPU), target, *POLL,
                     "--configfile", str(SMOKE))
    out = proc.stdout + proc.stderr
    print(f"snakemake through SLURM: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, out[-4000:]

    # every job COMPLETED in SLURM's accounting, submitted by the rules that must be, on the CPU
    ids = slurm_ids(out)
    rows = sacct(cluster, ids)
    assert len(rows) == len(ids) == sum(SUBMITTED.values()), (ids, rows)
    assert {r["State"] for r in rows} == {"COMPLETED"}, rows
    rules = [re.match(r"rule_(\w+?)_wildcards", r["Comment"]).group(1) for r in rows]
    assert {r: rules.count(r) for r in rules} == SUBMITTED, rows
    for r in rows:
        assert r["Account"] == ACCOUNT and r["Partition"] == PARTITION, r
        assert "gres/gpu" not in r["ReqTRES"] and "mem=8000M" in r["ReqTRES"], r  # gpu 0, mem_mb 8000
    assert "localrule eval_curve:" in out  # the local rule ran in this process, not as a job

    # the outputs of the GPU rules and of the local rule
    assert (tmp_path / f"results/smoke/train/{RUN}/final.pt").stat().st_size > 0
    assert len(list((tmp_path / "results/smoke/eval/refstats").glob("shapes_squares_16_test_*.npz"))) == 1
    steps = sorted(p.name for p in (tmp_path / f"results/smoke/eval/{RUN}/steps").glob("*.csv"))
    assert steps == ["step_00000003.csv", "step_00000006.csv"]
    assert (tmp_path / target).read_text().strip()

    # logs: SLURM's own went to .snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log and were
    # removed on success; the jobs' own logs stay under results/logs
    slurm_logs = re.findall(r"SLURM jobid (\d+) \(log: (.+?)\)\.", out)
    assert sorted(i for i, _ in slurm_logs) == sorted(ids)
    for jobid, path in slurm_logs:
        rel = Path(path).relative_to(tmp_path / ".snakemake" / "slurm_logs")
        assert re.fullmatch(rf"rule_\w+/\w+/{jobid}\.log", str(rel)), rel
        assert not Path(path).exists(), path
    logs = tmp_path / "results" / "logs"
    for log in (f"smoke/train/{RUN}.log", "smoke/eval/refstats_shapes_squares_16.log",
                f"smoke/eval/{RUN}_step_00000003.log", "data/shapes_circles_16.prepare.log"):
        assert (logs / log).exists(), log
    assert (logs / f"smoke/train/{RUN}.log").stat().st_size > 0


def _wait_running(cluster, deadline_s=60) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        rows = cluster.run("squeue", "-h", "-o", "%i|%T").stdout.split()
        running = [r.split("|")[0] for r in rows if r.endswith("|RUNNING")]
        if running:
            return running[0]
        time.sleep(0.5)
    raise AssertionError(f"no job RUNNING after {deadline_s} s: {rows}")


def test_a_job_cancelled_with_scancel_fails_the_run(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(SLEEPER)
    with (tmp_path / "snakemake.out").open("w+") as log:
        proc = subprocess.Popen([*SNAKEMAKE, "--workflow-profile", str(SLURM_CPU), *POLL], cwd=tmp_path,
                                env=cluster.profile_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            job = _wait_running(cluster)
            cluster.run("scancel", job)
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out = (tmp_path / "snakemake.out").read_text()
            raise AssertionError(f"Snakemake still waits 90 s after scancel of job {job}: {out[-1500:]}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = (tmp_path / "snakemake.out").read_text()
    assert rc != 0, out[-2000:]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in out, out[-2000:]
    # what sacct says instead, and the plugin would take for still running
    assert sacct(cluster, [job], "JobIDRaw,State")[0]["State"].startswith("CANCELLED by ")
    assert not (tmp_path / "slept.txt").exists()


def test_a_cluster_without_accounting_runs_a_job_to_the_end(tmp_path):
    bare = _start(tmp_path / "cluster", accounting=False)
    try:
        assert "accounting storage is disabled" in bare.run("sacct", check=False).stderr
        work = tmp_path / "work"
        work.mkdir()
        (work / "Snakefile").write_text(ECHO)
        # no accounts without accounting: an empty account lets the plugin submit without -A
        env = {**bare.profile_env(), "NOTPIPE_SLURM_ACCOUNT": ""}
        proc = snakemake(env, work, "--workflow-profile", str(SLURM_CPU), *POLL,
                         snakefile=work / "Snakefile", timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert (work / "said.txt").read_text() == "done\n"
        assert len(slurm_ids(out)) == 1
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"Snakemake still waits after 120 s: {str(e.stdout or '')[-1500:]}") from None
    finally:
        bare.stop()
