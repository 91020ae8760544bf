"""Image training speed: our NOTTrainer vs the authors' notebook loop, in one process.

Two contenders train the same U-Net T and ResNet_D f (same sizes, same initial
weights) with the same batch size, K_T and cost on the same synthetic data
(random uint8 images):

* **reference** -- written by hand the way the authors' ``NOT_training_strong`` /
  ``NOT_training_weak`` notebooks train: fp32, NCHW, ``torch.optim.Adam``
  with ``foreach=False`` (the old per-parameter default), ``freeze``/``unfreeze``
  every step, K_T T-steps each on a fresh X batch drawn from a DataLoader over a
  float tensor on the host and sent with ``.to(device)``, the weak cost as
  ``X.repeat`` + a noise channel + ``mse(X, mean_z T) + (1-γ-1/Z)·var_z T``, one
  f-step on fresh X and Y, ``.item()`` logging every step and
  ``gc.collect(); torch.cuda.empty_cache()`` three times per step, as they do;
* **ours** -- :class:`notpipe.core.trainer.NOTTrainer` built like
  :func:`notpipe.train.build` (``build_models``, ``make_adam(..., "torch")`` =
  fused Adam, :class:`notpipe.data.loader.ImageSampler` over a uint8 memmap, device
  loss buffer read once per ``log_every`` steps, optional bf16 autocast,
  channels-last and ``torch.compile``).

Each speed-up of ours is a switch, so ``--ablation`` can show what each is worth:
``--precision``, ``--channels-last``, ``--fused-adam``, ``--compile``,
``--host-sync-free`` and ``--prefetch`` (all ``--no-...`` to turn off). CUDA
graphs are not implemented (not part of the trainer).

Reported: f-steps/s, images/s through T (``batch·(K_T·|Z_x|+1)`` per f-step), peak
memory (CUDA ``max_memory_allocated``; on CPU the peak RSS of each phase, via
``/proc/self/clear_refs``, plus the process peak from ``getrusage``), the ratio
ours/reference, model FLOPs per f-step and achieved FLOP/s (MFU on known GPUs),
the data loader alone and its ratio to the trainer, and (``--check-losses N``)
the per-step agreement of the two losses in fp32 on identical batches and noise
(once with ours' options, once with the reference's NCHW layout and Adam, where the
two agree bit for bit on CPU). ``--ablation`` also times the reference without its
``gc.collect()`` calls, to show how much of the gap they are.

FLOPs per f-step (``F_T``, ``F_f``: forward FLOPs of T and f for one image from
:func:`notpipe.train.models.conv_flops`; conv + linear multiply-adds x 2;
backward = 2 x forward when weight and input gradients are both needed,
1 x forward when only input gradients are, as for frozen f in the T-steps)::

    T-steps: K_T·B·Z · (3·F_T      # T forward + backward
                        + 2·F_f)   # f forward + backward to its input (f frozen)
    f-step:  B·F_T                 # T(X) under no_grad
           + 2B · 3·F_f            # f forward + backward on T(X) and Y

Examples::

    python benchmarks/train_speed.py                          # CPU default, strong cost
    python benchmarks/train_speed.py --cost weak --check-losses 3
    python benchmarks/train_speed.py --ablation --out results/benchmarks/train_speed.json
    python benchmarks/train_speed.py --preset gpu --cost weak --ablation   # the paper's sizes
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from notpipe.core.costs import GammaSchedule, make_cost
from notpipe.core.optim import make_adam
from notpipe.core.trainer import NOTTrainer
from notpipe.data.loader import ImageSampler, to_float
from notpipe.train import build_models
from notpipe.train.models import ResNetD, UNet, conv_flops

# ----------------------------------------------------------------------------- settings

#: dense peak FLOP/s (bf16 tensor core, tf32 tensor core, fp32 non-tensor) from the vendors' data sheets
PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}


@dataclass
class Sizes:
    """Problem sizes shared by both contenders."""

    size: int = 32
    batch: int = 8
    k_t: int = 10
    t_base: int = 16
    t_depth: int = 2
    f_nf: int = 16
    f_max: int = 64
    cost: str = "strong"
    z_size: int = 1
    gamma: float = 0.0
    z_std: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 1e-10
    n_images: int = 2048
    seed: int = 0

    @property
    def weak(self) -> bool:
        return self.cost == "weak"

    @property
    def images_per_step(self) -> int:
        """Images through T per f-step (the trainer's ``images_per_step``)."""
        return self.batch * (self.k_t * self.z_size + 1)

    @property
    def data_per_step(self) -> int:
        """Images drawn from the two data sets per f-step: K_T+1 X batches and one Y batch."""
        return self.batch * (self.k_t + 2)


PRESETS = {
    # about a minute per contender pair on 2 CPU cores
    "cpu": dict(size=32, batch=8, k_t=10, t_base=16, t_depth=2, f_nf=16, f_max=64, n_images=2048),
    # the paper's: 128 px, batch 64, U-Net 48 x 4 levels, ResNet_D 64..512, K_T 10
    "gpu": dict(size=128, batch=64, k_t=10, t_base=48, t_depth=4, f_nf=64, f_max=512, n_images=2048),
}
#: default |Z_x| of the weak cost per preset (paper: 8; CPU: 4 to keep a run near a minute)
WEAK_Z = {"cpu": 4, "gpu": 8}
#: default f-steps timed / warm-up per preset and cost
STEPS = {("cpu", "strong"): (40, 3), ("cpu", "weak"): (15, 2),
         ("gpu", "strong"): (50, 10), ("gpu", "weak"): (30, 10)}


@dataclass
class Opts:
    """Our trainer's speed options (each a switch for the ablation)."""

    precision: str = "bf16"       # bf16 autocast (CUDA only, as notpipe.train)
    channels_last: bool = True    # channels-last weights and batches
    fused_adam: bool = True       # make_adam(..., "torch") = Adam(fused=True); off: Adam(foreach=False)
    compile: bool = False         # torch.compile of T and f
    host_sync_free: bool = True   # losses stay on the device (log_every=100); off: log_every=1
    prefetch: bool = True         # ImageSampler (uint8 memmap -> pinned -> device, float on device);
    #                               off: the reference's float host tensor -> .to(device)
    cpu_bf16: bool = False        # exploratory: keep bf16 autocast on CPU (notpipe.train never does)

    def effective(self, device: torch.device) -> "Opts":
        """What actually applies on ``device`` (bf16 is CUDA-only, as in notpipe.train)."""
        keep = device.type == "cuda" or self.cpu_bf16
        return replace(self, precision=self.precision if keep else "fp32")


LABELS = {"precision": "bf16 autocast", "channels_last": "channels_last", "fused_adam": "fused Adam",
          "compile": "torch.compile", "host_sync_free": "no per-step host sync",
          "prefetch": "uint8 prefetch sampler"}


# ----------------------------------------------------------------------------- utilities

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _vm_hwm() -> int | None:
    """Peak RSS of this process since the last reset, bytes (Linux), else None."""
    try:
        m = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


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
    try:
        m = re.search(r"VmRSS:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


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


def flops_per_step(sz: Sizes, T: nn.Module, f: nn.Module) -> dict:
    """Model FLOPs of one f-step (formula in the module docstring)."""
    shape = (3, sz.size, sz.size)
    f_t = conv_flops(T, shape, (1, sz.size, sz.size) if sz.weak else None)
    f_f = conv_flops(f, shape)
    n_t = sz.k_t * sz.batch * sz.z_size
    t_steps = n_t * (3 * f_t + 2 * f_f)
    f_step = sz.batch * f_t + 2 * sz.batch * 3 * f_f
    return {"T_forward_per_image": f_t, "f_forward_per_image": f_f, "T_steps": t_steps, "f_step": f_step,
            "per_f_step": t_steps + f_step,
            "formula": "K_T*B*Z*(3*F_T + 2*F_f) + B*F_T + 2B*3*F_f"}


# ----------------------------------------------------------------------------- data

def synthetic(sz: Sizes, workdir: Path) -> dict:
    """Random uint8 (N, H, W, 3) source and target sets, saved as .npy and memory-mapped."""
    rng = np.random.default_rng(sz.seed)
    out = {}
    for side in ("source", "target"):
        path = workdir / f"{side}_{sz.size}.npy"
        np.save(path, rng.integers(0, 256, (sz.n_images, sz.size, sz.size, 3), dtype=np.uint8))
        out[side] = np.load(path, mmap_mode="r")
    return out


class FloatHostSampler:
    """Trainer sampler ``(n, generator)`` over a float NCHW tensor on the host, then ``.to(device)``
    (what the reference's data path does; ours with ``--no-prefetch``)."""

    def __init__(self, data: torch.Tensor, device: torch.device, channels_last: bool = False):
        self.data, self.device = data, device
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.data), (n,), generator=generator)
        return self.data[idx].to(self.device).contiguous(memory_format=self.fmt)


