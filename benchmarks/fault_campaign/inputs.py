"""Fault kinds 26-29: hostile downloads, a data_dir shared by two clones or two suites, and
configs that are bombs or ask for impossible sizes.

* 26 ``hostile_downloads``: two URLs that end in the same file name, a URL ending in ``/..``,
  a 2 KB/s server, a trickle below the minimum rate, an endless body without Content-Length,
  an announced size above the cap, a full disk (file size limit), a FIFO, folder or device
  under the download's name, a device as a local source. A real HTTP server on 127.0.0.1.
* 27 ``shared_data_dir``: two processes preparing one data set or downloading one file at
  once, a lock held past ``data.lock_wait``, a holder killed by SIGKILL, a killed build's
  temporary folders.
* 28 ``suite_conflict``: two suites declaring one data set name with other parameters, in
  the library and in ``snakemake -n``.
* 29 ``config_bombs``: YAML alias bombs (lists, mappings, an alias inside its own anchor)
  through ``load_config`` and ``snakemake -n``, and sizes that would only fail on allocation.

A trial survives when the documented outcome happened (the download or data set is right,
or a refusal of one clear line came quickly) and no data was lost (a file holding another
URL's bytes, arrays that differ from a build run alone, a data set rebuilt under another
suite).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import yaml

from .common import Kind, Tally, one_clear_line

REPO = Path(__file__).resolve().parents[2]
#: seconds a refusal may take (it must come before anything big is read or written)
QUICK = 10.0
Trial = Callable[[Path], "tuple[bool, bool, str]"]  # folder -> (survived, data lost, message)


# ------------------------------------------------------------------ a server that misbehaves
class Server:
    """``with Server() as s: s.files["/a"] = data``; ``rate``, ``endless`` and ``no_length`` per path."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.rate: dict[str, float] = {}
        self.endless: set[str] = set()
        self.no_length: set[str] = set()
        self.gets: list[str] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                srv.gets.append(self.path)
                if self.path not in srv.files:
                    return self.send_error(404)
                body = srv.files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if self.path not in srv.endless and self.path not in srv.no_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                rate = srv.rate.get(self.path)
                try:
                    while True:
                        for i in range(0, len(body), 256):
                            self.wfile.write(body[i:i + 256])
                            if rate:
                                time.sleep(256 / rate)
                        if self.path not in srv.endless:
                            return
                except OSError:  # the client hung up
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Server:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _archive(seed: int, n: int = 3, size: int = 60_000) -> bytes:
    rng = random.Random(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"img_{i}.bin", rng.randbytes(size))
    return buf.getvalue()


FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False, "chunk_size": 16 << 10}


def _refused(call: Callable[[], object], error: type, *needles: str) -> tuple[bool, str]:
    """``call`` must raise ``error`` quickly with one clear line holding every needle."""
    t0 = time.monotonic()
    try:
        call()
    except error as e:
        msg = str(e)
        took = time.monotonic() - t0
        ok = one_clear_line(msg) and all(n in msg for n in needles) and took < QUICK
        return ok, msg if ok else f"{msg} (after {took:.1f} s)"
    except Exception:  # a traceback is what the user would see
        return False, traceback.format_exc()
    return False, "accepted: no error"


