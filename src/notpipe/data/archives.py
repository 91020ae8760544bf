"""Reading images out of zip and tar archives and folders, safely: member and expansion caps
(:class:`Limits`), only image members, no escaping names or links, damaged archives as one line."""

from __future__ import annotations

import logging
import math
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from notpipe.data.images import IMAGE_EXTS, Limits

log = logging.getLogger(__name__)

class PrepareError(RuntimeError):
    """Too many bad images, or an unreadable source."""

    one_line = True  # stage.entry prints it without a traceback on the command line


# ----------------------------------------------------------------- per image


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS and "__MACOSX" not in name \
        and not Path(name).name.startswith(".")



def _check_members(path: Path, members: list[tuple[str, int]], limits: Limits) -> None:
    """Declared member sizes against ``limits`` (one line naming the member or the total)."""
    for name, size in members:
        if size > limits.max_member_bytes:
            raise PrepareError(f"{path}: member {name!r} expands to {_size(size)}, over data.max_member_bytes="
                               f"{limits.max_member_bytes}; refused (raise it only for an archive you trust)")
    total, cap = sum(s for _, s in members), limits.max_expansion * max(path.stat().st_size, 1)
    if total > cap:
        raise PrepareError(f"{path}: its members expand to {_size(total)}, more than data.max_expansion="
                           f"{limits.max_expansion:g} times the archive's {_size(path.stat().st_size)}; refused "
                           f"(raise it only for an archive you trust)")


def _open_zip(path: Path) -> zipfile.ZipFile:
    if path.is_dir():
        raise PrepareError(f"{path}: is a folder, not a zip archive; give the .zip file, or set the data "
                           f"set's format to image_folder")
    if not path.is_file():  # a device or pipe: zipfile would read it without end
        raise PrepareError(f"{path}: is not a regular file; give the .zip file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise PrepareError(f"{path}: not a readable zip archive ({err}); it is truncated or damaged: "
                           f"download or copy it again") from None


def _read_member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return zf.read(name)  # never more than the declared size (checked), CRC-checked at the end
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as err:
        raise PrepareError(f"{path}: member {name!r} cannot be read ({err}); the archive is damaged: "
                           f"download or copy it again") from None


def _read_zip_images(path: Path, keep=None, limits: Limits = Limits()) -> tuple[int, Iterator]:
    """Image members of a zip, by sorted name; sizes checked before any is read."""
    zf = _open_zip(path)
    names = sorted(n for n in zf.namelist() if _is_image(n) and (keep is None or Path(n).name in keep))
    try:
        _check_members(path, [(n, zf.getinfo(n).file_size) for n in names], limits)
    except PrepareError:
        zf.close()
        raise

    def gen():
        with zf:
            for n in names:
                yield n, _read_member(zf, path, n)
    return len(names), gen()


def _read_folder(path: Path, limits: Limits = Limits()) -> tuple[int, Iterator]:
    """Image files under a folder (regular files only, by sorted relative path)."""
    if not path.is_dir():
        raise PrepareError(f"{path}: is not a folder; give the folder of images, or set the data set's "
                           f"format to the archive's (image_folder_zip, image_folder_tar)")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(str(p.relative_to(path))))
    _check_members(path, [(str(p.relative_to(path)), p.stat().st_size) for p in files],
                   Limits(limits.max_member_bytes, math.inf, limits.max_image_pixels))
    return len(files), ((str(p.relative_to(path)), p.read_bytes()) for p in files)


def _escapes(name: str) -> bool:
    """A member name that leaves the folder it is extracted to (absolute, or with ``..``)."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or ".." in PurePosixPath(norm).parts


def _extract_tar_images(path: Path, out: Path, limits: Limits) -> None:
    """Extract only the regular image members of a tar (any compression) to ``out``, checking each
    member's name and size before it is written; a member that leaves the archive's folder
    (absolute, ``..``), an image that is a link, and a truncated or damaged archive are refused."""
    if path.is_dir():
        raise PrepareError(f"{path}: is a folder, not a tar archive; give the .tar/.tar.gz file, or set the "
                           f"data set's format to image_folder")
    if not path.is_file():  # a device or pipe: tarfile would read it without end
        raise PrepareError(f"{path}: is not a regular file; give the .tar/.tar.gz file")
    cap, total = limits.max_expansion * max(path.stat().st_size, 1), 0
    try:
        with tarfile.open(path) as tf:
            for m in tf:  # streamed: a .tar.gz is read once, front to back
                if _escapes(m.name) or ((m.issym() or m.islnk()) and _escapes(m.linkname)):
                    raise PrepareError(f"{path}: member {m.name!r} points outside the archive; refused: "
                                       f"rebuild the archive with relative member names")
                if not _is_image(m.name):
                    continue
                if m.issym() or m.islnk():
                    raise PrepareError(f"{path}: image member {m.name!r} is a link; refused: rebuild the "
                                       f"archive without links (tar --dereference)")
                if not m.isfile():
                    continue
                total += m.size
                _check_members(path, [(m.name, m.size)], Limits(limits.max_member_bytes, math.inf))
                if total > cap:
                    _check_members(path, [(m.name, total)], Limits(math.inf, limits.max_expansion))
                dest = out / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as err:
        raise PrepareError(f"{path}: not a readable tar archive ({err or type(err).__name__}); it is truncated "
                           f"or damaged: download or copy it again") from None
    except OSError as err:
        if err.errno is not None:  # writing the extracted file (disk full, permissions)
            raise PrepareError(f"{path}: extracting to {out} failed ({err})") from None
        raise PrepareError(f"{path}: not a readable tar archive ({err}); it is truncated or damaged: "
                           f"download or copy it again") from None


def _read_tar(path: Path, tmp: Path, limits: Limits = Limits()) -> tuple[int, Iterator]:
    out = tmp / "tar"
    try:
        _extract_tar_images(path, out, limits)
    except PrepareError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return _read_folder(out, limits)