class Replay:
    """Hands out pre-drawn batches in order; ``take(n)`` concatenates as many as make ``n`` rows."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches, self.i = batches, 0

    def take(self, n: int) -> torch.Tensor:
        out, got = [], 0
        while got < n:
            out.append(self.batches[self.i])
            got += len(self.batches[self.i])
            self.i += 1
        if got != n:
            raise RuntimeError(f"Replay: asked for {n} rows, batches give {got}")
        return out[0] if len(out) == 1 else torch.cat(out)


# ----------------------------------------------------------------------------- reference

def freeze(model: nn.Module, eval_mode: bool = False) -> None:
    """Authors' ``tools.freeze`` (which also calls ``model.eval()``: ``eval_mode=True``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if eval_mode:
        model.eval()


def unfreeze(model: nn.Module) -> None:
    """Authors' ``tools.unfreeze``."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.train(True)


class LoaderSampler:
    """Authors' ``distributions.LoaderSampler``: next DataLoader batch, ``[:size].to(device)``."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device
        self.it = iter(loader)

    def sample(self, size: int = 5) -> torch.Tensor:
        assert size <= self.loader.batch_size
        try:
            batch, _ = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return self.sample(size)
        if len(batch) < size:
            return self.sample(size)
        return batch[:size].to(self.device)