# ------------------------------------------------------------------ 26: hostile downloads
def _download_trial(case: str, work: Path) -> tuple[bool, bool, str]:
    from notpipe.data.datasets import sources
    from notpipe.data.download import DownloadError, fetch, resolve_local

    data, raw = _archive(1), work / "data" / "raw"
    with Server() as srv:
        srv.files["/data.zip"] = data
        url = srv.base + "/data.zip"
        dest = work / "data.zip"
        if case == "same_name_urls":
            other = _archive(2)
            srv.files.update({"/a/uc?id=AAA": data, "/b/uc?id=BBB": other})
            got = {}
            for name, u in (("one", srv.base + "/a/uc?id=AAA"), ("two", srv.base + "/b/uc?id=BBB")):
                [src] = sources({"url": u}, raw)
                got[name] = fetch(u, src["path"], checksums=work / "data" / "checksums.json", checksum_key=u,
                                  **FAST)
            lost = got["one"].read_bytes() != data or got["two"].read_bytes() != other
            return not lost, lost, f"two files: {got['one'].relative_to(raw)}, {got['two'].relative_to(raw)}"
        if case == "dotdot_url":
            srv.files["/a/.."] = data
            [src] = sources({"url": srv.base + "/a/.."}, raw)
            ok = src["path"].parent.parent == raw and src["path"].name not in ("..", ".")
            if ok:
                fetch(src["url"], src["path"], **FAST)
            ok = ok and src["path"].is_file() and (work / "data").is_dir()
            return ok, False, f"saved as {src['path'].relative_to(work)}"
        if case == "slow_server":
            srv.rate["/data.zip"] = 2000.0
            ok, msg = _refused(lambda: fetch(url, dest, deadline=1.0, min_rate=0, **FAST), DownloadError,
                               "data.download_deadline")
        elif case == "trickle":
            srv.rate["/data.zip"] = 1000.0
            ok, msg = _refused(lambda: fetch(url, dest, min_rate=20_000, rate_window=0.5, **FAST),
                               DownloadError, "data.download_min_rate")
        elif case == "endless_no_length":
            srv.endless.add("/data.zip")
            ok, msg = _refused(lambda: fetch(url, dest, max_bytes=2_000_000, **FAST), DownloadError,
                               "sent more than 2000000 bytes")
            ok = ok and not Path(f"{dest}.part").exists()
        elif case == "announced_over_cap":
            ok, msg = _refused(lambda: fetch(url, dest, max_bytes=10_000, **FAST), DownloadError, "announces")
        elif case == "full_disk":
            code = ("import resource, signal, sys\nfrom notpipe.data.download import DownloadError, fetch\n"
                    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                    "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
                    "try:\n fetch(sys.argv[1], sys.argv[2], backoff=0.01, timeout=5.0, progress=False)\n"
                    "except DownloadError as e:\n print(e)\n")
            proc = subprocess.run([sys.executable, "-c", code, url, str(dest)], capture_output=True, text=True,
                                  timeout=120)
            msg = proc.stdout.strip() or proc.stderr.strip()
            ok = proc.returncode == 0 and one_clear_line(msg) and msg.startswith(f"cannot write {dest}.part")
        elif case in ("fifo_target", "folder_target", "device_target"):
            if case == "fifo_target":
                os.mkfifo(dest)
            elif case == "folder_target":
                dest.mkdir()
            else:
                dest.symlink_to("/dev/zero")
            ok, msg = _refused(lambda: fetch(url, dest, **FAST), DownloadError, str(dest), "move it away")
        elif case == "device_source":
            ok, msg = _refused(lambda: resolve_local("/dev/zero", "archive"), DownloadError, "not a regular file")
        else:
            raise ValueError(f"unknown case {case!r}")
    return ok, dest.is_file() and dest.read_bytes() != data, msg


DOWNLOAD_CASES = ["same_name_urls", "dotdot_url", "slow_server", "trickle", "endless_no_length",
                  "announced_over_cap", "full_disk", "fifo_target", "folder_target", "device_target",
                  "device_source"]


# ------------------------------------------------------------------ 27: one data_dir, two clones
_PREPARE = """
import sys
from notpipe.data.datasets import resolve_datasets
from notpipe.data.prepare import prepare
spec = resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none"}})["x"]
print("ready", flush=True)
sys.stdin.readline()  # go
m = prepare("x", spec, 16, sys.argv[1], sys.argv[2], progress=False, lock_wait=float(sys.argv[3]))
print(m["array_sha256"]["train"], flush=True)
"""


def _spec():
    from notpipe.data.datasets import resolve_datasets

    return resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none"}})["x"]


