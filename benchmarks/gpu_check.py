"""One GPU check in one table: our image trainer vs the authors'-style loop, and fp32 vs bf16.

Run it through ``benchmarks/gpu_check.sh`` (which caps it at 9 minutes). On CUDA, at the
paper's sizes (128 px, batch 64, K_T 10, strong cost, U-Net 48 x 4 levels, ResNet_D 64..512;
the ``gpu`` preset of ``train_speed.py``), on generated shapes (discs -> squares,
:mod:`notpipe.data.shapes`), it measures

* speed: images/s through T and peak GPU memory of the reference loop
  (:class:`harness.reference.ImageReference`) in fp32 and TF32, and of our trainer
  (:func:`harness.image.build_ours`: channels-last, fused Adam, uint8 prefetch sampler) in
  fp32, TF32, bf16 autocast, and bf16 autocast + torch.compile. Each row warms up, times one
  step, then times as many steps as fit in ``--row-seconds`` (at least 3);
* an fp32-vs-bf16 A/B of our trainer: same seed, same initial weights, same batches, the same
  number of f-steps; T and f losses at the first, middle and last step, their largest absolute
  difference over all steps, and a smoke FID (seeded random-weights Inception,
  :func:`notpipe.evaluate.fid.build_extractor` ``"random"``) of T's outputs on the first
  ``--fid-images`` source images against as many target images.

"fp32" rows turn TF32 off (``torch.backends.cudnn.allow_tf32`` and
``torch.backends.cuda.matmul.allow_tf32``); "TF32" rows turn both on (torch's default already
runs convolutions in TF32); bf16 rows keep torch's defaults. The table goes to stdout,
progress to stderr. Without CUDA it prints one line and measures nothing; ``--cpu-smoke``
runs the same code at tiny sizes on the CPU (no torch.compile row, bf16 as CPU autocast) to
test the script, not to measure anything.

    benchmarks/gpu_check.sh                 # on a GPU machine: at most 9 minutes (it plans for 8)
    benchmarks/gpu_check.sh --cpu-smoke     # anywhere, well under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness.image import PRESETS, Opts, Sizes, build_ours, initial_weights
from harness.measure import device_name, fmt_mem, peak_memory, reset_peak, sync, timed
from harness.reference import ImageReference, reference_samplers

from notpipe.data import shapes
from notpipe.data.loader import to_float
from notpipe.evaluate import fid

#: the CPU smoke mode's sizes (seconds per row on one core)
SMOKE = dict(size=16, batch=4, k_t=2, t_base=4, t_depth=2, f_nf=4, f_max=8, n_images=64)
#: table columns
HEADER = ("part", "row", "img/s", "peak MiB", "vs ref TF32", "T loss", "f loss", "smoke FID")
NO_GPU = ("gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing measured. "
          "Run it on a GPU machine, or with --cpu-smoke to test the script.")


def log(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def tf32(on: bool | None):
    """TF32 on (True), off (False) or left as torch's default (None) inside the block."""
    keep = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if on is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = keep


def shapes_data(sz: Sizes, workdir: Path) -> dict:
    """Discs (source) and squares (target), uint8 (N, H, W, 3), saved as .npy and memory-mapped."""
    out = {}
    for side, shape, seed in (("source", "circle", sz.seed), ("target", "square", sz.seed + 1)):
        path = workdir / f"{side}.npy"
        np.save(path, shapes.generate(shape, sz.n_images, sz.size, seed)[0])
        out[side] = np.load(path, mmap_mode="r")
    return out


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_row(run, device: torch.device, warmup: int, seconds: float, max_steps: int) -> dict:
    """Warm up (compilation included), time one step, then time ``seconds`` worth of steps (>= 3)."""
    run(warmup)
    sync(device)
    t0 = time.perf_counter()
    run(1)
    sync(device)
    steps = int(max(3, min(max_steps, seconds / max(time.perf_counter() - t0, 1e-6))))
    return timed(run, 0, steps, device)


def rates(out: dict, sz: Sizes) -> dict:
    return {**out, "seconds_per_step": out["seconds"] / out["steps"],
            "images_per_s": out["steps"] / out["seconds"] * sz.images_per_step}


def speed_reference(sz, init, arrays, device, precision, args) -> dict:
    with tf32(precision == "TF32"):
        xs, ys = reference_samplers(arrays, sz, device, 4 if device.type == "cuda" else 0)
        torch.manual_seed(sz.seed)
        ref = ImageReference(sz, init, device, xs, ys)
        out = rates(time_row(ref.run, device, args.warmup, args.row_seconds, args.max_steps), sz)
    del ref, xs, ys
    free(device)
    return out


def speed_ours(sz, init, arrays, device, opts: Opts, flags: bool | None, args, warmup: int) -> dict:
    with tf32(flags):
        tr = build_ours(sz, opts, init, device, arrays)
        run = lambda n: tr.run(tr.step + n, progress=False)  # noqa: E731
        out = rates(time_row(run, device, warmup, args.row_seconds, args.max_steps), sz)
    del tr, run
    free(device)
    return out