class _ReplaySampler:
    def __init__(self, replay: Replay, device):
        self.replay, self.device = replay, device

    def sample(self, size: int) -> torch.Tensor:
        return self.replay.take(size).to(self.device)


def reference_samplers(arrays: dict, sz: Sizes, device: torch.device, workers: int):
    """X, Y samplers as the authors build them: float [-1, 1] NCHW TensorDataset, DataLoader(shuffle)."""
    from torch.utils.data import DataLoader, TensorDataset

    out = []
    for i, side in enumerate(("source", "target")):
        data = to_float(torch.from_numpy(np.array(arrays[side])))  # authors keep the float set in RAM
        ds = TensorDataset(data, torch.zeros(len(data)))
        g = torch.Generator().manual_seed(sz.seed + 1 + i)
        loader = DataLoader(ds, batch_size=sz.batch, shuffle=True, num_workers=workers, generator=g,
                            persistent_workers=workers > 0)
        out.append(LoaderSampler(loader, device))
    return out


def reference_loop(T: nn.Module, f: nn.Module, T_opt, f_opt, X_sampler, Y_sampler, sample_z, sz: Sizes,
                   steps: int, device: torch.device, authors_bn: bool = False,
                   gc_every_step: bool = True) -> list[tuple[float, float]]:
    """``steps`` f-steps of the authors' notebook loop; returns per-step (mean T loss, f loss).

    ``sample_z(shape)`` draws the noise (authors: ``torch.randn(shape, device='cuda') * Z_STD``).
    ``authors_bn=True`` puts T in eval mode for the f-step as the authors' ``freeze`` does (their T
    then uses BatchNorm running statistics there); the default keeps it in train mode like
    :class:`NOTTrainer`, so that both compute the same thing. ``gc_every_step=False`` drops the
    authors' ``gc.collect()`` / ``torch.cuda.empty_cache()`` calls (diagnostic row of the ablation).
    """
    cuda = device.type == "cuda" and gc_every_step
    collect = gc.collect if gc_every_step else (lambda: None)
    B, ZS, IMG_SIZE, gamma = sz.batch, sz.z_size, sz.size, sz.gamma
    logs = []
    for step in range(steps):
        # T optimization
        unfreeze(T)
        freeze(f, authors_bn)
        T_sum = torch.zeros((), device=device)
        for t_iter in range(sz.k_t):
            T_opt.zero_grad()
            if sz.weak:
                X = X_sampler.sample(B)[:, None].repeat(1, ZS, 1, 1, 1)
                with torch.no_grad():
                    Z = sample_z((B, ZS, 1, IMG_SIZE, IMG_SIZE))
                    XZ = torch.cat([X, Z], dim=2)
                T_XZ = T(XZ.flatten(start_dim=0, end_dim=1)).permute(1, 2, 3, 0).reshape(
                    3, IMG_SIZE, IMG_SIZE, -1, ZS).permute(3, 4, 0, 1, 2)
                T_loss = F.mse_loss(X[:, 0], T_XZ.mean(dim=1)).mean() - \
                    f(T_XZ.flatten(start_dim=0, end_dim=1)).mean() + \
                    T_XZ.var(dim=1).mean() * (1 - gamma - 1. / ZS)
            else:
                X = X_sampler.sample(B)
                T_X = T(X)
                T_loss = F.mse_loss(X, T_X).mean() - f(T_X).mean()
            T_loss.backward()
            T_opt.step()
            T_sum += T_loss.detach()
        del T_loss, X
        collect()
        if cuda:
            torch.cuda.empty_cache()

        # f optimization
        freeze(T, authors_bn)
        unfreeze(f)
        X = X_sampler.sample(B)
        with torch.no_grad():
            if sz.weak:
                Z = sample_z((B, 1, X.size(2), X.size(3)))
                T_X = T(torch.cat([X, Z], dim=1))
            else:
                T_X = T(X)
        Y = Y_sampler.sample(B)
        f_opt.zero_grad()
        f_loss = f(T_X).mean() - f(Y).mean()
        f_loss.backward()
        f_opt.step()
        logs.append((T_sum.item() / sz.k_t, f_loss.item()))  # the per-step logging (wandb.log)
        del f_loss, Y, X, T_X
        collect()
        if cuda:
            torch.cuda.empty_cache()
        collect()
        if cuda:
            torch.cuda.empty_cache()
    return logs


