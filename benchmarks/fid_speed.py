"""FID feature-pass speed: our streaming path vs clean-fid's folder path, in one run.

Same images (random gradient/disc pictures, --size px, resized to 299 by
clean-fid's legacy_pytorch resizer), same seeded random Inception ("smoke"
extractor: the pytorch-fid architecture; no weights needed), CPU. Contenders:

* clean-fid folder path: ``cleanfid.fid.get_folder_features`` on a folder of
  PNGs (the feature pass ``compute_fid`` runs per folder), ``num_workers=0``,
  with a plain NCHW extractor (= stock clean-fid) and with ours (channels-last);
* ours: ``notpipe.evaluate.fid.feature_stats`` streaming float tensors in [-1, 1] (what
  the eval stage feeds), with clean-fid's per-image resizer or the batched one,
  and streaming uint8 NHWC arrays (reference statistics).

``--end-to-end`` also times a whole FID between two such sets:
``cleanfid.fid.compute_fid`` (folders, 2048-d ``sqrtm``) vs ours (streaming +
``fid_from_stats``). Prints a table and writes JSON.

    python benchmarks/fid_speed.py --n 200 --batch 50 --size 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cleanfid.fid as cf_fid
import numpy as np
import torch
from PIL import Image

from notpipe.evaluate import fid


def pictures(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Gradient backgrounds with a few discs, float NCHW in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = (torch.rand(n, 3, 1, 1, generator=g) - 0.5) * (xx + yy) + torch.rand(n, 3, 1, 1, generator=g) - 0.5
    for _ in range(3):
        c, p = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1, torch.rand(n, 2, 1, 1, generator=g) * 1.4 - 0.7
        r = 0.15 + 0.4 * torch.rand(n, 1, 1, generator=g)
        m = (((xx - p[:, 0]) ** 2 + (yy - p[:, 1]) ** 2) < r ** 2).float()[:, None]
        img = img * (1 - m) + c * m
    return img.clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images per contender (default 200)")
    ap.add_argument("--size", type=int, default=128, help="image side before the 299 resize (default 128)")
    ap.add_argument("--batch", type=int, default=50, help="batch size (default 50)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--end-to-end", action="store_true", help="also time a full FID both ways (slow sqrtm)")
    ap.add_argument("--out", default="results/benchmarks/fid_speed.json", help="JSON output path")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = pictures(args.n, args.size)
    u = to_uint8(x)
    xs = [x[i:i + args.batch] for i in range(0, args.n, args.batch)]
    us = [u[i:i + args.batch] for i in range(0, args.n, args.batch)]
    ext = fid.build_extractor("random")
    plain = fid.build_extractor("random", channels_last=False)
    batched = fid.build_extractor("random", resize="batched")
    for e in (ext, plain, batched):  # warm-up
        e.features(x[:2])
    rows, feats = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        for i, im in enumerate(u):
            Image.fromarray(im).save(folder / f"{i:05d}.png")

        def folder_pass(e):
            return cf_fid.get_folder_features(str(folder), e, num_workers=0, batch_size=args.batch,
                                              device=e.device, mode=e.mode, verbose=False)
        rows["clean-fid folder, plain NCHW extractor"], feats["cf_plain"] = timed(lambda: folder_pass(plain))
        rows["clean-fid folder, our extractor"], feats["cf_ours"] = timed(lambda: folder_pass(ext))
        if args.end_to_end:
            other = Path(tmp) / "other"
            other.mkdir()
            for i, im in enumerate(to_uint8(pictures(args.n, args.size, seed=1))):
                Image.fromarray(im).save(other / f"{i:05d}.png")
            rows["end-to-end FID: clean-fid compute_fid"], cf_val = timed(
                lambda: fid.fid_folders_like_cleanfid(folder, other, extractor=plain, batch_size=args.batch))
    rows["ours: tensors [-1,1], clean-fid resizer"], st = timed(
        lambda: fid.feature_stats(xs, ext, progress=False, return_features=True))
    feats["ours_tensor"] = st[3]
    rows["ours: tensors [-1,1], batched resize"], _ = timed(lambda: fid.feature_stats(xs, batched, progress=False))
    rows["ours: uint8 NHWC, clean-fid resizer"], su = timed(
        lambda: fid.feature_stats(us, ext, progress=False, return_features=True))
    if args.end_to_end:
        y = pictures(args.n, args.size, seed=1)
        ys = [to_uint8(y[i:i + args.batch]) for i in range(0, args.n, args.batch)]

        def ours_fid():
            a, b = fid.feature_stats(us, ext, progress=False), fid.feature_stats(ys, ext, progress=False)
            return fid.fid_from_stats(*a[:2], *b[:2])
        rows["end-to-end FID: ours (streaming)"], our_val = timed(ours_fid)
    ref = rows["clean-fid folder, plain NCHW extractor"]
    print(f"FID feature pass, random Inception, {args.n} images {args.size}px -> 299, batch {args.batch}, "
          f"{torch.get_num_threads()} torch thread(s), CPU")
    print(f"{'contender':44s} {'seconds':>8s} {'img/s':>7s} {'vs clean-fid':>12s}")
    for name, sec in rows.items():
        n = 2 * args.n if name.startswith("end-to-end") else args.n
        speedup = float("nan") if name.startswith("end") else ref / sec
        print(f"{name:44s} {sec:8.2f} {n / sec:7.2f} {speedup:11.2f}x")
    scale = np.abs(feats["cf_plain"]).max()
    agree = {k: float(np.abs(v - feats["cf_plain"]).max() / scale) for k, v in
             (("cf_ours", feats["cf_ours"]), ("ours_tensor", feats["ours_tensor"]), ("ours_uint8", su[3]))}
    print("max |feature difference| / max |feature| vs clean-fid folder (plain):",
          ", ".join(f"{k} {v:.1e}" for k, v in agree.items()), "(ours_tensor: unquantised, PNGs are rounded)")
    result = {"n": args.n, "size": args.size, "batch": args.batch, "threads": torch.get_num_threads(),
              "device": "cpu", "extractor": ext.tag,
              "rows": [{"name": k, "seconds": v, "img_per_s": (2 if k.startswith("end") else 1) * args.n / v}
                       for k, v in rows.items()], "feature_rel_diff": agree}
    if args.end_to_end:
        result["fid"] = {"clean-fid": cf_val, "ours": our_val}
        print(f"FID clean-fid {cf_val:.6f}  ours {our_val:.6f}  rel diff {abs(cf_val - our_val) / cf_val:.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
