"""A real single-node SLURM cluster in one folder: munged, MariaDB, slurmdbd, slurmctld, slurmd.

Debian's packages (as root): ``apt-get install munge slurmctld slurmd slurm-client slurmdbd
mariadb-server``. Every configuration file, state, log and socket lives under the folder; the
daemons run in the foreground as children of this process and are stopped by their pids.
Settings that need neither systemd nor cgroups: ``ProctrackType=proctrack/linuxproc``,
``TaskPlugin=task/none``, ``SelectType=select/cons_tres``, no ``cgroup.conf``. Jobs find the
configuration through ``{folder}/bin/srun`` (first on PATH), which sets ``SLURM_CONF``.

By hand (root)::

    python tests/slurm_cluster.py /tmp/cluster            # add --no-accounting to leave out slurmdbd
    # it prints the variables to export in another shell (SLURM_CONF, NOTPIPE_SLURM_*), then
    # waits; Ctrl-C cancels the cluster's jobs and stops the daemons.

In the tests::

    with Cluster(tmp_path / "cluster") as cluster:   # raises ClusterUnavailable(reason)
        subprocess.run(["sbatch", ...], env=cluster.env)
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: the executables the cluster needs (Debian package in brackets in the skip reason)
PROGRAMS = {"munged": "munge", "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
            "slurmdbd": "slurmdbd", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client",
            "srun": "slurm-client",
            "sacct": "slurm-client", "sacctmgr": "slurm-client", "scontrol": "slurm-client"}
PACKAGES = "munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
CLUSTER = "notpipe"
ACCOUNT = "notpipe"
PARTITION = "cpu"
NODE = "node1"


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here (not root, packages missing, a daemon did not start)."""


