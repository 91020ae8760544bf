"""The image training benchmark: sizes, our speed switches, and the measurements.

Both contenders train the same U-Net T and ResNet_D f (same sizes, same initial
weights) with the same batch size, K_T and cost on the same synthetic data. Ours is
built by :func:`notpipe.train.build_trainer` (what ``notpipe.train.build`` uses),
from a run block made of :class:`Sizes` and :class:`Opts`; the reference is
:class:`harness.reference.ImageReference`. ``benchmarks/train_speed.py``
is the command line around this module.

FLOPs per f-step (``F_T``, ``F_f``: forward FLOPs of T and f for one image from
:func:`notpipe.train.models.conv_flops`; conv + linear multiply-adds x 2;
backward = 2 x forward when weight and input gradients are both needed,
1 x forward when only input gradients are, as for frozen f in the T-steps)::

    T-steps: K_T·B·Z · (3·F_T      # T forward + backward
                        + 2·F_f)   # f forward + backward to its input (f frozen)
    f-step:  B·F_T                 # T(X) under no_grad
           + 2B · 3·F_f            # f forward + backward on T(X) and Y
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from notpipe.core.costs import make_cost
from notpipe.core.trainer import NOTTrainer
from notpipe.data.loader import ImageSampler, to_float
from notpipe.train import build_models, build_trainer
from notpipe.train.models import conv_flops

from .measure import sync, timed
from .reference import ImageReference, Replay, ReplaySampler, reference_samplers

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



def run_block(sz: Sizes, opts: Opts, log_every: int = 100) -> dict:
    """The run block (as ``images.runs.NAME``, only the keys the builder reads) of these sizes and options."""
    cost = {"name": sz.cost, "gamma": sz.gamma, "z_size": sz.z_size, "scaling": "mean"}
    return {"seed": sz.seed, "image_size": sz.size, "k_t": sz.k_t, "batch": sz.batch, "cost": cost,
            "log_every": log_every if opts.host_sync_free else 1,
            "model": {"t_base": sz.t_base, "t_depth": sz.t_depth, "f_nf": sz.f_nf, "f_max": sz.f_max,
                      "noise_channels": 1, "latent_dim": 0, "z_std": sz.z_std},
            "optim": {"lr_t": sz.lr, "lr_f": sz.lr, "betas": (0.9, 0.999), "weight_decay": sz.weight_decay,
                      "milestones": [], "lr_decay": 1.0},
            "speed": {"precision": opts.precision, "channels_last": opts.channels_last, "compile": opts.compile}}


def build_ours(sz: Sizes, opts: Opts, init: dict, device: torch.device, arrays: dict | None = None,
               float_data: dict | None = None, log_every: int = 100, replay: dict | None = None) -> NOTTrainer:
    """Our trainer from :func:`notpipe.train.build_trainer`, with the speed switches.

    ``replay`` (``{"x", "y", "z"}`` of :class:`Replay`) replaces the samplers and the noise
    (loss check); otherwise ``arrays`` (uint8 memmaps) or, with ``prefetch`` off, ``float_data``.
    """
    opts = opts.effective(device)
    if replay is not None:
        sample_p = lambda n, g: replay["x"].take(n).to(device)  # noqa: E731
        sample_q = lambda n, g: replay["y"].take(n).to(device)  # noqa: E731
    elif opts.prefetch:
        sample_p = ImageSampler(arrays["source"], device, opts.channels_last)
        sample_q = ImageSampler(arrays["target"], device, opts.channels_last)
    else:
        sample_p = FloatHostSampler(float_data["source"], device, opts.channels_last)
        sample_q = FloatHostSampler(float_data["target"], device, opts.channels_last)
    tr = build_trainer(run_block(sz, opts, log_every), sample_p, sample_q, device, init=init,
                       adam="torch" if opts.fused_adam else "loop")
    if opts.precision == "bf16" and device.type != "cuda":  # cpu_bf16: build_trainer autocasts on CUDA only
        tr.ctx = torch.autocast(device.type, dtype=torch.bfloat16)
    if replay is not None and sz.weak:
        tr.noise = lambda n, g, dev: replay["z"].take(n).to(dev)
    return tr


def initial_weights(sz: Sizes) -> dict:
    """The one initialisation both contenders start from (as notpipe.train.build: seed, build_models)."""
    torch.manual_seed(sz.seed)
    cost = make_cost({"name": sz.cost, "gamma": sz.gamma, "z_size": sz.z_size, "scaling": "mean"})
    T, f, _ = build_models(run_block(sz, Opts())["model"], cost, sz.size)
    return {"T": copy.deepcopy(T.state_dict()), "f": copy.deepcopy(f.state_dict()), "T_mod": T, "f_mod": f}


def _rates(out: dict, sz: Sizes, flops: int) -> dict:
    sps = out["steps"] / out["seconds"]
    return {**out, "f_steps_per_s": sps, "images_per_s": sps * sz.images_per_step,
            "data_images_per_s": sps * sz.data_per_step, "flops_per_s": sps * flops}


def time_reference(sz: Sizes, init: dict, arrays: dict, device: torch.device, warmup: int, steps: int,
                   flops: int, workers: int, gc_every_step: bool = True, repeats: int = 1) -> dict:
    xs, ys = reference_samplers(arrays, sz, device, workers)
    torch.manual_seed(sz.seed)
    ref = ImageReference(sz, init, device, xs, ys, gc_every_step=gc_every_step)
    out = _rates(timed(ref.run, warmup, steps, device, repeats), sz, flops)
    del ref, xs, ys
    return out


def time_ours(sz: Sizes, opts: Opts, init: dict, arrays: dict, device: torch.device, warmup: int,
              steps: int, flops: int, float_data: dict | None = None, repeats: int = 1) -> dict:
    if not opts.prefetch and float_data is None:
        float_data = {k: to_float(torch.from_numpy(np.array(a))) for k, a in arrays.items()}
    tr = build_ours(sz, opts, init, device, arrays, float_data)
    out = _rates(timed(lambda n: tr.run(tr.step + n, progress=False), warmup, steps, device, repeats), sz, flops)
    out["options"] = asdict(opts.effective(device))
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
        ref = ImageReference(sz, init, device, ReplaySampler(rep2["x"], device), ReplaySampler(rep2["y"], device),
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



def _ddp_rank(sz: Sizes, opts: Opts, init: dict, arrays_dir: str, cuda: bool, threads: int, warmup: int,
              steps: int) -> dict:
    """One rank of :func:`time_ddp`: ours in DDP (:func:`notpipe.train.distributed.wrap`) on the same
    global batch; timed between barriers, so the slowest rank sets the figure."""
    from notpipe.train import distributed

    device = distributed.init_rank(cuda, threads)
    try:
        arrays = {side: np.load(Path(arrays_dir) / f"{side}_{sz.size}.npy", mmap_mode="r")
                  for side in ("source", "target")}
        tr = build_ours(sz, opts, init, device, arrays)
        distributed.wrap(tr)
        tr.run(warmup, progress=False)
        sync(device)
        distributed.barrier()
        t0 = time.perf_counter()
        tr.run(warmup + steps, progress=False)
        sync(device)
        distributed.barrier()
        sec = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) if cuda else None
        return {"seconds": sec, "peak_memory_bytes": peak}
    finally:
        torch.distributed.destroy_process_group()


def time_ddp(sz: Sizes, opts: Opts, init: dict, arrays_dir: Path, device: torch.device, nproc: int,
             warmup: int, steps: int, flops: int, threads: int) -> dict:
    """Ours on ``nproc`` processes (NCCL, one GPU each, or gloo on the CPU with ``threads`` each)."""
    from notpipe.train.distributed import run_ranks

    cuda = device.type == "cuda"
    if cuda and torch.cuda.device_count() < nproc:
        raise SystemExit(f"--ddp {nproc}: only {torch.cuda.device_count()} CUDA devices visible")
    init = {k: init[k] for k in ("T", "f")}
    res = run_ranks(_ddp_rank, (sz, replace(opts), init, str(arrays_dir), cuda, threads, warmup, steps), nproc,
                    name="train_speed")
    sec = max(r["seconds"] for r in res.values())
    out = _rates({"steps": steps, "warmup": warmup, "seconds": sec}, sz, flops)
    out.update(processes=nproc, threads_per_process=threads, backend="nccl" if cuda else "gloo",
               peak_memory_bytes_per_rank=[res[r]["peak_memory_bytes"] for r in sorted(res)])
    return out
