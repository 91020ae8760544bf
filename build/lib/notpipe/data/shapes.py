"""Synthetic image pair with known attributes: ``shapes_circles`` -> ``shapes_squares``.

Each image is one filled shape (a disc or an axis-aligned square) of random
position, size and colour on a white background, drawn with anti-aliased edges.
The two domains are drawn independently (unpaired) from the same attribute
distribution, so under the quadratic cost the optimal map turns a disc into the
square of the same centre, size and colour: a trained map's attribute errors
can be measured (:func:`measure`) and compared with the identity map and with a
random target image.

Attributes are stored in a CSV beside the arrays, in pixel units of the stored
size: ``cx, cy`` (centre), ``r`` (disc radius / half side of the square),
``red, green, blue`` (0-255).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SHAPES = ("circle", "square")
BACKGROUND = 255
#: attribute ranges as fractions of the image side
R_RANGE = (0.12, 0.28)


def draw_attributes(n: int, size: int, seed: int) -> pd.DataFrame:
    """Random centres, sizes (pixels) and saturated colours of ``n`` shapes."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(*R_RANGE, n) * size
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    # saturated colours away from the white background: one channel low
    rgb = rng.integers(0, 256, (n, 3))
    rgb[np.arange(n), rng.integers(0, 3, n)] = rng.integers(0, 96, n)
    return pd.DataFrame({"cx": cx, "cy": cy, "r": r, "red": rgb[:, 0], "green": rgb[:, 1],
                         "blue": rgb[:, 2]})


def render(shape: str, attrs: pd.DataFrame, size: int) -> np.ndarray:
    """Draw the shapes of ``attrs`` as uint8 ``(n, size, size, 3)`` images."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    coords = np.arange(size, dtype=np.float32) + 0.5
    out = np.empty((len(attrs), size, size, 3), np.uint8)
    a = attrs[["cx", "cy", "r"]].to_numpy(np.float32)
    rgb = attrs[["red", "green", "blue"]].to_numpy(np.float32)
    for i in range(len(attrs)):
        dx = coords[None, :] - a[i, 0]
        dy = coords[:, None] - a[i, 1]
        if shape == "circle":
            dist = np.sqrt(dx * dx + dy * dy)
        else:
            dist = np.maximum(np.abs(dx), np.abs(dy))
        cover = np.clip(a[i, 2] - dist + 0.5, 0.0, 1.0)[..., None]  # 1-px anti-aliased edge
        out[i] = np.rint(BACKGROUND + cover * (rgb[i] - BACKGROUND))
    return out


def generate(shape: str, n: int, size: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` images of one domain and their attribute table (deterministic in ``seed``)."""
    attrs = draw_attributes(n, size, seed)
    return render(shape, attrs, size), attrs


def measure(images: np.ndarray, threshold: float = 40.0) -> pd.DataFrame:
    """Measure shape attributes from uint8 NHWC images (or float in [-1, 1] NCHW).

    Foreground = pixels farther than ``threshold`` (0-255 units, max channel
    difference) from the white background. Returns per image ``cx, cy`` (centroid),
    ``r`` (half the side of a square of equal area), ``red, green, blue`` (mean
    foreground colour), ``fill`` (area / bounding-box area: π/4 ≈ 0.785 for a
    disc, 1 for a square) and ``area``.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:  # float NCHW in [-1, 1]
        x = np.clip((x.transpose(0, 2, 3, 1) + 1) * 127.5, 0, 255)
    x = x.astype(np.float32)
    n, h, w, _ = x.shape
    fg = (BACKGROUND - x).max(-1) > threshold
    area = fg.sum((1, 2)).astype(np.float64)
    safe = np.maximum(area, 1)
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    cx = (fg.sum(1) * xs).sum(1) / safe
    cy = (fg.sum(2) * ys).sum(1) / safe
    colour = (x * fg[..., None]).sum((1, 2)) / safe[:, None]
    rows, cols = fg.any(2), fg.any(1)
    bbox = rows.sum(1) * cols.sum(1)
    out = pd.DataFrame({"cx": cx, "cy": cy, "r": np.sqrt(area) / 2, "red": colour[:, 0],
                        "green": colour[:, 1], "blue": colour[:, 2],
                        "fill": area / np.maximum(bbox, 1), "area": area})
    out.loc[area == 0, ["cx", "cy", "red", "green", "blue", "fill"]] = np.nan
    return out


def attribute_errors(inputs: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """Attribute preservation of a map: mean errors between measured attributes.

    ``centroid_px`` (Euclidean centroid shift), ``size_px`` (|Δr|), ``colour``
    (Euclidean RGB distance, 0-255 units), ``fill_out`` (mean fill of the outputs:
    ≈ 1 when outputs are squares, ≈ 0.785 for discs) and ``empty_out`` (fraction of
    outputs without a foreground).
    """
    a, b = measure(inputs), measure(outputs)
    rgb = ["red", "green", "blue"]
    return {
        "centroid_px": float(np.nanmean(np.hypot(a.cx - b.cx, a.cy - b.cy))),
        "size_px": float(np.nanmean(np.abs(a.r - b.r))),
        "colour": float(np.nanmean(np.linalg.norm(a[rgb].to_numpy() - b[rgb].to_numpy(), axis=1))),
        "fill_out": float(np.nanmean(b.fill)),
        "empty_out": float((b.area == 0).mean()),
    }