def missing_programs() -> list[str]:
    """The executables of PROGRAMS that are not on PATH (nor in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def unavailable_reason() -> str | None:
    """Why the cluster cannot start here, before trying; None when it may."""
    if not sys.platform.startswith("linux"):
        return "a SLURM cluster needs Linux"
    if os.geteuid() != 0:
        return "the SLURM daemons need root (slurmd starts jobs as their users)"
    missing = missing_programs()
    if missing:
        return f"{', '.join(missing)} not installed (as root: apt-get install {PACKAGES})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4000


class Cluster:
    """One SLURM cluster (partition ``cpu``, one node with this machine's cores) under ``root``.

    accounting: slurmdbd on MariaDB (``sacct``, accounts); without it sacct answers
    "Slurm accounting storage is disabled". min_job_age: seconds a finished job stays in squeue.
    """

    def __init__(self, root: Path, accounting: bool = True, min_job_age: int = 300):
        self.root = Path(root).resolve()
        self.accounting = accounting
        self.min_job_age = min_job_age
        self.procs: list[tuple[str, subprocess.Popen]] = []  # (name, process), in start order
        self.conf = self.root / "etc" / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.bin = self.root / "bin"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))},
                    "SLURM_CONF": str(self.conf),
                    "PATH": os.pathsep.join([str(self.bin), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])}

    # ------------------------------------------------------------------ start and stop
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        for d in ("bin", "etc", "log", "run", "state", "spool", "munge"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._write_srun()
        self.ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "mysql")}
        self._start_munge()
        self._write_slurm_conf()  # sacctmgr too reads it (slurmdbd's address)
        if self.accounting:
            self._start_mariadb()
            self._write_dbd_conf()
            self._spawn("slurmdbd", ["slurmdbd", "-D"])
            self._wait("slurmdbd", lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]), 60)
            self._sacctmgr("add", "cluster", CLUSTER)
            self._sacctmgr("add", "account", ACCOUNT, f"Cluster={CLUSTER}", "Description=notpipe tests",
                           "Organization=notpipe")
            self._sacctmgr("add", "user", getpass.getuser(), f"Account={ACCOUNT}",  # the plugin checks it
                           f"Cluster={CLUSTER}")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: self._ok(["scontrol", "ping"], want="UP"), 60)
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE])
        self._wait("slurmd", lambda: self._ok(["sinfo", "-h", "-n", NODE, "-o", "%T"], want="idle"), 60)

    def stop(self) -> None:
        """Cancel the cluster's jobs, then stop each daemon by its pid (newest first)."""
        if any(name == "slurmctld" and p.poll() is None for name, p in self.procs):
            subprocess.run(["scancel", "--full", f"--partition={PARTITION}"], env=self.env,
                           capture_output=True, timeout=30)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self._out(["squeue", "-h", "-o", "%i"]).strip():
                time.sleep(0.5)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs.clear()

    # ------------------------------------------------------------------ daemons
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append((name, proc))

    def _wait(self, name: str, ready, timeout: float) -> None:
        proc = dict(self.procs)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ClusterUnavailable(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.3)
        raise ClusterUnavailable(f"{name} not ready after {timeout:.0f} s: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of a daemon's log (its own log file, else what it printed)."""
        text = ""
        for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no log)"

    def _write_srun(self) -> None:
        """srun first on PATH, with SLURM_CONF: a job runs its step with `srun`, and the jobstep
        plugin drops every SLURM_* variable (SLURM_CONF too) before, so a real srun would look for
        /etc/slurm/slurm.conf, where a cluster normally has it and this one has not."""
        srun = shutil.which("srun", path=self.env["PATH"].split(os.pathsep, 1)[1])
        wrapper = self.bin / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{srun}" "$@"\n')
        wrapper.chmod(0o755)

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.munge_socket = self.root / "munge" / "munge.socket"
        # --force: a socket under a folder that only root can enter (pytest's tmp_path) is fine here
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}",
                               f"--pid-file={self.root / 'run' / 'munged.pid'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        self._wait("munged", lambda: self._ok(["munge", "-n", "-S", str(self.munge_socket)]), 20)

    def _start_mariadb(self) -> None:
        data = self.root / "mysql"
        small = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=64M"]
        proc = subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
                               "--auth-root-authentication-method=normal", "--skip-test-db", *small],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"mariadb-install-db failed: {proc.stderr.strip()[-300:]}")
        self._spawn("mariadb", ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
                                f"--socket={self.root / 'run' / 'mysqld.sock'}", "--bind-address=127.0.0.1",
                                f"--port={self.ports['mysql']}", "--skip-name-resolve", "--skip-log-bin",
                                f"--pid-file={self.root / 'run' / 'mariadb.pid'}",
                                f"--log-error={self.root / 'log' / 'mariadb.log'}",
                                "--innodb-lock-wait-timeout=900", *small])

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.ports["mysql"])) == 0
        self._wait("mariadb", listening, 60)

    def _write_dbd_conf(self) -> None:
        dbd = self.conf.parent / "slurmdbd.conf"  # slurmdbd reads it beside $SLURM_CONF
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost={self.host}
DbdAddr=127.0.0.1
DbdPort={self.ports['dbd']}
SlurmUser=root
LogFile={self.root / 'log' / 'slurmdbd.log'}
PidFile={self.root / 'run' / 'slurmdbd.pid'}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mysql']}
StorageUser=root
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)  # slurmdbd refuses a slurmdbd.conf that others can read

    def _write_slurm_conf(self) -> None:
        r = self.root
        accounting = (f"AccountingStorageType=accounting_storage/slurmdbd\n"
                      f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={self.ports['dbd']}\n"
                      # the munge socket for slurmdbd's connections (else the default one)
                      f"AccountingStoragePass={self.munge_socket}\n"
                      "AccountingStoreFlags=job_comment\n"
                      if self.accounting else "AccountingStorageType=accounting_storage/none\n")
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ports['ctld']}
SlurmdPort={self.ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}
SlurmdPidFile={r / 'run' / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge={self.min_job_age}
KillWait=5
{accounting}JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={NODE} NodeHostname={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")

    # ------------------------------------------------------------------ commands
    def _out(self, argv: list[str]) -> str:
        try:
            return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def _ok(self, argv: list[str], want: str | None = None) -> bool:
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0 and (want is None or want in proc.stdout)

    def _sacctmgr(self, *args: str) -> None:
        proc = subprocess.run(["sacctmgr", "-i", *args], env=self.env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0 and "Nothing new added" not in proc.stdout + proc.stderr:
            raise ClusterUnavailable(f"sacctmgr {' '.join(args)}: {(proc.stdout + proc.stderr).strip()[-300:]}")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM command (sacct, squeue, scancel, ...) against this cluster."""
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
        return proc

    def profile_env(self) -> dict[str, str]:
        """The cluster's environment with the variables profiles/slurm reads."""
        return {**self.env, "NOTPIPE_SLURM_ACCOUNT": ACCOUNT, "NOTPIPE_SLURM_PARTITION": PARTITION,
                "NOTPIPE_SLURM_GPU_PARTITION": PARTITION}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a single-node SLURM cluster in FOLDER until Ctrl-C.")
    parser.add_argument("folder", type=Path, help="configuration, state and logs (created; empty or new)")
    parser.add_argument("--no-accounting", action="store_true", help="no slurmdbd/MariaDB (sacct fails)")
    parser.add_argument("--min-job-age", type=int, default=300, help="seconds a finished job stays in squeue")
    args = parser.parse_args(argv)
    cluster = Cluster(args.folder, accounting=not args.no_accounting, min_job_age=args.min_job_age)
    try:
        cluster.start()
    except ClusterUnavailable as e:
        cluster.stop()
        print(f"error: {e}", file=sys.stderr)
        return 1
    env = cluster.profile_env()
    print("cluster up; in another shell:")
    for var in ("SLURM_CONF", "NOTPIPE_SLURM_ACCOUNT", "NOTPIPE_SLURM_PARTITION", "NOTPIPE_SLURM_GPU_PARTITION"):
        print(f"  export {var}={env[var]}")
    print(f"  export PATH={cluster.bin}:$PATH   # srun with SLURM_CONF, for the jobs")
    print(f"daemon logs: {cluster.root / 'log'}; Ctrl-C stops the cluster", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.poll() is None for _, p in cluster.procs):
            time.sleep(1)
        print("a daemon exited: " + ", ".join(n for n, p in cluster.procs if p.poll() is not None), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
