"""The transforms x levels contact sheet (the paper's Table 2 figure): ``chexphoto preview``.

Rows are transforms, columns the original and levels 1-4. Each transform is applied at a working
size (short side 1024 px by default, the size the reference's pixel values are tuned for; the
params scale with the image, so a level looks the same at any size) and each result is fitted
into a tile of about 256 px.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from chexphoto.imageio import encode_image
from chexphoto.synthesis.render import render_image
from chexphoto.transforms import LEVELS, names

BACKGROUND = 255
TILE_BACKGROUND = 40
LABEL_WIDTH = 172
HEADER_HEIGHT = 36
GAP = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _to_rgb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img


def fit_tile(img: np.ndarray, tile: int) -> np.ndarray:
    """``img`` scaled to fit a ``tile`` x ``tile`` square (aspect kept), centred on dark grey."""
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    small = _to_rgb(cv2.resize(img, size, interpolation=interp))
    out = np.full((tile, tile, 3), TILE_BACKGROUND, np.uint8)
    y, x = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[y:y + size[1], x:x + size[0]] = small
    return out


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.65) -> None:
    cv2.putText(canvas, text, (x, y), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def working_copy(image: np.ndarray, work_size: int | None) -> np.ndarray:
    """Downscale so the short side is ``work_size`` (never upscales)."""
    h, w = image.shape[:2]
    if not work_size or min(h, w) <= work_size:
        return image
    scale = work_size / min(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def contact_sheet(
    image: np.ndarray,
    *,
    transforms: Sequence[str] | None = None,
    seed: int = 0,
    tile: int = 256,
    work_size: int | None = 1024,
    levels: Sequence[int] = LEVELS,
) -> np.ndarray:
    """An RGB contact sheet: one row per transform, columns original + each level.

    Each cell's random draw is ``derive_rng(seed, [[name, level]], "preview")``, so a sheet is
    reproducible.
    """
    transforms = [t for t in (transforms or names()) if t != "identity"]
    if not transforms:
        raise ValueError("no transforms to show")
    work = working_copy(image, work_size)
    original = fit_tile(work, tile)
    cols = 1 + len(levels)
    width = LABEL_WIDTH + cols * (tile + GAP) + GAP
    height = HEADER_HEIGHT + len(transforms) * (tile + GAP) + GAP
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    headers = ["original"] + [f"level {lv}" for lv in levels]
    for c, text in enumerate(headers):
        _put_text(canvas, text, LABEL_WIDTH + GAP + c * (tile + GAP) + 6, HEADER_HEIGHT - 12)
    for r, name in enumerate(transforms):
        top = HEADER_HEIGHT + r * (tile + GAP)
        _put_text(canvas, name, 8, top + tile // 2 + 6)
        cells = [original] + [fit_tile(render_image(work, seed, [(name, lv)], "preview")[0], tile)
                              for lv in levels]
        for c, cell in enumerate(cells):
            left = LABEL_WIDTH + GAP + c * (tile + GAP)
            canvas[top:top + tile, left:left + tile] = cell
    return canvas


def write_contact_sheet(path: str | os.PathLike, image: np.ndarray, **kwargs) -> np.ndarray:
    """Render the sheet and write it atomically as PNG or JPEG (by extension)."""
    from chexphoto.fsutil import atomic_write_bytes

    sheet = contact_sheet(image, **kwargs)
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    atomic_write_bytes(path, encode_image(sheet, fmt))
    return sheet