def ab_run(sz, init, arrays, device, opts: Opts, flags: bool | None, steps: int, extractor,
           target_stats, n_fid: int) -> dict:
    """Ours for ``steps`` f-steps (losses every step), then the smoke FID of T's outputs."""
    with tf32(flags):
        tr = build_ours(sz, opts, init, device, arrays, log_every=1)
        reset_peak(device)
        t0 = time.perf_counter()
        tr.run(steps, progress=False)
        sync(device)
        sec = time.perf_counter() - t0
        peak = peak_memory(device)
        src = arrays["source"]
        gen = []
        for i in range(0, n_fid, sz.batch):
            x = to_float(torch.from_numpy(np.array(src[i:i + sz.batch])).to(device))
            gen.append(tr.infer(x)[:, 0])
        mu, sigma, _ = fid.feature_stats(gen, extractor, progress=False)
    out = {"steps": steps, "seconds": sec, "peak_memory": peak,
           "loss_t": [r["loss_t"] for r in tr.history], "loss_f": [r["loss_f"] for r in tr.history],
           "fid": fid.fid_from_stats(mu, sigma, *target_stats)}
    del tr, gen
    free(device)
    return out


def ab_pair(sz, init, arrays, device, steps: int, args, bf16: Opts) -> dict:
    """The fp32 and bf16 runs of the A/B with their smoke FIDs, and the largest differences."""
    log(f"A/B: ours fp32 and bf16 autocast, {steps} f-steps each, smoke FID on {args.fid_images} images")
    ext = fid.build_extractor("random", device=device, resize="batched")
    tgt = arrays["target"]
    target_stats = fid.feature_stats([np.array(tgt[i:i + sz.batch]) for i in range(0, args.fid_images, sz.batch)],
                                     ext, progress=False)[:2]
    ab = {key: ab_run(sz, init, arrays, device, opts, flags, steps, ext, target_stats, args.fid_images)
          for key, opts, flags in (("fp32", Opts(precision="fp32"), False), ("bf16", bf16, None))}
    ab["diff"] = {k: float(np.max(np.abs(np.subtract(ab["bf16"][k], ab["fp32"][k]))))
                  for k in ("loss_t", "loss_f", "fid")}
    return {"ab": ab}


class OutOfTime(Exception):
    pass


def attempt(name: str, seconds: float, fn) -> dict:
    """``{"name", **fn()}``, or ``{"name", "skipped": reason}`` when ``fn`` raises (out of memory,
    no compiler, ...) or runs past ``seconds``: one row's failure must not cost the table."""
    def fire(*_):
        raise OutOfTime(f"not finished within the {seconds:.0f} s left of --budget-s")
    if seconds < 1:
        return {"name": name, "skipped": "no time left of --budget-s"}
    log(name)
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return {"name": name, **fn()}
    except Exception as e:  # noqa: BLE001 -- reported in the table and on stderr
        first = (str(e).strip().splitlines() or [""])[0][:100].replace("|", "/")
        log(f"{name}: {type(e).__name__}: {first}")
        return {"name": name, "skipped": f"{type(e).__name__}: {first}"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        gc.collect()  # a failed row's networks and batches
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def setup(args) -> tuple[torch.device, Sizes]:
    if args.cpu_smoke:
        torch.set_num_threads(1)
        return torch.device("cpu"), Sizes(**SMOKE)
    return torch.device("cuda"), Sizes(**PRESETS["gpu"])


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: tests the script, in seconds")
    ap.add_argument("--ab-steps", type=int, default=None, help="f-steps of the fp32/bf16 A/B (GPU 30, smoke 4)")
    ap.add_argument("--fid-images", type=int, default=None, help="images per smoke FID side (GPU 512, smoke 8)")
    ap.add_argument("--row-seconds", type=float, default=None, help="timed seconds per speed row (GPU 12)")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="time for the whole check; the A/B shrinks and the compile row is skipped to fit")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    args.ab_steps = (4 if smoke else 30) if args.ab_steps is None else args.ab_steps
    args.fid_images = (8 if smoke else 512) if args.fid_images is None else args.fid_images
    args.row_seconds = (0.2 if smoke else 12.0) if args.row_seconds is None else args.row_seconds
    n_images = (SMOKE if smoke else PRESETS["gpu"])["n_images"]
    if args.ab_steps < 2:
        sys.exit(f"gpu_check: --ab-steps {args.ab_steps}: give at least 2 (the A/B compares losses over several f-steps)")
    if not 2 <= args.fid_images <= n_images:
        sys.exit(f"gpu_check: --fid-images {args.fid_images}: give 2 to {n_images} (the generated images per side)")
    if args.row_seconds <= 0:
        sys.exit(f"gpu_check: --row-seconds {args.row_seconds}: give a positive number of seconds")
    args.warmup, args.max_steps = (1, 3) if smoke else (2, 60)
    args.compile_reserve = 200.0  # seconds the compile row may need (compilation included)
    return args


def fmt_losses(xs: list[float], at: list[int]) -> str:
    return " / ".join(f"{xs[s - 1]:+.4g}" for s in at)