class Reference:
    """The reference contender: its own T (``UNet(3 + ZC, 3)`` for weak, as the authors), f, Adams."""

    def __init__(self, sz: Sizes, init: dict, device: torch.device, X_sampler, Y_sampler, sample_z=None,
                 authors_bn: bool = False, gc_every_step: bool = True):
        self.sz, self.device, self.authors_bn, self.gc_every_step = sz, device, authors_bn, gc_every_step
        self.T = UNet(3 + (1 if sz.weak else 0), 3, base=sz.t_base, depth=sz.t_depth)
        self.f = ResNetD(sz.size, 3, nf=sz.f_nf, nf_max=sz.f_max)
        self.T.load_state_dict(init["T"])
        self.f.load_state_dict(init["f"])
        self.T.to(device)
        self.f.to(device)
        self.T_opt = torch.optim.Adam(self.T.parameters(), lr=sz.lr, weight_decay=sz.weight_decay, foreach=False)
        self.f_opt = torch.optim.Adam(self.f.parameters(), lr=sz.lr, weight_decay=sz.weight_decay, foreach=False)
        self.X_sampler, self.Y_sampler = X_sampler, Y_sampler
        self.sample_z = sample_z or (lambda shape: torch.randn(shape, device=device) * sz.z_std)
        self.step = 0

    def run(self, steps: int) -> list[tuple[float, float]]:
        logs = reference_loop(self.T, self.f, self.T_opt, self.f_opt, self.X_sampler, self.Y_sampler,
                              self.sample_z, self.sz, steps, self.device, self.authors_bn, self.gc_every_step)
        self.step += steps
        return logs


# ----------------------------------------------------------------------------- ours

def build_ours(sz: Sizes, opts: Opts, init: dict, device: torch.device, arrays: dict | None = None,
               float_data: dict | None = None, log_every: int = 100, replay: dict | None = None) -> NOTTrainer:
    """Our trainer, put together as :func:`notpipe.train.build` does, with the speed switches.

    ``replay`` (``{"x", "y", "z"}`` of :class:`Replay`) replaces the samplers and the noise
    (loss check); otherwise ``arrays`` (uint8 memmaps) or, with ``prefetch`` off, ``float_data``.
    """
    opts = opts.effective(device)
    cost = make_cost({"name": sz.cost, "gamma": sz.gamma, "z_size": sz.z_size, "scaling": "mean"})
    model = {"t_base": sz.t_base, "t_depth": sz.t_depth, "f_nf": sz.f_nf, "f_max": sz.f_max,
             "noise_channels": 1, "latent_dim": 0, "z_std": sz.z_std}
    T, f, noise = build_models(model, cost, sz.size)
    T.load_state_dict(init["T"])
    f.load_state_dict(init["f"])
    fmt = torch.channels_last if opts.channels_last else torch.contiguous_format
    T, f = T.to(device, memory_format=fmt), f.to(device, memory_format=fmt)
    if opts.fused_adam:
        opt_t = make_adam(T, sz.lr, (0.9, 0.999), sz.weight_decay, "torch")
        opt_f = make_adam(f, sz.lr, (0.9, 0.999), sz.weight_decay, "torch")
    else:
        opt_t = torch.optim.Adam(T.parameters(), sz.lr, weight_decay=sz.weight_decay, foreach=False)
        opt_f = torch.optim.Adam(f.parameters(), sz.lr, weight_decay=sz.weight_decay, foreach=False)
    if opts.compile:
        T, f = torch.compile(T), torch.compile(f)
    if replay is not None:
        sample_p = lambda n, g: replay["x"].take(n).to(device)  # noqa: E731
        sample_q = lambda n, g: replay["y"].take(n).to(device)  # noqa: E731
        noise = (lambda n, g, dev: replay["z"].take(n).to(dev)) if sz.weak else None  # noqa: E731
    elif opts.prefetch:
        sample_p = ImageSampler(arrays["source"], device, opts.channels_last)
        sample_q = ImageSampler(arrays["target"], device, opts.channels_last)
    else:
        sample_p = FloatHostSampler(float_data["source"], device, opts.channels_last)
        sample_q = FloatHostSampler(float_data["target"], device, opts.channels_last)
    return NOTTrainer(
        T, f, cost, sample_p, sample_q, opt_t, opt_f, noise=noise, k_t=sz.k_t, batch=sz.batch,
        device=device, gamma_schedule=GammaSchedule(cost.gamma_max, 0),
        generator=torch.Generator().manual_seed(sz.seed), log_every=log_every if opts.host_sync_free else 1,
        autocast_dtype=torch.bfloat16 if opts.precision == "bf16" else None, grad_norms=True)


# ----------------------------------------------------------------------------- measurements

