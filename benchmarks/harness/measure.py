"""Timing and peak-memory helpers of the speed benchmarks (``benchmarks/*_speed.py``).

Device-agnostic: synchronise, reset and read peak memory (CUDA ``max_memory_allocated``;
on CPU the peak RSS of a phase via ``/proc/self/clear_refs``), name the device, look up
a GPU's dense peak FLOP/s, and time a ``run(n_steps)`` callable between synchronisations
while counting the cores other processes kept busy (a CPU figure taken on a busy machine
is flagged rather than trusted).
"""

from __future__ import annotations

import gc
import os
import platform
import re
import resource
import time
from pathlib import Path

import torch

#: dense peak FLOP/s (bf16 tensor core, tf32 tensor core, fp32 non-tensor) from the vendors' data sheets
PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}



def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmHWM``, ``VmRSS``) in bytes (Linux), else None."""
    try:
        m = re.search(rf"{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _vm_hwm() -> int | None:
    """Peak RSS of this process since the last reset."""
    return _proc_status_bytes("VmHWM")


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # "5" resets the peak RSS (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def _vm_rss() -> int | None:
    return _proc_status_bytes("VmRSS")


def peak_memory(device: torch.device, rss_at_reset: int | None = None) -> dict:
    if device.type == "cuda":
        return {"kind": "cuda max_memory_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    peak = _vm_hwm()
    return {"kind": "peak RSS of the timed phase (VmHWM)", "bytes": peak, "rss_at_start": rss_at_reset,
            "growth_bytes": None if peak is None or rss_at_reset is None else peak - rss_at_reset}


def process_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU, {torch.get_num_threads()} threads ({name}, {os.cpu_count()} cores visible)"


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak of a known GPU for the precision used (fp32 convs use TF32 when cuDNN allows it)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, table in PEAK_FLOPS.items():
        if all(part in name for part in key.split()):
            if precision == "bf16":
                return table["bf16"]
            return table["tf32"] if torch.backends.cudnn.allow_tf32 else table["fp32"]
    return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have been busy (Linux /proc/stat), else None."""
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None



def timed(run, warmup: int, steps: int, device: torch.device, repeats: int = 1) -> dict:
    """Warm up, then time ``run(steps)`` between device synchronisations (best of ``repeats``).

    ``cpu_util`` = this process's CPU time / (wall time x torch threads); ``foreign_cores`` =
    the cores other processes kept busy meanwhile (from /proc/stat): clearly above 0 on a CPU run
    means the figure is not trustworthy.
    """
    run(warmup)
    sync(device)
    reset_peak(device)
    rss0 = _vm_rss()
    secs, utils, foreign = [], [], []
    for _ in range(max(1, repeats)):
        b0, c0, t0 = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        run(steps)
        sync(device)
        secs.append(time.perf_counter() - t0)
        own = time.process_time() - c0
        utils.append(own / (secs[-1] * torch.get_num_threads()))
        b1 = busy_cpu_seconds()
        foreign.append(None if b0 is None or b1 is None else max(0.0, (b1 - b0 - own) / secs[-1]))
    best = min(range(len(secs)), key=secs.__getitem__)
    return {"steps": steps, "warmup": warmup, "seconds": secs[best], "all_seconds": secs,
            "peak_memory": peak_memory(device, rss0), "cpu_util": utils[best], "foreign_cores": foreign[best]}


def fmt_mem(m: dict) -> str:
    """MiB; on CPU the phase peak RSS and (+) its growth over the RSS at the phase start."""
    b = m.get("bytes")
    if b is None:
        return "n/a"
    grow = m.get("growth_bytes")
    return f"{b / 2**20:.0f}" + (f" (+{grow / 2**20:.0f})" if grow is not None else "")
