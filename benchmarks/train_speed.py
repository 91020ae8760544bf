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
* **ours** -- :class:`notpipe.core.trainer.NOTTrainer` built by
  :func:`notpipe.train.build_trainer` (what :func:`notpipe.train.build` uses) (``build_models``, ``make_adam(..., "torch")`` =
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
ours/reference, model FLOPs and MFU. The FLOPs formula and the contenders' code: :mod:`harness.image`
and :mod:`harness.reference` (``benchmarks/harness/``).

Examples::

    python benchmarks/train_speed.py                          # CPU default, strong cost
    python benchmarks/train_speed.py --cost weak --check-losses 3
    python benchmarks/train_speed.py --ablation --out results/benchmarks/train_speed.json
    python benchmarks/train_speed.py --preset gpu --cost weak --ablation   # the paper's sizes
    python benchmarks/train_speed.py --skip-reference --ddp 2              # 1 vs 2 processes (DDP)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from harness.image import (PRESETS, STEPS, WEAK_Z, Opts, Sizes, ablation_variants, check_losses, flops_per_step,
                           initial_weights, synthetic, time_ddp, time_loader, time_ours, time_reference)
from harness.measure import device_name, fmt_mem, peak_flops, process_peak_rss


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
    ap.add_argument("--loader-seconds", type=float, default=1.0, help="how long to time the loader alone")
    ap.add_argument("--skip-reference", action="store_true", help="time only ours")
    ap.add_argument("--ddp", type=int, default=0, metavar="N",
                    help="also time ours on N processes (torch.distributed DDP, same global batch: NCCL with "
                         "one GPU each, gloo on the CPU with threads/N each) and print the scaling efficiency")
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    rep = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    sz, opts, device, preset, steps, warmup = setup(args)
    workers = args.ref_workers if args.ref_workers is not None else (4 if device.type == "cuda" else 0)
    eff = opts.effective(device)
    result = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
              "threads": torch.get_num_threads(), "preset": preset, "command": " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "sizes": {**asdict(sz), "images_per_f_step": sz.images_per_step, "data_images_per_f_step": sz.data_per_step},
              "options": asdict(eff), "reference_workers": workers,
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
            ref = time_reference(sz, init, arrays, device, warmup, steps, fl["per_f_step"], workers, repeats=rep)
            result["reference"] = ref
            rows.append(("reference (authors' loop)", ref))
        ours = time_ours(sz, opts, init, arrays, device, warmup, steps, fl["per_f_step"], repeats=rep)
        result["ours"] = ours
        rows.append(("ours (options above)", ours))
        if args.ablation:
            result["ablation"] = []
            if not args.skip_reference:  # diagnostic: how much of the gap is the authors' gc.collect()
                r = time_reference(sz, init, arrays, device, warmup, steps, fl["per_f_step"], workers,
                                   gc_every_step=False, repeats=rep)
                r["label"] = "reference without gc.collect"
                result["ablation"].append(r)
                rows.append((r["label"], r))
            for label, var in ablation_variants(opts, device, args.ablation_compile or opts.compile):
                r = time_ours(sz, var, init, arrays, device, warmup, steps, fl["per_f_step"], repeats=rep)
                r["label"] = label
                result["ablation"].append(r)
                rows.append((f"ours {label}", r))
        loader = time_loader(sz, arrays, device, eff.channels_last, args.loader_seconds)
        result["loader"] = loader
        if args.ddp > 1:
            per = max(1, torch.get_num_threads() // args.ddp) if device.type == "cpu" else 1
            ddp = time_ddp(sz, opts, init, Path(tmp), device, args.ddp, warmup, steps, fl["per_f_step"], per)
            ddp["scaling_efficiency"] = ddp["images_per_s"] / (args.ddp * ours["images_per_s"])
            ddp["peak_memory"] = {"kind": "n/a (per rank: peak_memory_bytes_per_rank)", "bytes": None}
            ddp["foreign_cores"] = None
            result["ddp"] = ddp
            rows.append((f"ours, DDP {args.ddp} processes ({ddp['backend']})", ddp))

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
              f"{mfu:>6s} {fmt_mem(r['peak_memory']):>12s} {rat:>7s}"
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
    if "ddp" in result:
        d = result["ddp"]
        print(f"DDP: {d['processes']} processes ({d['backend']}, {d['threads_per_process']} threads each on CPU) "
              f"{d['images_per_s']:.1f} img/s against 1 process {ours['images_per_s']:.1f} img/s "
              f"({torch.get_num_threads()} threads): scaling efficiency {100 * d['scaling_efficiency']:.0f} % "
              f"(img/s of N / (N x img/s of 1))")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
