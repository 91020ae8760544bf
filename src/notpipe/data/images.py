"""Decode, crop and resize one image of a data set (the work of prepare's worker processes)."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from notpipe.data.augment import RandomResizedCrop, center_view, shorter_side
from notpipe.data.datasets import (
    RESAMPLE,
)

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}

def to_rgb(img: Image.Image) -> Image.Image:
    """RGB image; transparent pixels are composited on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


_PIL_FILTER = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resize_square(img: Image.Image, size: int, resample: str = "bilinear") -> Image.Image:
    """``img`` resized to ``size`` x ``size``.

    ``bilinear`` / ``bicubic``: PIL's filters (antialiased when shrinking), as torchvision's
    ``Resize`` on PIL images. ``interpolate``: the authors' iGAN loader, ``F.interpolate`` bilinear
    (no antialiasing, ``align_corners=False``) of ``2 * x / 255 - 1`` in float32, rounded back to uint8.
    """
    if resample == "interpolate":
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.array(img, dtype=np.uint8)).to(torch.float32).permute(2, 0, 1)[None]
        y = F.interpolate(2 * (x / 255.) - 1, size=(size, size), mode="bilinear", align_corners=False)
        u = ((y[0].permute(1, 2, 0) + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return Image.fromarray(u.numpy())
    if resample not in _PIL_FILTER:
        raise ValueError(f"unknown resample {resample!r}; allowed: {', '.join(RESAMPLE)}")
    return img.resize((size, size), _PIL_FILTER[resample])


def resize_rule(spec: dict) -> dict:
    """How a data set is resized: ``resample`` filter, ``stored_size`` and the ``augment`` transform."""
    aug = spec.get("augment")
    return {"resample": spec.get("resample") or "bilinear", "stored_size": spec.get("stored_size"),
            "augment": RandomResizedCrop.from_spec(aug) if aug else None}


def crop_resize(img: Image.Image, crop, size: int, pre_resize: int | None = None, resample: str = "bilinear",
                stored_size: int | None = None) -> np.ndarray:
    """Apply ``pre_resize`` (square), the crop rule and the final resize (filter ``resample``); uint8 HWC.

    ``stored_size``: the size of the authors' preprocessed files; at another ``size`` the image
    is made at ``stored_size`` first, rounded to uint8, then resized with PIL bilinear (their
    loader's ``Resize((size, size))``).
    """
    if pre_resize:
        img = resize_square(img, pre_resize, resample)
    w, h = img.size
    if crop == "center":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif isinstance(crop, (list, tuple)):
        top, left, ch, cw = (int(v) for v in crop)
        if top < 0 or left < 0 or top + ch > h or left + cw > w:
            raise ValueError(f"crop box {list(crop)} outside the {w}x{h} image")
        img = img.crop((left, top, left + cw, top + ch))
    elif crop != "none":
        raise ValueError(f"unknown crop {crop!r}; allowed: center, none, [top, left, height, width]")
    if stored_size and size != stored_size and img.size != (stored_size, stored_size):
        img = resize_square(img, stored_size, resample)
    if stored_size and size != stored_size:
        resample = "bilinear"
    if img.size != (size, size):
        img = resize_square(img, size, resample)
    return np.asarray(img, dtype=np.uint8)


def process(item: tuple, crop, size: int, pre_resize: int | None,
            rule: dict | None = None) -> tuple[np.ndarray | tuple | None, str | None]:
    """Decode + crop + resize one ``(key, bytes | array)``; ``(None, reason)`` if unusable.

    ``rule``: :func:`resize_rule`; with an augmentation the result is the pair ``(fixed view,
    image at the augmentation's shorter side)``.
    """
    _, payload = item
    rule = rule or {}
    aug = rule.get("augment")
    try:
        if isinstance(payload, np.ndarray):
            arr = payload if payload.ndim == 3 else payload[..., None]
            if _is_ready(arr, size) and crop == "none" and not pre_resize and aug is None:
                return np.ascontiguousarray(arr, dtype=np.uint8), None
            img = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
        else:
            img = Image.open(io.BytesIO(payload))
            _check_pixels(img, rule.get("max_pixels", Limits.max_image_pixels))  # header read, not decoded
            img.load()  # truncated files raise here
        if aug is not None:
            full = np.asarray(shorter_side(to_rgb(img), aug.resize), dtype=np.uint8)
            return (center_view(full, size), full), None
        return crop_resize(to_rgb(img), crop, size, pre_resize, rule.get("resample", "bilinear"),
                           rule.get("stored_size")), None
    except Exception as err:  # noqa: BLE001 - any decoding problem means: skip and count
        # no object addresses in the reason: manifests must be byte-identical across runs
        return None, re.sub(r" at 0x[0-9a-f]+", "", f"{type(err).__name__}: {err}")


def _is_ready(payload, size: int) -> bool:
    return isinstance(payload, np.ndarray) and payload.shape == (size, size, 3)


def _work(args):
    return process(*args)


# ----------------------------------------------------------------- readers

def _check_pixels(img: Image.Image, max_pixels: int) -> None:
    """Refuse an opened (not yet decoded) image larger than ``max_pixels``: PIL has read its header only."""
    w, h = img.size
    if w * h > max_pixels:
        raise ValueError(f"{w}x{h} = {w * h} pixels, over data.max_image_pixels={max_pixels}")

@dataclass(frozen=True)
class Limits:
    """What one source may expand to (config keys ``data.max_member_bytes``,
    ``data.max_expansion``, ``data.max_image_pixels``), checked before anything is
    read or extracted; :meth:`from_config` takes them from a validated ``data`` block."""

    max_member_bytes: int = 64 << 20   # one image file (in an archive or a folder)
    max_expansion: float = 50.0        # all members read from an archive / the archive's size
    max_image_pixels: int = 1 << 24    # width x height of one image (PIL's own cap: 89 M)

    @classmethod
    def from_config(cls, data: dict) -> "Limits":
        return cls(**{k: data[k] for k in ("max_member_bytes", "max_expansion", "max_image_pixels") if k in data})
