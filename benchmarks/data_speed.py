"""Data stage speed: preprocessing throughput and loader throughput, in one run.

Preprocessing: a generated image-folder zip of JPEGs (default 2000 images at
256x256, like CelebA/DTD photos) and an iGAN-style hdf5 zip, prepared to 128 px
with 1 and ``--threads`` workers (decode + crop + resize + split + write).
Loader: :class:`notpipe.data.loader.ImageSampler` drawing random batches of 64 from
the prepared uint8 memmap and returning float tensors in [-1, 1] (what the
trainer receives), plus the bare uint8 gather.

    python benchmarks/data_speed.py --images 2000 --threads 2 --out results/benchmarks/data_speed.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from notpipe.data.datasets import resolve_datasets
from notpipe.data.loader import ImageSampler, load_split
from notpipe.data.prepare import prepare


def make_jpeg_zip(path: Path, n: int, side: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            # smooth content (like photos) so the JPEGs have realistic sizes
            img = Image.fromarray(np.roll(base, i, axis=0)).resize((side, side), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            zf.writestr(f"img/{i:06d}.jpg", buf.getvalue())


def make_hdf5_zip(path: Path, n: int, side: int = 128) -> None:
    import h5py

    arr = np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    h5 = path.with_suffix(".hdf5")
    with h5py.File(h5, "w") as fh:
        fh.create_dataset("imgs", data=arr)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(h5, h5.name)
    h5.unlink()


def time_prepare(name: str, spec: dict, size: int, work: Path, threads: int) -> float:
    out = work / f"{name}_{size}_t{threads}"
    t = time.perf_counter()
    m = prepare(name, spec, size, out, work, threads=threads, progress=False)
    dt = time.perf_counter() - t
    return m["n_source"] / dt


def time_loader(data_dir: Path, batch: int, seconds: float, as_float: bool) -> float:
    sampler = ImageSampler(load_split(data_dir))
    gen = torch.Generator().manual_seed(0)
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        if as_float:
            sampler(batch, gen)
        else:
            sampler.gather(sampler.indices(batch, gen))
        n += batch
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="images per generated archive")
    p.add_argument("--side", type=int, default=256, help="side of the generated JPEGs")
    p.add_argument("--size", type=int, default=128, help="prepared image size")
    p.add_argument("--threads", type=int, default=2, help="worker processes (also: torch threads)")
    p.add_argument("--batch", type=int, default=64, help="loader batch size")
    p.add_argument("--seconds", type=float, default=5.0, help="loader timing window")
    p.add_argument("--out", help="write the figures as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
                 f"{os.cpu_count()} cores", "torch": torch.__version__, "args": vars(a)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_jpeg_zip(work / "photos.zip", a.images, a.side)
        make_hdf5_zip(work / "bags.zip", a.images)
        specs = resolve_datasets({"photos": {"path": "photos.zip", "format": "image_folder_zip"},
                                  "bags": {"path": "bags.zip", "format": "igan_hdf5_zip"}})
        for name in ("photos", "bags"):
            for threads in sorted({1, a.threads}):
                ips = time_prepare(name, specs[name], a.size, work, threads)
                res[f"prepare_{name}_t{threads}_img_s"] = ips
                print(f"prepare {name:6s} ({'JPEG %dpx' % a.side if name == 'photos' else 'hdf5 128px'}) -> "
                      f"{a.size}px, {threads} worker(s): {ips:8.0f} img/s", flush=True)
        d = work / f"bags_{a.size}_t1"
        res["loader_float_img_s"] = time_loader(d, a.batch, a.seconds, True)
        res["loader_uint8_gather_img_s"] = time_loader(d, a.batch, a.seconds, False)
        print(f"loader: random batches of {a.batch} at {a.size}px -> float [-1,1] NCHW: "
              f"{res['loader_float_img_s']:8.0f} img/s (uint8 gather alone: "
              f"{res['loader_uint8_gather_img_s']:.0f} img/s)")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res), file=sys.stderr)


if __name__ == "__main__":
    main()