def initial_weights(sz: Sizes) -> dict:
    """The one initialisation both contenders start from (as notpipe.train.build: seed, build_models)."""
    torch.manual_seed(sz.seed)
    cost = make_cost({"name": sz.cost, "gamma": sz.gamma, "z_size": sz.z_size, "scaling": "mean"})
    model = {"t_base": sz.t_base, "t_depth": sz.t_depth, "f_nf": sz.f_nf, "f_max": sz.f_max,
             "noise_channels": 1, "latent_dim": 0, "z_std": sz.z_std}
    T, f, _ = build_models(model, cost, sz.size)
    return {"T": copy.deepcopy(T.state_dict()), "f": copy.deepcopy(f.state_dict()), "T_mod": T, "f_mod": f}


#: timed repetitions per contender (the fastest counts); set by --repeats
REPEATS = 1


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have been busy (Linux /proc/stat), else None."""
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


def _timed(run, warmup: int, steps: int, device: torch.device, sz: Sizes, flops: int) -> dict:
    """Warm up, then time ``steps`` f-steps between device synchronisations (best of ``REPEATS``).

    ``cpu_util`` = this process's CPU time / (wall time x torch threads); ``foreign_cores`` =
    the cores other processes kept busy meanwhile (from /proc/stat): clearly above 0 on a CPU run
    means the figure is not trustworthy.
    """
    run(warmup)
    sync(device)
    reset_peak(device)
    rss0 = _vm_rss()
    secs, utils, foreign = [], [], []
    for _ in range(max(1, REPEATS)):
        b0, c0, t0 = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        run(steps)
        sync(device)
        secs.append(time.perf_counter() - t0)
        own = time.process_time() - c0
        utils.append(own / (secs[-1] * torch.get_num_threads()))
        b1 = _busy_cpu_seconds()
        foreign.append(None if b0 is None or b1 is None else max(0.0, (b1 - b0 - own) / secs[-1]))
    best = min(range(len(secs)), key=secs.__getitem__)
    sec = secs[best]
    sps = steps / sec
    return {"steps": steps, "warmup": warmup, "seconds": sec, "all_seconds": secs, "f_steps_per_s": sps,
            "images_per_s": sps * sz.images_per_step, "data_images_per_s": sps * sz.data_per_step,
            "flops_per_s": sps * flops, "peak_memory": peak_memory(device, rss0), "cpu_util": utils[best],
            "foreign_cores": foreign[best]}


def time_reference(sz: Sizes, init: dict, arrays: dict, device: torch.device, warmup: int, steps: int,
                   flops: int, workers: int, authors_bn: bool = False, gc_every_step: bool = True) -> dict:
    xs, ys = reference_samplers(arrays, sz, device, workers)
    torch.manual_seed(sz.seed)
    ref = Reference(sz, init, device, xs, ys, authors_bn=authors_bn, gc_every_step=gc_every_step)
    out = _timed(ref.run, warmup, steps, device, sz, flops)
    del ref, xs, ys
    return out


def time_ours(sz: Sizes, opts: Opts, init: dict, arrays: dict, device: torch.device, warmup: int,
              steps: int, flops: int, float_data: dict | None = None) -> dict:
    if not opts.prefetch and float_data is None:
        float_data = {k: to_float(torch.from_numpy(np.array(a))) for k, a in arrays.items()}
    torch.manual_seed(sz.seed)
    tr = build_ours(sz, opts, init, device, arrays, float_data)
    out = _timed(lambda n: tr.run(tr.step + n, progress=False), warmup, steps, device, sz, flops)
    out["options"] = asdict(opts.effective(device))
    del tr
    return out


def time_loader(sz: Sizes, arrays: dict, device: torch.device, channels_last: bool,
                min_seconds: float = 1.0) -> dict:
    """ImageSampler alone: random batches of the trainer's size from the uint8 memmap to the device."""
    s = ImageSampler(arrays["source"], device, channels_last)
    g = torch.Generator().manual_seed(sz.seed)
    for _ in range(5):
        s(sz.batch, g)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(20):
            s(sz.batch, g)
        n += 20
        sync(device)
        sec = time.perf_counter() - t0
        if sec >= min_seconds:
            break
    return {"batches": n, "seconds": sec, "images_per_s": n * sz.batch / sec}