def table(device: str, sizes: str, speed: list[dict], ab: dict | None, ab_note: str) -> list[str]:
    ref = next((r for r in speed if r["name"] == "reference TF32" and "images_per_s" in r), None)
    steps = ab["fp32"]["steps"] if ab else 0
    at = sorted({1, max(1, steps // 2), steps}) if ab else []
    head = list(HEADER)
    if at:
        head[5] = f"T loss @ {'/'.join(map(str, at))}"
        head[6] = f"f loss @ {'/'.join(map(str, at))}"
    rows = [head, ["device", device, "", "", "", "", "", ""], ["sizes", sizes, "", "", "", "", "", ""]]
    for r in speed:
        if "images_per_s" not in r:
            rows.append(["speed", r["name"], f"skipped: {r['skipped']}", "-", "-", "-", "-", "-"])
            continue
        vs = f"{r['images_per_s'] / ref['images_per_s']:.2f}x" if ref else "-"
        rows.append(["speed", r["name"], f"{r['images_per_s']:.1f}", fmt_mem(r["peak_memory"]), vs, "-", "-", "-"])
    if ab is None:
        rows.append(["A/B", "ours fp32 vs bf16 autocast", f"skipped: {ab_note}", "-", "-", "-", "-", "-"])
    else:
        for key, label in (("fp32", "ours fp32"), ("bf16", "ours bf16 autocast")):
            a = ab[key]
            rows.append(["A/B", f"{label}, {steps} f-steps", "-", fmt_mem(a["peak_memory"]), "-",
                         fmt_losses(a["loss_t"], at), fmt_losses(a["loss_f"], at), f"{a['fid']:.2f}"])
        d = ab["diff"]
        rows.append(["A/B", "max abs diff bf16 - fp32, all steps", "-", "-", "-", f"{d['loss_t']:.3g}",
                     f"{d['loss_f']:.3g}", f"{d['fid']:.3g}"])
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return [lines[0], "|" + "---|" * len(head), *lines[1:]]


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    start = time.perf_counter()
    device, sz = setup(args)
    left = lambda: args.budget_s - (time.perf_counter() - start)  # noqa: E731
    name = device_name(device) + (" [--cpu-smoke: tiny sizes, figures mean nothing]" if args.cpu_smoke else "")
    sizes = (f"{sz.size} px, batch {sz.batch}, K_T {sz.k_t}, {sz.cost} cost, U-Net {sz.t_base} x {sz.t_depth}, "
             f"ResNet_D {sz.f_nf}/{sz.f_max}; {sz.images_per_step} images through T per f-step; torch {torch.__version__}")
    log(f"{name}; {sizes}")
    init = initial_weights(sz)
    init.pop("T_mod"), init.pop("f_mod")
    bf16 = Opts(precision="bf16", cpu_bf16=args.cpu_smoke)
    speed, ab, ab_note = [], None, ""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        arrays = shapes_data(sz, Path(tmp))
        for prec in ("fp32", "TF32"):
            speed.append(attempt(f"reference {prec}", left() - 15,
                                 lambda: speed_reference(sz, init, arrays, device, prec, args)))
        for label, opts, flags in (("ours fp32", Opts(precision="fp32"), False),
                                   ("ours TF32", Opts(precision="fp32"), True),
                                   ("ours bf16 autocast", bf16, None)):
            speed.append(attempt(label, left() - 15,
                                 lambda: speed_ours(sz, init, arrays, device, opts, flags, args, args.warmup)))

        # the A/B before the compile row: it matters more, and its length adapts to the time left
        per = {r["name"]: r.get("seconds_per_step") for r in speed}
        room = left() - (0 if args.cpu_smoke else args.compile_reserve + 30)
        steps = args.ab_steps
        if per["ours fp32"] and per["ours bf16 autocast"]:
            steps = min(steps, int(room / (1.3 * (per["ours fp32"] + per["ours bf16 autocast"]))))
        if steps < 2:
            ab_note = f"{room:.0f} s left for it, too few for 2 f-steps in fp32 and bf16"
        else:
            got = attempt("A/B", left() - 15, lambda: ab_pair(sz, init, arrays, device, steps, args, bf16))
            ab, ab_note = got.get("ab"), got.get("skipped", "")

        label = "ours bf16 autocast + compile"
        if args.cpu_smoke:
            speed.append({"name": label, "skipped": "not in --cpu-smoke (compiling takes minutes on a CPU)"})
        elif left() < args.compile_reserve:
            speed.append({"name": label, "skipped": f"{left():.0f} s left of --budget-s"})
        else:
            speed.append(attempt(label, left() - 10, lambda: speed_ours(
                sz, init, arrays, device, Opts(precision="bf16", compile=True), None, args, args.warmup + 1)))
    print("\n".join(table(name, sizes, speed, ab, ab_note)), flush=True)
    log(f"done in {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": name, "sizes": sizes, "speed": speed, "ab": ab,
                                        "seconds": time.perf_counter() - start}, indent=1, default=str))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
