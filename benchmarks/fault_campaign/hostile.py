"""Fault kinds 20-25: hostile or careless inputs (crafted weight files, HDF5 that reads other
files or declares more than it holds, archive bombs, escaping or damaged archives, devices as
data paths, model files of another run or with a pickle payload).

Every input is built here, small (sparse or zero data), in the trial's folder. A trial
survives when the input is refused with one clear line naming the file (or, for the few
legitimate inputs mixed in, handled as documented), nothing the input asked for happened
(no file written by a weight file, no byte of another file in the arrays), nothing is left
in the data set folder (no ``.tmp``) and the refusal came before anything big was read.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from .common import Kind, Tally, one_clear_line

MiB = 1 << 20
#: a refusal must come before anything big is read: seconds per trial, generous for a busy machine
FAST = 20.0


# ------------------------------------------------------------------ crafted inputs
def png(seed: int, size: int = 16) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares ``w`` x ``h`` RGB pixels, with a few bytes of image data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def writes_on_load(path: Path, marker: Path) -> Path:
    """TorchScript whose ``__setstate__`` -- run by ``torch.jit.load`` -- writes ``marker``."""
    import warnings

    import torch

    class WritesOnLoad(torch.nn.Module):
        def __init__(self, target: str):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.target = target

        def forward(self, x):
            return x

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
            return self.w, self.target, self.training

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
            self.w, self.target, self.training = state
            torch.save(torch.ones(1), self.target)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(WritesOnLoad(str(marker))).save(str(path))
    return path


def hdf5_zip(path: Path, build: Callable) -> Path:
    """A zip holding one hdf5 file made by ``build(h5py.File)``."""
    import h5py

    h5 = path.with_suffix(".src.hdf5")
    with h5py.File(h5, "w") as fh:
        build(fh)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(h5, "x.hdf5")
    h5.unlink()
    return path


def zero_member(zf: zipfile.ZipFile, name: str, nbytes: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as fh:
        for _ in range(nbytes // MiB):
            fh.write(bytes(MiB))


def tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes):
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


# ------------------------------------------------------------------ running prepare on an input
def _spec(fmt: str, path: str | Path):
    from notpipe.data.datasets import resolve_datasets

    return resolve_datasets({"x": {"path": str(path), "format": fmt, "crop": "none"}})["x"]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".tmp")) if out.is_dir() else []


def prepare_refused(run: Path, fmt: str, path: str | Path, says: str,
                    secret: bytes | None = None) -> tuple[bool, bool, str]:
    """``prepare`` of one source that must be refused: one line containing ``says``, fast, no
    arrays or manifest, no ``.tmp``; ``secret``: bytes that must not reach any array."""
    from notpipe.data.prepare import prepare

    out, t0 = run / "out", time.perf_counter()
    try:
        m = prepare("x", _spec(fmt, path), 16, out, run, progress=False)
    except Exception as err:  # noqa: BLE001 - what the user sees is what is judged
        msg, one = str(err), getattr(err, "one_line", False)
    else:
        msg, one = f"accepted: {m['n_source']} images", False
    took = time.perf_counter() - t0
    arrays = [p for p in (out / "train.npy", out / "test.npy") if p.exists()]
    lost = bool(arrays) or (out / "manifest.json").exists()
    if secret is not None:
        lost = lost or any(secret[:64] in p.read_bytes() for p in arrays)
    left = _leftovers(out)
    ok = one and one_clear_line(msg) and says in msg and not left and took < FAST
    if left:
        msg += f" [left behind: {', '.join(left)}]"
    return ok, lost, msg


# ------------------------------------------------------------------ 20: weight files
def weights_trial(case: str, run: Path) -> tuple[bool, bool, str]:
    """Weight files as the evaluation loads them (``extractor_from_config`` / ``lpips_from_config``)."""
    import torch

    from notpipe.config import validate_config
    from notpipe.evaluate import weights as W
    from notpipe.evaluate.snapshot import extractor_from_config, lpips_from_config

    marker = run / "written_by_the_weight_file"
    if case == "torchscript_runs_code":
        writes_on_load(run / W.CLEAN_FILE, marker)
        ev, build, says = {"feature_extractor": "clean", "inception_weights": str(run)}, extractor_from_config, \
            "runs code stored in the file"
    elif case == "legacy_not_pinned":
        torch.save({"w": torch.zeros(3)}, run / "mine.pth")
        ev, build, says = {"feature_extractor": "legacy_pytorch", "inception_weights": str(run / "mine.pth")}, \
            extractor_from_config, f"is not the published {W.LEGACY_FILE}"
    elif case == "lpips_backbone_not_pinned":
        torch.save({"features.0.weight": torch.zeros(1)}, run / "alexnet-owt-7be5be79.pth")
        ev, build, says = {"lpips_weights": str(run)}, lpips_from_config, \
            "is not the published alexnet-owt-7be5be79.pth"
    else:
        raise ValueError(case)
    ev = validate_config({"eval": ev})["eval"]
    try:
        build(ev, "cpu")
    except W.WeightsError as err:
        msg, ok = str(err), getattr(err, "one_line", False)
    except Exception as err:  # noqa: BLE001
        msg, ok = f"{type(err).__name__}: {err}", False
    else:
        msg, ok = "loaded", False
    ran = marker.exists()
    return ok and one_clear_line(msg) and says in msg and not ran, ran, msg + (" [THE FILE'S CODE RAN]" if ran else "")


WEIGHT_CASES = ("torchscript_runs_code", "legacy_not_pinned", "lpips_backbone_not_pinned")


# ------------------------------------------------------------------ 21: HDF5
def hdf5_trial(case: str, run: Path) -> tuple[bool, bool, str]:
    import h5py
    import numpy as np

    shape = (4, 16, 16, 3)
    secret_file = run.parent / f"{run.name}-secret.bin"  # outside the data folder
    secret = bytes(random.Random(case).randbytes(int(np.prod(shape))))
    secret_file.write_bytes(secret)
    other = run.parent / f"{run.name}-other.hdf5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("imgs", data=np.frombuffer(secret, np.uint8).reshape(shape))

    def external(fh):
        fh.create_dataset("imgs", shape, np.uint8, external=[(str(secret_file), 0, len(secret))])

    def virtual(fh):
        layout = h5py.VirtualLayout(shape, np.uint8)
        layout[:] = h5py.VirtualSource(str(other), "imgs", shape)
        fh.create_virtual_dataset("imgs", layout)

    def link(fh):
        fh["imgs"] = h5py.ExternalLink(str(other), "imgs")

    def million(fh):
        fh.create_dataset("imgs", (1_000_000, 128, 128, 3), np.uint8)

    def unwritten(fh):
        d = fh.create_dataset("imgs", (100, 16, 16, 3), np.uint8, chunks=(10, 16, 16, 3), compression="gzip")
        d[:10] = 7

    build, says = {"external_storage": (external, "uses external storage"),
                   "virtual_dataset": (virtual, "is a virtual dataset"),
                   "external_link": (link, "is an external link"),
                   "million_images_in_a_tiny_file": (million, "declares 1000000 images"),
                   "unwritten_chunks": (unwritten, "but the file stores only")}[case]
    path = hdf5_zip(run / "x.zip", build)
    return prepare_refused(run, "igan_hdf5_zip", path.name, says, secret=secret)


HDF5_CASES = ("external_storage", "virtual_dataset", "external_link", "million_images_in_a_tiny_file",
              "unwritten_chunks")


# ------------------------------------------------------------------ 22: archive bombs
def bomb_trial(case: str, run: Path) -> tuple[bool, bool, str]:
    if case == "zip_member_100_mib":
        with zipfile.ZipFile(run / "x.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("a.png", png(0))
            zero_member(zf, "bomb.png", 100 * MiB)
        return prepare_refused(run, "image_folder_zip", "x.zip", "member 'bomb.png' expands to 100.0 MiB")
    if case == "zip_total_expansion":
        with zipfile.ZipFile(run / "x.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(40):
                zero_member(zf, f"{i:02d}.png", MiB)
        return prepare_refused(run, "image_folder_zip", "x.zip", "more than data.max_expansion=50 times")
    if case == "tar_sparse_2_gib":
        info = tarfile.TarInfo("huge.png")
        info.size = 2 << 30  # a sparse member's header: 2 GiB, whatever the file holds
        (run / "x.tar").write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096))
        return prepare_refused(run, "image_folder_tar", "x.tar", "member 'huge.png' expands to 2.0 GiB")
    if case == "tar_gz_non_image_members":  # legitimate: only the images are extracted
        from notpipe.data.prepare import Limits, _extract_tar_images, prepare

        members = [_file(f"img/{i}.png", png(i)) for i in range(3)]
        members += [_file("img/notes.bin", bytes(50 * MiB)), _file("run.sh", b"#!/bin/sh\n")]
        path = tar(run / "x.tar.gz", members, "w:gz")
        _extract_tar_images(path, run / "extracted", Limits())
        got = sorted(str(p.relative_to(run / "extracted")) for p in (run / "extracted").rglob("*") if p.is_file())
        m = prepare("x", _spec("image_folder_tar", path.name), 16, run / "out", run, progress=False)
        ok = got == ["img/0.png", "img/1.png", "img/2.png"] and m["n_source"] == 3 and not _leftovers(run / "out")
        return ok, False, f"extracted only the image members: {', '.join(got)}"
    if case == "png_12600_px":  # one image among good ones: skipped from its header, listed
        import warnings

        from PIL import Image

        from notpipe.data.prepare import prepare

        with zipfile.ZipFile(run / "x.zip", "w") as zf:
            for i in range(20):
                zf.writestr(f"{i:02d}.png", png(i))
            zf.writestr("big.png", png_header_only(12600, 12600))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            m = prepare("x", _spec("image_folder_zip", "x.zip"), 16, run / "out", run, progress=False,
                        max_bad_fraction=0.1)
        reason = m["skipped"][0]["reason"] if m["skipped"] else ""
        ok = [s["name"] for s in m["skipped"]] == ["big.png"] and "data.max_image_pixels" in reason
        return ok, False, f"big.png skipped and listed: {reason}"
    raise ValueError(case)


BOMB_CASES = ("zip_member_100_mib", "zip_total_expansion", "tar_sparse_2_gib", "tar_gz_non_image_members",
              "png_12600_px")


# ------------------------------------------------------------------ 23: escaping and damaged archives
def damage_trial(case: str, run: Path) -> tuple[bool, bool, str]:
    good = [_file(f"{i}.png", png(i, 48)) for i in range(4)]
    escapes = {"tar_dotdot": (_file("../evil.png", b"x"), "member '../evil.png' points outside the archive"),
               "tar_absolute": (_file("/tmp/evil.png", b"x"), "member '/tmp/evil.png' points outside"),
               "tar_symlink": (_link("link.png", "/etc/passwd"), "member 'link.png' points outside"),
               "tar_hardlink": (_link("hard.png", "0.png", tarfile.LNKTYPE), "image member 'hard.png' is a link")}
    if case in escapes:
        member, says = escapes[case]
        path = tar(run / "x.tar", [*good, member])
        ok, lost, msg = prepare_refused(run, "image_folder_tar", path.name, says)
        escaped = (run.parent / "evil.png").exists() or (run / "evil.png").exists()
        return ok and not escaped, lost or escaped, msg
    if case in ("truncated_zip", "truncated_tar", "truncated_tar_gz"):
        if case == "truncated_zip":
            with zipfile.ZipFile(run / "full.zip", "w") as zf:
                for info, data in good:
                    zf.writestr(info.name, data)
            name, fmt, says = "x.zip", "image_folder_zip", "not a readable zip archive"
            full = (run / "full.zip").read_bytes()
        else:
            name = "x.tar" if case == "truncated_tar" else "x.tar.gz"
            full = tar(run / f"full_{name}", good, "w" if name == "x.tar" else "w:gz").read_bytes()
            fmt, says = "image_folder_tar", "not a readable tar archive"
        (run / name).write_bytes(full[:len(full) // 2])
        return prepare_refused(run, fmt, name, says)
    if case == "folder_as_zip":
        (run / "x.zip").mkdir()
        return prepare_refused(run, "image_folder_zip", "x.zip", "is a folder, not a zip archive")
    raise ValueError(case)


DAMAGE_CASES = ("tar_dotdot", "tar_absolute", "tar_symlink", "tar_hardlink", "truncated_zip", "truncated_tar",
                "truncated_tar_gz", "folder_as_zip")


# ------------------------------------------------------------------ 24: devices and pipes as data paths
def special_trial(case: str, run: Path) -> tuple[bool, bool, str]:
    fmt, kind = case.split(":")
    if kind == "fifo":
        path = run / "pipe"
        os.mkfifo(path)  # reading it would wait for a writer forever
    else:
        path = Path("/dev/zero")  # reading it never ends
    return prepare_refused(run, fmt, path, f"{path} is not a regular file or folder")


SPECIAL_CASES = ("image_folder_zip:dev_zero", "image_folder_tar:dev_zero", "igan_hdf5_zip:dev_zero",
                 "image_folder:dev_zero", "image_folder_tar:fifo")


# ------------------------------------------------------------------ 25: model files
def model_trial(case: str, run: Path, model: Path, exp: dict) -> tuple[bool, bool, str]:
    """A model file loaded as an evaluation job loads it under Snakemake: the terminal line."""
    import types

    import torch

    from notpipe import toy
    from notpipe.core import checkpoint as ckpt
    from notpipe.stage import entry

    class Payload:
        def __reduce__(self):
            return (open, (str(run / "PAYLOAD_RAN"), "w"))

    expected, path = exp, run / "model.pt"
    if case == "another_run":
        path, expected, says = model, {**exp, "batch": exp["batch"] * 2}, "was trained with another configuration"
    elif case == "pickle_payload":
        torch.save({**ckpt.load(model), "T": Payload()}, path)
        says = "refused: it holds Python objects"
    elif case == "truncated":
        path.write_bytes(model.read_bytes()[:300])
        says = "is truncated or damaged"
    else:
        raise ValueError(case)
    smk = types.SimpleNamespace(log=[str(run / "job.log")], threads=1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            entry(lambda: toy.load_trained(path, expected=expected), None, lambda s: {}, smk, torch_threads=False)
            code = 0
        except SystemExit as e:
            code = e.code
        except Exception as e:  # noqa: BLE001 - a traceback the user would see
            import traceback

            code, _ = 1, err.write(traceback.format_exc())
    msg = err.getvalue().strip()
    ran = (run / "PAYLOAD_RAN").exists()
    ok = code == 1 and one_clear_line(msg) and msg.startswith(f"error: {path}") and says in msg and not ran
    return ok, ran, msg


MODEL_CASES = ("another_run", "pickle_payload", "truncated")


# ------------------------------------------------------------------ runners
def _runner(kind: str, title: str, cases: tuple[str, ...], trial: Callable):
    def run(rng: random.Random, trials: int, work: Path) -> Tally:
        tally = Tally(kind, title)
        order = list(cases)
        rng.shuffle(order)
        for i in range(max(trials, 1)):
            case = order[i % len(order)]
            folder = work / f"{i:03d}-{case.replace(':', '-')}"
            folder.mkdir(parents=True)
            ok, lost, msg = trial(case, folder)
            tally.add(ok, msg, lost=lost, what=case)
        return tally
    return run


def run_models(rng: random.Random, trials: int, work: Path) -> Tally:
    from notpipe import toy
    from notpipe.config import validate_config

    exp = {"source": {"name": "gaussian", "dim": 2}, "target": {"name": "moons"}, "cost": {"name": "strong"},
           "steps": 4, "batch": 16, "k_t": 2, "log_every": 2, "checkpoint_every": 2,
           "model": {"hidden_t": [16], "hidden_f": [16]}}
    exp = validate_config({"toy": {"experiments": {"g": exp}}})["toy"]["experiments"]["g"]
    model = work / "trained" / "model.pt"
    toy.train(exp, model, work / "trained" / "log.csv", None, progress=False, name="g")
    return _runner("model_files", TITLES["model_files"], MODEL_CASES,
                   lambda case, run: model_trial(case, run, model, exp))(rng, trials, work)


TITLES = {"weights": "weight files: TorchScript that runs code, unpinned state dicts",
          "hdf5": "HDF5: external storage/links, virtual, declared > stored",
          "archive_bombs": "archive bombs (zip, sparse tar, tar.gz extras, 12600 px PNG)",
          "archive_damage": "escaping tar members, truncated archives, folder as archive",
          "special_files": "a device or pipe as a data path",
          "model_files": "model files: another run's, pickle payload, truncated"}

KINDS = [Kind("weights", 20, TITLES["weights"], len(WEIGHT_CASES),
              _runner("weights", TITLES["weights"], WEIGHT_CASES, weights_trial)),
         Kind("hdf5", 21, TITLES["hdf5"], len(HDF5_CASES), _runner("hdf5", TITLES["hdf5"], HDF5_CASES, hdf5_trial)),
         Kind("archive_bombs", 22, TITLES["archive_bombs"], len(BOMB_CASES),
              _runner("archive_bombs", TITLES["archive_bombs"], BOMB_CASES, bomb_trial)),
         Kind("archive_damage", 23, TITLES["archive_damage"], len(DAMAGE_CASES),
              _runner("archive_damage", TITLES["archive_damage"], DAMAGE_CASES, damage_trial)),
         Kind("special_files", 24, TITLES["special_files"], len(SPECIAL_CASES),
              _runner("special_files", TITLES["special_files"], SPECIAL_CASES, special_trial)),
         Kind("model_files", 25, TITLES["model_files"], len(MODEL_CASES), run_models)]