def check_losses(sz: Sizes, n_steps: int, device: torch.device, init: dict | None = None,
                 opts: Opts | None = None) -> dict:
    """Per-step T / f losses of both contenders in fp32 on identical batches and noise.

    Both start from the same state dicts; X, Y (uint8 -> float as the loader does) and Z
    are pre-drawn for ``n_steps`` f-steps and replayed in the same order to both. Relative
    difference per value: ``|ours - ref| / max(|ref|, 1e-8)``. With the reference's NCHW
    layout and ``Adam(foreach=False)`` (``channels_last=False, fused_adam=False``) the two
    agree bit for bit on CPU at the CPU preset; channels-last kernels and fused Adam round
    differently in the last bit, and Adam turns that into ``lr``-sized differences of the conv
    biases in front of BatchNorm (zero true gradient), so the f loss (a difference of two
    means, close to 0) then differs by ~1e-6..1e-5 absolute after the first f-step.
    """
    init = init or initial_weights(sz)
    opts = replace(opts or Opts(), precision="fp32", compile=False)
    g = torch.Generator().manual_seed(sz.seed + 123)
    H = sz.size

    def img(n):
        return to_float(torch.randint(0, 256, (n, H, H, 3), generator=g, dtype=torch.uint8))

    def draws():
        xs, ys, zs = [], [], []
        for _ in range(n_steps):
            for _ in range(sz.k_t):
                xs.append(img(sz.batch))
                zs.append(torch.randn(sz.batch * sz.z_size, 1, H, H, generator=g) * sz.z_std)
            xs.append(img(sz.batch))
            zs.append(torch.randn(sz.batch, 1, H, H, generator=g) * sz.z_std)
            ys.append(img(sz.batch))
        return xs, ys, zs

    xs, ys, zs = draws()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # true fp32 on CUDA
    try:
        rep = {"x": Replay(xs), "y": Replay(ys), "z": Replay(zs)}
        tr = build_ours(sz, opts, init, device, log_every=1, replay=rep)
        tr.run(n_steps, progress=False)
        ours = [(r["loss_t"], r["loss_f"]) for r in tr.history]

        rep2 = {"x": Replay(xs), "y": Replay(ys), "z": Replay(zs)}
        ref = Reference(sz, init, device, _ReplaySampler(rep2["x"], device), _ReplaySampler(rep2["y"], device),
                        sample_z=lambda shape: rep2["z"].take(shape[0] * (shape[1] if len(shape) == 5 else 1))
                        .to(device).view(shape))
        refl = ref.run(n_steps)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-8)

    rows = [{"step": i + 1, "loss_t_ours": o[0], "loss_t_ref": r[0], "loss_f_ours": o[1], "loss_f_ref": r[1],
             "rel_t": rel(o[0], r[0]), "rel_f": rel(o[1], r[1])} for i, (o, r) in enumerate(zip(ours, refl))]
    pdiff = {}
    for name, a, b in (("T", tr.T, ref.T), ("f", tr.f, ref.f)):
        sa, sb = a.state_dict(), b.state_dict()
        num = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sb if sb[k].is_floating_point())
        den = max(float(sb[k].float().abs().max()) for k in sb if sb[k].is_floating_point())
        pdiff[name] = num / den
    return {"steps": n_steps, "rows": rows, "max_rel_loss_t": max(r["rel_t"] for r in rows),
            "max_rel_loss_f": max(r["rel_f"] for r in rows),
            "max_rel_diff": max(max(r["rel_t"], r["rel_f"]) for r in rows),
            "max_abs_diff": max(max(abs(r["loss_t_ours"] - r["loss_t_ref"]), abs(r["loss_f_ours"] - r["loss_f_ref"]))
                                for r in rows),
            "param_max_abs_diff_rel_to_max": pdiff}


# ----------------------------------------------------------------------------- driver

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="sizes: cpu (default on CPU) or gpu (the paper's; default on CUDA)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--cost", choices=["strong", "weak"], default="strong")
    ap.add_argument("--z-size", type=int, default=None, help="|Z_x| of the weak cost (cpu preset 4, gpu 8)")
    ap.add_argument("--gamma", type=float, default=0.66, help="γ of the weak cost (constant; default 0.66)")
    for key in ("size", "batch", "k_t", "t_base", "t_depth", "f_nf", "f_max", "n_images", "seed"):
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=None, help=f"override the preset's {key}")
    ap.add_argument("--steps", type=int, default=None, help="timed f-steps per contender")
    ap.add_argument("--warmup", type=int, default=None, help="untimed f-steps before each timing")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=1, help="timed repetitions per contender; the fastest counts")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="ours (autocast, CUDA only)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="ours: channels-last weights and batches (default: on, as notpipe.train)")
    ap.add_argument("--fused-adam", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--host-sync-free", action=argparse.BooleanOptionalAction, default=True,
                    help="ours: losses read once per 100 steps (off: every step)")
    ap.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                    help="ours: uint8 ImageSampler (off: the reference's float host tensor + .to)")
    ap.add_argument("--cpu-bf16", action="store_true",
                    help="exploratory: bf16 autocast on CPU too (notpipe.train uses fp32 on CPU)")
    ap.add_argument("--ablation", action="store_true",
                    help="also run ours with each option flipped, one at a time (table)")
    ap.add_argument("--ablation-compile", action="store_true",
                    help="include torch.compile in the ablation when it is off (slow warm-up)")
    ap.add_argument("--check-losses", type=int, default=0, metavar="N",
                    help="compare both contenders' losses over the first N f-steps in fp32")
    ap.add_argument("--ref-workers", type=int, default=None,
                    help="DataLoader workers of the reference (default 0 on CPU, 4 on CUDA; authors 8)")
    ap.add_argument("--authors-bn", action="store_true",
                    help="reference puts T in eval mode for the f-step as the authors' freeze() does")
    ap.add_argument("--loader-seconds", type=float, default=1.0, help="how long to time the loader alone")
    ap.add_argument("--skip-reference", action="store_true", help="time only ours")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return ap.parse_args(argv)


