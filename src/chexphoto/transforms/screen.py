"""Screen-photograph transforms: matte glare, glossy glare and moiré.

These model photographing an x-ray shown on a monitor. Pixel sizes are the reference's at a
1024 px short side, multiplied by ``scale`` (short side / 1024), recorded in the params.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from chexphoto.transforms._ops import (
    apply_lut,
    check_image,
    multiply_transmission,
    white_overlay,
    white_overlay_lut,
)
from chexphoto.transforms.registry import Transform, pixel_scale, register

# ----------------------------------------------------------------------------------- glare_matte

GLARE_SIGMA = 50.0  # px at a 1024 px short side, per level


def glare_matte_alpha_params(level: int) -> tuple[float, float]:
    """(Gaussian peak before clipping, opacity cap) in 0..255 units: (100L, 150 + 20L)."""
    return 100.0 * level, 150.0 + 20.0 * level


def _glare_matte_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    scale = pixel_scale(height, width)
    peak, cap = glare_matte_alpha_params(int(level))
    centre_x = float(rng.uniform(0, width))
    centre_y = float(rng.uniform(0, height))
    return {
        "centre": [centre_x, centre_y],
        "sigma": GLARE_SIGMA * int(level) * scale,
        "peak": peak,
        "cap": cap,
        "scale": scale,
    }


def _gaussian_1d(length: int, start: int, centre: float, sigma: float) -> np.ndarray:
    coords = np.arange(start, start + length, dtype=np.float64)
    return np.exp(-0.5 * ((coords - centre) / sigma) ** 2).astype(np.float32)


def _glare_matte_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    height, width = image.shape[:2]
    centre_x, centre_y = (float(c) for c in params["centre"])
    sigma, peak, cap = float(params["sigma"]), float(params["peak"]), float(params["cap"])
    out = image.copy()
    if peak < 1 or sigma <= 0:
        return out
    # Opacity = min(peak * g(x) * g(y), cap), truncated to 8 bits as the reference does; it is 0
    # wherever peak * g < 1, so only a box of half-width sigma * sqrt(2 ln peak) is touched.
    reach = sigma * math.sqrt(2.0 * math.log(peak))
    x0, x1 = max(0, math.ceil(centre_x - reach)), min(width, math.floor(centre_x + reach) + 1)
    y0, y1 = max(0, math.ceil(centre_y - reach)), min(height, math.floor(centre_y + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return out
    gauss_y = _gaussian_1d(y1 - y0, y0, centre_y, sigma) * np.float32(peak)
    gauss_x = _gaussian_1d(x1 - x0, x0, centre_x, sigma)
    alpha = np.multiply.outer(gauss_y, gauss_x)  # separable: one float32 product per pixel
    np.minimum(alpha, np.float32(cap), out=alpha)
    out[y0:y1, x0:x1] = white_overlay(image[y0:y1, x0:x1], alpha.astype(np.uint8))
    return out


glare_matte = register(
    Transform(
        "glare_matte",
        "photographic",
        "matte screen glare: white haze, Gaussian opacity around a random point",
        _glare_matte_sample,
        _glare_matte_apply,
        level_table=lambda level: {
            "sigma_px@1024": GLARE_SIGMA * int(level),
            "peak_opacity": f"{min(*glare_matte_alpha_params(int(level))):g}/255",
        },
    )
)

# ---------------------------------------------------------------------------------- glare_glossy

#: The reference's nine positions: (vertical, horizontal) placement of the patch.
GLOSSY_LOCATIONS = (
    "top-left",
    "centre-left",
    "bottom-left",
    "top-centre",
    "centre",
    "bottom-centre",
    "top-right",
    "centre-right",
    "bottom-right",
)


def _glossy_opacity_range(level: int) -> tuple[float, float]:
    return 150.0 + 20.0 * level, 170.0 + 20.0 * level


def _glare_glossy_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    level = int(level)
    box_w = 0.1 * level + float(rng.uniform(0.0, 0.05))
    box_h = 0.1 * level + float(rng.uniform(0.0, 0.05))
    location = GLOSSY_LOCATIONS[int(rng.integers(0, len(GLOSSY_LOCATIONS)))]
    centre = [float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))]
    opacity = int(150 + 20 * level + float(rng.uniform(0.0, 20.0)))  # 8-bit alpha, truncated
    return {"location": location, "box": [box_w, box_h], "centre": centre, "opacity": opacity}


def _span(placement: str, size: int, box: float, centre: float) -> tuple[int, int]:
    """Pixel range of the patch along one axis (the reference's int() roundings)."""
    extent = box * size
    if placement == "start":
        return 0, min(size, int(extent))
    if placement == "end":
        return max(0, size - int(extent)), size
    return max(0, int(centre * size - extent / 2)), min(size, int(centre * size + extent / 2))


def glossy_rectangle(params: dict, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the glossy patch for an image of this size."""
    location = params["location"]
    if location not in GLOSSY_LOCATIONS:
        raise ValueError(f"unknown glare_glossy location {location!r}")
    vertical = "start" if location.startswith("top") else "end" if location.startswith("bottom") else "mid"
    horizontal = "start" if location.endswith("left") else "end" if location.endswith("right") else "mid"
    box_w, box_h = (float(b) for b in params["box"])
    centre_x, centre_y = (float(c) for c in params["centre"])
    y0, y1 = _span(vertical, height, box_h, centre_y)
    x0, x1 = _span(horizontal, width, box_w, centre_x)
    return y0, y1, x0, x1


def _glare_glossy_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    y0, y1, x0, x1 = glossy_rectangle(params, *image.shape[:2])
    out = image.copy()
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = apply_lut(image[y0:y1, x0:x1], white_overlay_lut(int(params["opacity"])))
    return out


glare_glossy = register(
    Transform(
        "glare_glossy",
        "screen",
        "glossy screen glare: hard-edged white rectangle at one of 9 positions",
        _glare_glossy_sample,
        _glare_glossy_apply,
        level_table=lambda level: {
            "opacity": "{:g}-{:g}/255".format(*_glossy_opacity_range(int(level))),
            "size": f"{0.1 * int(level):.1f}-{0.1 * int(level) + 0.05:.2f} of width and height",
        },
    )
)

# ----------------------------------------------------------------------------------------- moire

#: (gap between lines in px at a 1024 px short side and 2x upsampling, line opacity) per level.
MOIRE_LEVELS = {1: (20.0, 0.05), 2: (4.5, 0.15), 3: (2.5, 0.35), 4: (1.0, 0.5)}
MOIRE_THICKNESS = 1.0
MOIRE_SPREAD = 0.5
MOIRE_UPSAMPLE = 2
MOIRE_MAX_OFFSET = 100.0  # px of the 2x canvas at a 1024 px short side
#: cv2's nearest-neighbour warp stores source coordinates as int16.
_MAX_PROFILE = 30000


def _moire_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    scale = pixel_scale(height, width)
    gap, opacity = MOIRE_LEVELS[int(level)]
    angles = [90.0, 90.0 + float(rng.normal(0.0, 1.0))]
    offsets = [[float(rng.uniform(0, MOIRE_MAX_OFFSET)) * scale for _ in range(2)] for _ in angles]
    return {
        "gap": gap * scale,
        "thickness": MOIRE_THICKNESS * scale,
        "alpha": int(opacity * 255),
        "spread": MOIRE_SPREAD,
        "upsample": MOIRE_UPSAMPLE,
        "angles": angles,
        "offsets": offsets,
        "scale": scale,
    }


def _line_set_homography(
    height: int, width: int, upsample: int, spread: float, angle: float, offset: tuple[float, float]
) -> np.ndarray:
    """3x3 map from an output pixel (OpenCV indices, 1x) to the line mask's (u, v), as the reference.

    The reference draws horizontal lines on a square mask twice the upsampled image's long side,
    squeezes its left edge to ``spread`` of its height (perspective, so lines converge), rotates it
    by ``angle`` degrees about its centre, and crops the upsampled image's size at the centre plus
    ``offset``. All in PIL's continuous coordinates; composed here into one homography.
    """
    up_w, up_h = width * upsample, height * upsample
    side = 2 * max(up_w, up_h)
    corners = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
    squeezed = np.float32(
        [[0, side * (0.5 - spread / 2)], [side, 0], [side, side], [0, side * (0.5 + spread / 2)]]
    )
    perspective = cv2.getPerspectiveTransform(corners, squeezed).astype(np.float64)
    a = math.radians(angle)
    c = side / 2.0
    cos, sin = math.cos(a), math.sin(a)
    rotate = np.array(
        [[cos, -sin, c - cos * c + sin * c], [sin, cos, c - sin * c - cos * c], [0.0, 0.0, 1.0]]
    )
    left, upper = (side - up_w) // 2, (side - up_h) // 2
    crop = np.array([[1.0, 0.0, left + offset[0]], [0.0, 1.0, upper + offset[1]], [0.0, 0.0, 1.0]])
    # OpenCV pixel index x at 1x has its centre at x + 0.5, i.e. at upsample * (x + 0.5) on the canvas
    to_canvas = np.array([[upsample, 0.0, upsample / 2.0], [0.0, upsample, upsample / 2.0], [0.0, 0.0, 1.0]])
    return perspective @ rotate @ crop @ to_canvas


def _project_v(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    w = matrix[2, 0] * xs + matrix[2, 1] * ys + matrix[2, 2]
    return (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]) / w


def moire_sub_sample_hits(params: dict, height: int, width: int, line_set: int) -> np.ndarray:
    """Which of each output pixel's 2x2 canvas sub-samples fall on a line of one set, as 4 bits.

    Bit ``k + 4 * line_set`` of the result is set when sub-sample ``k`` (row-major in the 2x2
    block) of the 2x canvas lies on a line: exactly what the reference's nearest-neighbour PIL
    transforms draw on its 2x canvas. Each output pixel looks the bits up in a 1-D profile along the line-normal
    coordinate ``v`` (the sub-samples' offsets in ``v`` are those at the image centre), with one
    nearest-neighbour ``cv2.warpPerspective``, so the cost is one pass at 1x, never the 2x canvas.
    """
    upsample = int(params["upsample"])
    if upsample != 2:
        raise ValueError(f"moire renders on a 2x canvas, got upsample={upsample}")
    matrix = _line_set_homography(
        height,
        width,
        upsample,
        float(params["spread"]),
        float(params["angles"][line_set]),
        tuple(float(o) for o in params["offsets"][line_set]),
    )
    period = float(params["thickness"]) + float(params["gap"])
    thickness = float(params["thickness"])
    if not (thickness > 0 and period > thickness):
        raise ValueError(f"moire needs 0 < thickness < thickness + gap, got {thickness} and {period}")
    # the 2x2 sub-sample offsets in v (from the derivatives at the centre, one canvas px apart)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    step = 1.0 / upsample
    v_centre = _project_v(matrix, np.array([cx]), np.array([cy]))[0]
    dv_dx = (_project_v(matrix, np.array([cx + step]), np.array([cy]))[0] - v_centre) / step
    dv_dy = (_project_v(matrix, np.array([cx]), np.array([cy + step]))[0] - v_centre) / step
    subs = np.arange(upsample, dtype=np.float64) - (upsample - 1) / 2.0  # -0.5, +0.5 canvas px
    sub_offsets = ((subs[None, :] * dv_dx + subs[:, None] * dv_dy) / upsample).ravel()  # row-major
    # v over the image (projective: extremes at the corners), with room for the sub-samples
    corner_v = _project_v(
        matrix, np.array([-1.0, width, width, -1.0]), np.array([-1.0, -1.0, height, height])
    )
    margin = float(np.abs(sub_offsets).max()) + 2.0
    v_lo, v_hi = float(corner_v.min()) - margin, float(corner_v.max()) + margin
    # ~16 profile samples per line thickness and 32 per output pixel are plenty
    per_pixel = max(abs(dv_dx), abs(dv_dy))
    resolution = min(_MAX_PROFILE / (v_hi - v_lo), 16.0 / min(thickness, period), 32.0 / per_pixel)
    length = int(math.ceil((v_hi - v_lo) * resolution)) + 1
    # Line mask once on a grid extended by the sub-sample shifts (whole samples), then one bit per
    # shifted copy: one floor per sample instead of one per sample and sub-sample.
    shifts = np.rint(sub_offsets * resolution).astype(np.int64)
    first = int(shifts.min())
    extended = length + int(shifts.max()) - first
    phase = (v_lo + (first + np.arange(extended, dtype=np.float64)) / resolution) / period
    on_line = ((phase - np.floor(phase)) < thickness / period).astype(np.uint8)
    hits = np.zeros(length, dtype=np.uint8)
    for bit, shift in enumerate(shifts - first):
        hits |= on_line[shift : shift + length] << np.uint8(bit + 4 * line_set)
    # dst (x, y) -> src (0, (v - v_lo) * resolution): a homography whose x row is zero
    lookup = np.zeros((3, 3), dtype=np.float64)
    lookup[1] = (matrix[1] - v_lo * matrix[2]) * resolution
    lookup[2] = matrix[2]
    return cv2.warpPerspective(
        hits.reshape(-1, 1),
        lookup,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def moire_transmission_lut(alpha: int) -> np.ndarray:
    """Transmission (255 = clear) for each 8-bit code ``hits_set1 | hits_set2 << 4``.

    Each of the 4 sub-samples is darkened once per line set covering it (black composited at
    opacity ``alpha``/255, as the reference's two ``alpha_composite`` calls), then the 4 are
    averaged: the 2x2 area average of the 2x canvas, products taken before averaging so the beat
    between the two sets is rendered exactly.
    """
    codes = np.arange(256)
    keep = (255 - int(alpha)) / 255.0
    total = np.zeros(256, dtype=np.float64)
    for bit in range(4):
        layers = ((codes >> bit) & 1) + ((codes >> (bit + 4)) & 1)
        total += 255.0 * keep**layers
    return np.rint(total / 4).astype(np.uint8)


def _moire_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    height, width = image.shape[:2]
    if len(params["angles"]) != 2 or len(params["offsets"]) != 2:
        raise ValueError("moire has exactly two line sets")
    codes = moire_sub_sample_hits(params, height, width, 0)  # first set's hits in the low nibble,
    cv2.bitwise_or(codes, moire_sub_sample_hits(params, height, width, 1), dst=codes)  # second's high
    cv2.LUT(codes, moire_transmission_lut(int(params["alpha"])), dst=codes)  # in place: no new buffers
    return multiply_transmission(image, codes)


moire = register(
    Transform(
        "moire",
        "photographic",
        "screen moiré: two sets of converging dark lines, drawn at 2x and averaged down so they alias",
        _moire_sample,
        _moire_apply,
        level_table=lambda level: {
            "gap_px@1024": MOIRE_LEVELS[int(level)][0],
            "opacity": MOIRE_LEVELS[int(level)][1],
        },
    )
)