def _source(work: Path, n: int = 300) -> dict:
    """``work/x.zip`` of ``n`` small PNGs and the data set built from it alone (the reference;
    ``seconds``: how long that build took)."""
    import numpy as np
    from PIL import Image

    from notpipe.data.prepare import prepare

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(work / "x.zip", "w") as zf:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, "PNG")
            zf.writestr(f"imgs/{i:04d}.png", buf.getvalue())
    t0 = time.perf_counter()
    ref = prepare("x", _spec(), 16, work / "ref", work, progress=False)
    return {**ref, "seconds": time.perf_counter() - t0}


def _arrays_match(out: Path, ref: dict) -> bool:
    from notpipe.io import sha256_file

    return all((out / f"{s}.npy").is_file() and sha256_file(out / f"{s}.npy") == ref["array_sha256"][s]
               for s in ("train", "test"))


def _go(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _shared_trial(case: str, work: Path, rng: random.Random) -> tuple[bool, bool, str]:
    from notpipe.data.locks import LockTimeout, held
    from notpipe.data.prepare import prepare

    ref, out = _source(work, n=3000 if case == "two_prepares" else 300), work / "data" / "x_16"
    if case == "two_prepares":
        # the second starts part-way through the first's build (both imported and waiting first)
        procs = [subprocess.Popen([sys.executable, "-c", _PREPARE, str(out), str(work), "600"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        ready = all(p.stdout.readline().strip() == "ready" for p in procs)
        lag = rng.uniform(0.2, 0.7) * ref["seconds"]
        _go(procs[0])
        time.sleep(lag)
        _go(procs[1])
        res = [p.communicate(timeout=600) for p in procs]
        shas = [o.strip().splitlines()[-1] if o.strip() else f"exit {p.returncode}" for p, (o, _) in zip(procs, res)]
        ok = ready and all(p.returncode == 0 for p in procs)
        lost = any(sha != ref["array_sha256"]["train"] for sha in shas if len(sha) == 64) or not _arrays_match(out, ref)
        return ok and not lost, lost, (f"second started {lag:.2f} s into the first's build: both exit 0 with the "
                                       "arrays of a build run alone" if ok and not lost
                                       else f"{shas}: " + " | ".join(e[-300:] for _, e in res))
    if case == "two_downloads":
        data = _archive(3, n=10)
        with Server() as srv:
            srv.files["/d.zip"] = data
            srv.rate["/d.zip"] = 600_000.0  # about a second
            dest = work / "raw" / "d.zip"
            code = ("import sys\nfrom notpipe.data.download import fetch\n"
                    "fetch(sys.argv[1], sys.argv[2], backoff=0.01, progress=False)\n")
            procs = [subprocess.Popen([sys.executable, "-c", code, srv.base + "/d.zip", str(dest)],
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
            errs = [p.communicate(timeout=300)[1] for p in procs]
            gets = list(srv.gets)
        ok = all(p.returncode == 0 for p in procs) and gets == ["/d.zip"]
        lost = dest.exists() and dest.read_bytes() != data
        return ok and not lost, lost, ("one GET for two processes, file intact" if ok and not lost
                                       else f"GETs {gets}; " + " | ".join(e[-300:] for e in errs))
    if case == "lock_timeout":
        with held(out / ".lock", "campaign"):
            ok, msg = _refused(lambda: prepare("x", _spec(), 16, out, work, progress=False, lock_wait=0.5),
                               LockTimeout, str(out), "data.lock_wait")
        return ok and not (out / "manifest.json").exists(), False, msg
    if case == "killed_holder":
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom notpipe.data.locks import held\n"
                                   "with held(sys.argv[1], 'x'):\n print('held', flush=True); time.sleep(120)",
                                   str(out / ".lock")], stdout=subprocess.PIPE, text=True)
        try:
            held_ok = holder.stdout.readline().strip() == "held"
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            prepare("x", _spec(), 16, out, work, progress=False, lock_wait=10)
        finally:
            with contextlib.suppress(OSError):
                holder.kill()
            holder.wait()
        lost = not _arrays_match(out, ref)
        return held_ok and not lost, lost, "the lock of a SIGKILLed holder is free at once"
    if case == "stale_tmp":
        import numpy as np

        (out / ".tmp").mkdir(parents=True)
        np.save(out / ".tmp" / "all.npy", np.zeros((2, 16, 16, 3), np.uint8))
        (out / ".tmp-killed").mkdir()
        prepare("x", _spec(), 16, out, work, progress=False)
        lost = not _arrays_match(out, ref)
        left = sorted(p.name for p in out.glob(".tmp*"))
        return not lost and not left, lost, f"temporary folders of a killed build removed ({left or 'none left'})"
    raise ValueError(f"unknown case {case!r}")


SHARED_CASES = ["two_prepares", "two_downloads", "lock_timeout", "killed_holder", "stale_tmp"]


# ------------------------------------------------------------------ 28: two suites, one name
def _dry_run(cfg: Path, work: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n",
                           "--cores", "1", "--configfile", str(cfg), "--directory", str(work)],
                          capture_output=True, text=True, timeout=300, cwd=work)
    text = proc.stdout + proc.stderr
    # the WorkflowError's message line (Snakemake adds its location in common.smk)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Using workflow")
             and not ln.strip().startswith(("File \"", "WorkflowError in file", "Building DAG"))]
    return proc.returncode, "\n".join(lines)


def _suite_trial(case: str, work: Path) -> tuple[bool, bool, str]:
    from notpipe.data.datasets import resolve_datasets
    from notpipe.data.prepare import PrepareError, prepare
    from notpipe.io import sha256_file

    if case == "library":
        _source(work, n=40)
        out = work / "data" / "x_16"
        first = prepare("x", _spec(), 16, out, work, progress=False, suite="paper")
        other = resolve_datasets({"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "center"}})["x"]
        ok, msg = _refused(lambda: prepare("x", other, 16, out, work, progress=False, suite="toy"),
                           PrepareError, "suite 'paper'", "suite 'toy'", "crop")
        lost = sha256_file(out / "train.npy") != first["array_sha256"]["train"]
        return ok and not lost, lost, msg
    if case == "dry_run":
        ds = resolve_datasets({"shapes_circles": {"n": 40}})["shapes_circles"]
        out = work / "results" / "data" / "shapes_circles_16"
        first = prepare("shapes_circles", ds, 16, out, work / "raw", progress=False, suite="one")
        cfg = work / "two.yaml"
        cfg.write_text(yaml.safe_dump({"suite": "two", "data": {"build": ["shapes_circles"], "image_size": 16},
                                       "datasets": {"shapes_circles": {"n": 50}}}))
        code, text = _dry_run(cfg, work)
        ok = code != 0 and one_clear_line(text) and "suite 'one'" in text and "suite 'two'" in text
        lost = sha256_file(out / "train.npy") != first["array_sha256"]["train"]
        return ok and not lost, lost, text
    raise ValueError(f"unknown case {case!r}")


SUITE_CASES = ["library", "dry_run"]


# ------------------------------------------------------------------ 29: config bombs and sizes
def bomb(levels: int = 9, width: int = 9, mapping: bool = False) -> str:
    """``levels`` anchors, each ``width`` aliases of the one before: ``width**levels`` values, < 1 KB."""
    if mapping:
        lines = ["a0: &a0 {" + ", ".join(f"k{j}: lol" for j in range(width)) + "}"]
        lines += [f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}"
                  for i in range(1, levels)]
    else:
        lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nsuite: bomb\ndatasets:\n  shoes:\n    pairs: *a{levels - 1}\n"


def _config_trial(case: str, work: Path) -> tuple[bool, bool, str]:
    from notpipe.config import ConfigError, load_config, validate_config

    path = work / "c.yaml"
    if case in ("list_bomb", "mapping_bomb", "self_alias"):
        path.write_text({"list_bomb": bomb(), "mapping_bomb": bomb(mapping=True),
                         "self_alias": "datasets:\n  shoes: &s\n    pairs: [*s]\n"}[case])
        ok, msg = _refused(lambda: load_config(path), ConfigError, str(path))
        return ok, False, msg
    if case == "list_bomb_dry_run":
        path.write_text(bomb())
        t0 = time.monotonic()
        code, text = _dry_run(path, work)
        ok = code != 0 and one_clear_line(text) and str(path) in text and time.monotonic() - t0 < 120
        return ok, False, text
    if case == "anchors_and_merge_keys":
        cfg = load_config(REPO / "config.yaml")  # legitimate aliases stay allowed
        return bool(cfg["images"]["runs"]), False, "config.yaml (anchors, <<: merge keys) loads"
    sizes = {"image_size": ({"data": {"image_size": 100000}}, "data.image_size", "GiB as uint8"),
             "n_eval": ({"toy": {"n_eval": 100000000, "experiments": {}}}, "toy.n_eval", "cost matrix"),
             "run_image_size": ({"images": {"runs": {"r": {"source": "shoes", "target": "handbag",
                                                           "cost": {"name": "strong"}, "image_size": 65536}}}},
                                "images.runs.r.image_size", "GiB as uint8")}
    if case in sizes:
        cfg, key, estimate = sizes[case]
        ok, msg = _refused(lambda: validate_config(cfg), ConfigError, key, estimate)
        line = next((ln.strip() for ln in msg.splitlines() if key in ln), msg)
        return ok or (key in line and estimate in line and "\n" not in line), False, line
    raise ValueError(f"unknown case {case!r}")


CONFIG_CASES = ["list_bomb", "mapping_bomb", "self_alias", "list_bomb_dry_run", "anchors_and_merge_keys",
                "image_size", "n_eval", "run_image_size"]


# ------------------------------------------------------------------ kinds
def _runner(name: str, title: str, cases: list[str], trial: Callable[..., tuple[bool, bool, str]],
            with_rng: bool = False):
    def run(rng: random.Random, trials: int, work: Path) -> Tally:
        tally = Tally(name, title)
        for i in range(trials):
            case = cases[i % len(cases)]
            folder = work / f"{i:03d}-{case}"
            folder.mkdir(parents=True)
            try:
                ok, lost, msg = trial(case, folder, rng) if with_rng else trial(case, folder)
            except Exception:  # noqa: BLE001 - a crash is a failed trial with its traceback
                ok, lost, msg = False, False, traceback.format_exc()
            tally.add(ok, msg, lost=lost, what=case)
        return tally
    return run


TITLES = {"hostile_downloads": "downloads: same-name URLs, /.., slow, endless, over cap, full disk, non-files",
          "shared_data_dir": "two clones on one data_dir: concurrent prepares and downloads, locks",
          "suite_conflict": "two suites, one data set name, other parameters",
          "config_bombs": "YAML alias bombs and sizes that fail on allocation"}

KINDS = [Kind("hostile_downloads", 26, TITLES["hostile_downloads"], len(DOWNLOAD_CASES),
              _runner("hostile_downloads", TITLES["hostile_downloads"], DOWNLOAD_CASES, _download_trial)),
         Kind("shared_data_dir", 27, TITLES["shared_data_dir"], len(SHARED_CASES),
              _runner("shared_data_dir", TITLES["shared_data_dir"], SHARED_CASES, _shared_trial, with_rng=True)),
         Kind("suite_conflict", 28, TITLES["suite_conflict"], len(SUITE_CASES),
              _runner("suite_conflict", TITLES["suite_conflict"], SUITE_CASES, _suite_trial)),
         Kind("config_bombs", 29, TITLES["config_bombs"], len(CONFIG_CASES),
              _runner("config_bombs", TITLES["config_bombs"], CONFIG_CASES, _config_trial))]