def setup(args) -> tuple[Sizes, Opts, torch.device, str, int, int]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    sz = Sizes(**PRESETS[preset])
    for key in ("size", "batch", "k_t", "t_base", "t_depth", "f_nf", "f_max", "n_images", "seed"):
        if getattr(args, key) is not None:
            setattr(sz, key, getattr(args, key))
    sz.cost = args.cost
    if sz.weak:
        sz.z_size = args.z_size or WEAK_Z[preset]
        sz.gamma = args.gamma
    steps, warmup = STEPS[(preset, sz.cost)]
    steps = args.steps if args.steps is not None else steps
    warmup = args.warmup if args.warmup is not None else warmup
    cl = True if args.channels_last is None else args.channels_last  # speed.channels_last default
    opts = Opts(precision=args.precision, channels_last=cl, fused_adam=args.fused_adam, compile=args.compile,
                host_sync_free=args.host_sync_free, prefetch=args.prefetch, cpu_bf16=args.cpu_bf16)
    return sz, opts, device, preset, steps, warmup


def _fmt_mem(m: dict) -> str:
    """MiB; on CPU the phase peak RSS and (+) its growth over the RSS at the phase start."""
    b = m.get("bytes")
    if b is None:
        return "n/a"
    grow = m.get("growth_bytes")
    return f"{b / 2**20:.0f}" + (f" (+{grow / 2**20:.0f})" if grow is not None else "")


def ablation_variants(opts: Opts, device: torch.device, with_compile: bool) -> list[tuple[str, Opts]]:
    out = []
    for fld in fields(Opts):
        key = fld.name
        if key == "cpu_bf16":
            continue
        if key == "precision":
            if device.type != "cuda" and not opts.cpu_bf16:
                continue  # bf16 autocast is CUDA-only in notpipe.train
            new = replace(opts, precision="fp32" if opts.precision == "bf16" else "bf16")
            label = f"{'-' if opts.precision == 'bf16' else '+'}{LABELS[key]}"
        else:
            on = getattr(opts, key)
            if key == "compile" and not on and not with_compile:
                continue
            new = replace(opts, **{key: not on})
            label = f"{'-' if on else '+'}{LABELS[key]}"
        out.append((label, new))
    return out


