"""Hostile or careless data sources: HDF5 that reads other files or declares more than it holds,
archive bombs, members that escape, truncated archives, a folder or a device given as an
archive, oversized images. Each is refused with one line naming the file, before anything big
is read or allocated, and nothing is left in the data set folder."""

import io
import os
import struct
import tarfile
import time
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from data_fixtures import encode, rgb, write_igan_zip, write_zip

from notpipe.data import prepare as P
from notpipe.data.datasets import DatasetError, resolve_datasets

MiB = 1 << 20


def spec(fmt="image_folder_zip", path="x.zip", **over):
    return resolve_datasets({"x": {"path": str(path), "format": fmt, "crop": "none", **over}})["x"]


def refused(tmp_path, sp, error=P.PrepareError, **kw) -> str:
    """Prepare ``sp`` into tmp_path/out; the one-line message; nothing left behind."""
    out = tmp_path / "out"
    with pytest.raises(error) as e:
        P.prepare("x", sp, 16, out, tmp_path, progress=False, **kw)
    msg = str(e.value)
    assert "\n" not in msg and getattr(e.value, "one_line", False), msg
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert not [n for n in left if n.startswith(".tmp") or n.endswith(".npy") or n == "manifest.json"], left
    return msg


def h5_zip(tmp_path, build, name="x.zip"):
    """A zip holding one hdf5 file made by ``build(h5py.File)``."""
    h5 = tmp_path / "src.hdf5"
    with h5py.File(h5, "w") as fh:
        build(fh)
    with zipfile.ZipFile(tmp_path / name, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(h5, "x.hdf5")
    return tmp_path / name


# ------------------------------------------------------------------ HDF5
def test_hdf5_external_storage_cannot_read_another_file(tmp_path):
    secret = tmp_path / "secret.bin"  # a file outside the data folder, 4 images' worth of bytes
    secret.write_bytes(bytes(range(256)) * (4 * 16 * 16 * 3 // 256))
    path = h5_zip(tmp_path, lambda fh: fh.create_dataset(
        "imgs", (4, 16, 16, 3), np.uint8, external=[(str(secret), 0, secret.stat().st_size)]))
    msg = refused(tmp_path, spec("igan_hdf5_zip", path.name))
    assert "uses external storage" in msg and "x.hdf5" in msg


def test_hdf5_virtual_dataset_and_external_link_are_refused(tmp_path):
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("imgs", data=np.zeros((4, 16, 16, 3), np.uint8))

    def virtual(fh):
        layout = h5py.VirtualLayout((4, 16, 16, 3), np.uint8)
        layout[:] = h5py.VirtualSource(str(other), "imgs", (4, 16, 16, 3))
        fh.create_virtual_dataset("imgs", layout)

    def link(fh):
        fh["imgs"] = h5py.ExternalLink(str(other), "imgs")

    assert "is a virtual dataset" in refused(tmp_path, spec("igan_hdf5_zip", h5_zip(tmp_path, virtual).name))
    assert "is an external link" in refused(tmp_path, spec("igan_hdf5_zip", h5_zip(tmp_path, link).name))


def test_tiny_hdf5_declaring_a_million_images_is_refused_before_allocating(tmp_path):
    path = h5_zip(tmp_path, lambda fh: fh.create_dataset("imgs", (1_000_000, 128, 128, 3), np.uint8))
    assert path.stat().st_size < 2048
    t0 = time.perf_counter()
    msg = refused(tmp_path, spec("igan_hdf5_zip", path.name))
    assert time.perf_counter() - t0 < 10
    assert "declares 1000000 images of 128x128x3 (45.8 GiB) but the file stores only 0 B" in msg


def test_hdf5_with_unwritten_chunks_or_past_the_expansion_cap_is_refused(tmp_path):
    def partial(fh):
        d = fh.create_dataset("imgs", (100, 16, 16, 3), np.uint8, chunks=(10, 16, 16, 3), compression="gzip")
        d[:10] = 1  # 1 of 10 chunks written: the rest would read as zeros

    assert "but the file stores only" in refused(tmp_path, spec("igan_hdf5_zip", h5_zip(tmp_path, partial).name))

    def four_levels(fh):  # 2 bits a byte: gzip stores it about 4x smaller
        arr = np.random.default_rng(0).integers(0, 4, (100, 16, 16, 3), dtype=np.uint8)
        fh.create_dataset("imgs", data=arr, chunks=(10, 16, 16, 3), compression="gzip")

    path = h5_zip(tmp_path, four_levels)
    with h5py.File(tmp_path / "src.hdf5") as fh:
        with pytest.raises(P.PrepareError, match="more than data.max_expansion=2 times"):
            P.check_hdf5_images(fh, "imgs", "x", P.Limits(max_expansion=2))
        assert P.check_hdf5_images(fh, "imgs", "x").shape == (100, 16, 16, 3)  # default cap: 50
    m = P.prepare("x", spec("igan_hdf5_zip", path.name), 16, tmp_path / "ok", tmp_path, progress=False)
    assert m["n_source"] == 100


def test_legit_igan_zip_still_prepares(tmp_path):
    arr = write_igan_zip(tmp_path / "x.zip", n=20, size=16)
    m = P.prepare("x", spec("igan_hdf5_zip"), 16, tmp_path / "out", tmp_path, progress=False)
    train = np.load(tmp_path / "out" / "train.npy")
    assert m["n_source"] == 20 and np.array_equal(train, arr[:len(train)])


# ------------------------------------------------------------------ zip
def _zero_member(zf: zipfile.ZipFile, name: str, nbytes: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as fh:
        chunk = bytes(MiB)
        for _ in range(nbytes // MiB):
            fh.write(chunk)


def test_zip_bomb_member_is_refused_before_it_is_read(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", encode(rgb(0)))
        _zero_member(zf, "bomb.png", 100 * MiB)
    assert (tmp_path / "x.zip").stat().st_size < MiB
    msg = refused(tmp_path, spec())
    assert "member 'bomb.png' expands to 100.0 MiB, over data.max_member_bytes=67108864" in msg


def test_zip_total_expansion_is_capped(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            _zero_member(zf, f"{i:02d}.png", MiB)
    msg = refused(tmp_path, spec())
    assert "its members expand to 40.0 MiB, more than data.max_expansion=50 times the archive's" in msg


def test_truncated_zip_and_a_folder_given_as_zip(tmp_path):
    write_zip(tmp_path / "full.zip", {f"{i}.png": encode(rgb(i)) for i in range(5)})
    (tmp_path / "x.zip").write_bytes((tmp_path / "full.zip").read_bytes()[:-100])
    assert "not a readable zip archive" in refused(tmp_path, spec())
    (tmp_path / "x.zip").unlink()
    (tmp_path / "x.zip").mkdir()
    msg = refused(tmp_path, spec())
    assert "x.zip: is a folder, not a zip archive" in msg and "image_folder" in msg


def test_damaged_member_is_one_line(tmp_path):
    data = encode(rgb(1))
    write_zip(tmp_path / "x.zip", {"a.png": data})
    raw = bytearray((tmp_path / "x.zip").read_bytes())
    at = raw.index(data[20:40])  # stored: flip bytes inside the member -> CRC error on read
    raw[at:at + 8] = bytes(8)
    (tmp_path / "x.zip").write_bytes(bytes(raw))
    assert "member 'a.png' cannot be read" in refused(tmp_path, spec())


# ------------------------------------------------------------------ tar
def _tar(path, members, mode="w"):
    """``members``: (TarInfo, bytes | None)."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data):
    return tarfile.TarInfo(name), data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member,says", [
    (_file("../evil.png", b"x"), "member '../evil.png' points outside the archive"),
    (_file("/abs/evil.png", b"x"), "member '/abs/evil.png' points outside the archive"),
    (_link("link.png", "/etc/passwd"), "member 'link.png' points outside the archive"),
    (_link("up", "../../.."), "member 'up' points outside the archive"),
    (_link("hard.png", "a.png", tarfile.LNKTYPE), "image member 'hard.png' is a link"),
])
def test_tar_members_that_escape_or_link_are_refused(tmp_path, member, says):
    path = _tar(tmp_path / "x.tar", [_file("a.png", encode(rgb(0))), member], "w")
    msg = refused(tmp_path, spec("image_folder_tar", path.name))
    assert says in msg and str(path) in msg
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_tar_sparse_member_is_refused_from_its_header(tmp_path):
    """A member whose header declares 2 GiB (what a sparse member looks like): refused before
    its data is read, however little of it the file holds."""
    info = tarfile.TarInfo("huge.png")
    info.size = 2 << 30
    path = tmp_path / "x.tar"
    path.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096))
    assert "member 'huge.png' expands to 2.0 GiB, over data.max_member_bytes" in \
        refused(tmp_path, spec("image_folder_tar", path.name))


@pytest.mark.skipif(not os.path.exists("/usr/bin/tar"), reason="GNU tar makes the sparse member")
def test_gnu_sparse_tar_of_2_gib_is_refused(tmp_path):
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse.png", "wb") as fh:
        fh.truncate(2 << 30)
    subprocess.run(["/usr/bin/tar", "-cSf", str(tmp_path / "x.tar"), "-C", str(src), "sparse.png"], check=True)
    (src / "sparse.png").unlink()
    assert (tmp_path / "x.tar").stat().st_size < MiB
    assert "member 'sparse.png' expands to 2.0 GiB" in refused(tmp_path, spec("image_folder_tar", "x.tar"))


def test_tar_gz_extracts_only_image_members(tmp_path):
    members = [_file(f"img/{i}.png", encode(rgb(i))) for i in range(3)]
    members += [_file("img/notes.bin", bytes(20 * MiB)), _file("run.sh", b"rm -rf /"),
                (tarfile.TarInfo("fifo"), None)]
    members[-1][0].type = tarfile.FIFOTYPE
    path = _tar(tmp_path / "x.tar.gz", members, "w:gz")
    out = tmp_path / "extracted"
    P._extract_tar_images(path, out, P.Limits())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "img/0.png", "img/1.png", "img/2.png"]
    m = P.prepare("x", spec("image_folder_tar", path.name), 16, tmp_path / "out", tmp_path, progress=False)
    assert m["n_source"] == 3 and not list((tmp_path / "out").glob(".tmp*"))


def test_truncated_tar_and_tar_gz_and_a_folder_given_as_tar(tmp_path):
    members = [_file(f"{i}.png", encode(rgb(i, 64, 64))) for i in range(4)]
    for mode, name in (("w", "x.tar"), ("w:gz", "x.tar.gz")):
        full = _tar(tmp_path / f"full_{name}", members, mode).read_bytes()
        (tmp_path / name).write_bytes(full[:len(full) // 2])
        msg = refused(tmp_path, spec("image_folder_tar", name))
        assert "not a readable tar archive" in msg and "truncated or damaged" in msg, msg
    (tmp_path / "dir.tar").mkdir()
    assert "dir.tar: is a folder, not a tar archive" in refused(tmp_path, spec("image_folder_tar", "dir.tar"))


# ------------------------------------------------------------------ special files, folders, pixels
@pytest.mark.parametrize("fmt", ["image_folder_zip", "image_folder_tar", "igan_hdf5_zip", "image_folder"])
def test_a_device_as_data_path_is_refused_at_once(tmp_path, fmt):
    t0 = time.perf_counter()
    msg = refused(tmp_path, spec(fmt, "/dev/zero"), DatasetError)
    assert "/dev/zero is not a regular file or folder" in msg and time.perf_counter() - t0 < 5


def test_folder_files_over_the_member_cap_are_refused_unread(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(encode(rgb(0)))
    with open(tmp_path / "imgs" / "huge.png", "wb") as fh:
        fh.truncate(100 * MiB)  # sparse: nothing written
    msg = refused(tmp_path, spec("image_folder", "imgs"))
    assert "member 'huge.png' expands to 100.0 MiB, over data.max_member_bytes" in msg
    (tmp_path / "file").write_bytes(b"x")
    assert "is not a folder" in refused(tmp_path, spec("image_folder", "file"))


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares ``w`` x ``h`` RGB pixels, with a few bytes of image data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def test_huge_image_is_refused_from_its_header_before_decoding(tmp_path):
    files = {f"{i:02d}.png": encode(rgb(i)) for i in range(20)} | {"big.png": _png_header_only(12600, 12600)}
    write_zip(tmp_path / "x.zip", files)
    m = P.prepare("x", spec(), 16, tmp_path / "out", tmp_path, progress=False, max_bad_fraction=0.1)
    (skip,) = m["skipped"]
    assert skip["name"] == "big.png"
    assert skip["reason"] == "ValueError: 12600x12600 = 158760000 pixels, over data.max_image_pixels=16777216"
    item = ("big.png", _png_header_only(5000, 5000))
    assert P.process(item, "none", 16, None, {"max_pixels": 30_000_000})[1].startswith("OSError")  # decoded
    assert "max_image_pixels=1000" in P.process(item, "none", 16, None, {"max_pixels": 1000})[1]


def test_readers_refuse_a_device_themselves(tmp_path):
    """Called directly (not through prepare's source check), zip and tar readers never read a device."""
    for read in (lambda: P._read_zip_images(P.Path("/dev/zero")),
                 lambda: P._read_tar(P.Path("/dev/zero"), tmp_path / "t"),
                 lambda: P._read_hdf5_zip(P.Path("/dev/zero"), "imgs", tmp_path / "h")):
        with pytest.raises(P.PrepareError, match="/dev/zero: is not a regular file"):
            read()


def test_config_keys_set_the_caps(tmp_path):
    """data.max_member_bytes / max_expansion / max_image_pixels reach prepare from the config."""
    import subprocess
    import sys

    import yaml
    from conftest import REPO

    (tmp_path / "raw").mkdir()
    write_zip(tmp_path / "raw" / "x.zip", {f"{i}.png": encode(rgb(i)) for i in range(5)})
    cfg = {"results_dir": str(tmp_path / "results"), "data": {"data_dir": str(tmp_path), "max_member_bytes": 100},
           "datasets": {"x": {"path": "x.zip", "format": "image_folder_zip", "crop": "none"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, str(REPO / "workflow/scripts/data_prepare.py"), "--config",
                           str(tmp_path / "c.yaml"), "--dataset", "x", "--size", "16", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "data.max_member_bytes=100" in proc.stderr
    limits = P.Limits.from_config({"max_image_pixels": 100, "threads": 2})
    assert limits == P.Limits(max_image_pixels=100)
    msg = refused(tmp_path / "raw", spec(), limits=limits)
    assert "5 of 5 images unreadable" in msg and "over data.max_image_pixels=100" in msg