def main(argv=None) -> dict:
    global REPEATS
    args = parse_args(argv)
    REPEATS = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    sz, opts, device, preset, steps, warmup = setup(args)
    workers = args.ref_workers if args.ref_workers is not None else (4 if device.type == "cuda" else 0)
    eff = opts.effective(device)
    result = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
              "threads": torch.get_num_threads(), "preset": preset, "command": " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "sizes": {**asdict(sz), "images_per_f_step": sz.images_per_step, "data_images_per_f_step": sz.data_per_step},
              "options": asdict(eff), "reference_workers": workers, "authors_bn": args.authors_bn,
              "cuda_graphs": "not implemented"}
    print(f"train_speed: {result['device']}, torch {torch.__version__}, preset {preset}")
    print(f"  {sz.size} px, batch {sz.batch}, K_T {sz.k_t}, cost {sz.cost}"
          + (f" (|Z_x| {sz.z_size}, gamma {sz.gamma})" if sz.weak else "")
          + f", U-Net base {sz.t_base} depth {sz.t_depth}, ResNet_D nf {sz.f_nf} max {sz.f_max}")
    print(f"  images through T per f-step {sz.images_per_step}; timed {steps} f-steps after {warmup} warm-up")
    print(f"  ours: {', '.join(f'{k}={v}' for k, v in asdict(eff).items())}")

    init = initial_weights(sz)
    fl = flops_per_step(sz, init.pop("T_mod"), init.pop("f_mod"))
    result["flops"] = fl
    print(f"  model FLOPs per f-step {fl['per_f_step'] / 1e9:.2f} G  (F_T {fl['T_forward_per_image'] / 1e6:.1f} M, "
          f"F_f {fl['f_forward_per_image'] / 1e6:.1f} M per image; {fl['formula']})")

    if args.check_losses:
        # ours as configured (fp32), and ours with the reference's NCHW layout and Adam(foreach=False):
        # channels-last kernels and fused Adam round differently in the last bit, which Adam then
        # blows up on the conv biases in front of BatchNorm (zero true gradient, so their update is
        # lr * sign(rounding noise)); with the same layout and Adam the two agree bit for bit
        for key, variant, what in (("check_losses", opts, "ours' options in fp32"),
                                   ("check_losses_same_adam", replace(opts, fused_adam=False, channels_last=False),
                                    "ours with NCHW and Adam(foreach=False) like the reference")):
            if key == "check_losses_same_adam" and not (opts.fused_adam or opts.channels_last):
                continue
            chk = check_losses(sz, args.check_losses, device, init, variant)
            result[key] = chk
            print(f"loss check ({what}), {chk['steps']} f-steps, identical batches/noise/initial weights:")
            for r in chk["rows"]:
                print(f"  step {r['step']}: T loss ours {r['loss_t_ours']:+.8f} ref {r['loss_t_ref']:+.8f} "
                      f"(rel {r['rel_t']:.1e}) | f loss ours {r['loss_f_ours']:+.8f} ref {r['loss_f_ref']:+.8f} "
                      f"(rel {r['rel_f']:.1e})")
            print(f"  max rel diff: T loss {chk['max_rel_loss_t']:.2e}, f loss {chk['max_rel_loss_f']:.2e} "
                  f"(max abs {chk['max_abs_diff']:.2e}); params after, max abs diff / max abs: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in chk["param_max_abs_diff_rel_to_max"].items()))

    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        arrays = synthetic(sz, Path(tmp))
        rows = []
        if not args.skip_reference:
            ref = time_reference(sz, init, arrays, device, warmup, steps, fl["per_f_step"], workers, args.authors_bn)
            result["reference"] = ref
            rows.append(("reference (authors' loop)", ref))
        ours = time_ours(sz, opts, init, arrays, device, warmup, steps, fl["per_f_step"])
        result["ours"] = ours
        rows.append(("ours (options above)", ours))
        if args.ablation:
            result["ablation"] = []
            if not args.skip_reference:  # diagnostic: how much of the gap is the authors' gc.collect()
                r = time_reference(sz, init, arrays, device, warmup, steps, fl["per_f_step"], workers,
                                   args.authors_bn, gc_every_step=False)
                r["label"] = "reference without gc.collect"
                result["ablation"].append(r)
                rows.append((r["label"], r))
            for label, var in ablation_variants(opts, device, args.ablation_compile or opts.compile):
                r = time_ours(sz, var, init, arrays, device, warmup, steps, fl["per_f_step"])
                r["label"] = label
                result["ablation"].append(r)
                rows.append((f"ours {label}", r))
        loader = time_loader(sz, arrays, device, eff.channels_last, args.loader_seconds)
        result["loader"] = loader

    peak = peak_flops(device, eff.precision)
    if "reference" in result:
        result["ratio_ours_over_reference"] = ours["images_per_s"] / result["reference"]["images_per_s"]
    for _, r in rows:
        r["ratio_vs_reference"] = (r["images_per_s"] / result["reference"]["images_per_s"]
                                   if "reference" in result else None)
        r["mfu"] = r["flops_per_s"] / peak if peak else None
    result["peak_flops"] = peak
    result["process_peak_rss_bytes"] = process_peak_rss()
    loader["ratio_vs_trainer_data"] = loader["images_per_s"] / ours["data_images_per_s"]
    loader["ratio_vs_trainer_T_images"] = loader["images_per_s"] / ours["images_per_s"]

    cpu = device.type == "cpu"
    print(f"\n{'contender':44s} {'f-step/s':>9s} {'img/s (T)':>10s} {'GFLOP/s':>8s} "
          f"{'MFU':>6s} {'peak MiB':>12s} {'vs ref':>7s}" + (f" {'others':>6s}" if cpu else ""))
    for name, r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        rat = f"{r['ratio_vs_reference']:.2f}x" if r["ratio_vs_reference"] else "-"
        print(f"{name:44s} {r['f_steps_per_s']:9.3f} {r['images_per_s']:10.1f} {r['flops_per_s'] / 1e9:8.1f} "
              f"{mfu:>6s} {_fmt_mem(r['peak_memory']):>12s} {rat:>7s}"
              + (f" {r['foreign_cores']:6.2f}" if cpu and r["foreign_cores"] is not None else ""))
    if cpu:
        print("others: cores kept busy by other processes during the timing (from /proc/stat)")
        if max((r["foreign_cores"] or 0) for _, r in rows) > 0.25:
            print("WARNING: other processes used > 0.25 cores during some timings: those figures are not trustworthy")
    print(f"peak memory: {ours['peak_memory']['kind']}; process peak RSS {result['process_peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"loader alone (ImageSampler, batch {sz.batch}, {sz.size} px uint8 memmap -> {device.type}): "
          f"{loader['images_per_s']:.0f} img/s = {loader['ratio_vs_trainer_data']:.1f}x the trainer's data "
          f"consumption ({ours['data_images_per_s']:.0f} img/s, B*(K_T+2) per f-step), "
          f"{loader['ratio_vs_trainer_T_images']:.1f}x its img/s through T (target >= 5x)")
    if "reference" in result:
        print(f"ours / reference: {result['ratio_ours_over_reference']:.2f}x images/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
