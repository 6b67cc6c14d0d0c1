"""Optical transforms: Gaussian blur (out of focus) and horizontal motion blur (camera shake).

Pixel sizes are the reference's at a 1024 px short side, multiplied by ``scale`` (short side /
1024) so a level looks the same at any resolution.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from chexphoto.transforms._ops import check_image
from chexphoto.transforms.registry import Transform, pixel_scale, register

# ------------------------------------------------------------------------------------------ blur

#: PIL GaussianBlur radius (= the Gaussian's sigma) per level, at a 1024 px short side.
BLUR_RADIUS = {1: 1.5, 2: 3.0, 3: 6.0, 4: 10.0}

#: Below this sigma a true Gaussian kernel is cheap; above it, three box passes (as PIL does).
_EXACT_GAUSSIAN_MAX_SIGMA = 4.0


def box_widths_for_gaussian(sigma: float, passes: int = 3) -> list[int]:
    """Odd box widths whose successive application has the variance of a Gaussian of ``sigma``.

    The classic "boxes for Gauss" construction (two neighbouring odd widths, mixed so the summed
    variance ``sum((w*w - 1) / 12)`` is as close as possible to ``sigma**2``); PIL's GaussianBlur is
    also three box passes.
    """
    ideal = math.sqrt(12.0 * sigma * sigma / passes + 1.0)
    lower = int(math.floor(ideal))
    if lower % 2 == 0:
        lower -= 1
    lower = max(lower, 1)
    upper = lower + 2
    m = round(
        (12.0 * sigma * sigma - passes * lower * lower - 4 * passes * lower - 3 * passes) / (-4 * lower - 4)
    )
    m = min(max(m, 0), passes)
    return [lower] * m + [upper] * (passes - m)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` px (PIL GaussianBlur ``radius`` semantics)."""
    image = check_image(image)
    if sigma <= 0:
        return image.copy()
    if sigma <= _EXACT_GAUSSIAN_MAX_SIGMA:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    out = image
    for width in box_widths_for_gaussian(sigma):  # O(1) per pixel whatever the radius
        out = cv2.blur(out, (width, width), borderType=cv2.BORDER_REFLECT_101)
    return out


def _blur_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    scale = pixel_scale(height, width)
    return {"sigma": BLUR_RADIUS[int(level)] * scale, "scale": scale}


def _blur_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return gaussian_blur(image, float(params["sigma"]))


blur = register(
    Transform(
        "blur",
        "optical",
        "out of focus: Gaussian blur (PIL GaussianBlur radius = sigma)",
        _blur_sample,
        _blur_apply,
        level_table=lambda level: {"radius_px@1024": BLUR_RADIUS[int(level)]},
    )
)

# ---------------------------------------------------------------------------------------- motion

#: Length of the horizontal averaging kernel per level, at a 1024 px short side.
MOTION_LENGTH = {1: 2, 2: 10, 3: 25, 4: 45}
#: A 1-tap kernel would be the identity; level 1 on a small image still blurs by 2 px.
MIN_MOTION_LENGTH = 2


def _motion_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    scale = pixel_scale(height, width)
    length = max(MIN_MOTION_LENGTH, round(MOTION_LENGTH[int(level)] * scale))
    return {"length": int(length), "scale": scale}


def motion_blur(image: np.ndarray, length: int) -> np.ndarray:
    """Average over a centred horizontal segment ``length`` px long (O(1) per pixel).

    Odd lengths are a plain centred box. An even length has no centre pixel: the reference's
    kernel then sits half a pixel (and, in ``cv2.filter2D``'s anchoring, one row) off centre,
    shifting the image; here it is the centred segment ``[1/2, 1, ..., 1, 1/2] / length`` instead,
    i.e. the mean of the boxes of ``length - 1`` and ``length + 1`` taps, weighted by their sums.
    """
    image = check_image(image)
    length = int(length)
    if length < 1:
        raise ValueError(f"motion kernel length must be >= 1, got {length}")
    border = cv2.BORDER_REFLECT_101
    if length % 2 == 1:
        return cv2.blur(image, (length, 1), borderType=border)
    # unnormalised sums, combined and rounded once; 16-bit while 2 * length * 255 fits (fastest)
    depth = cv2.CV_16U if 2 * length * 255 <= np.iinfo(np.uint16).max else cv2.CV_32S
    wide = cv2.boxFilter(image, depth, (length + 1, 1), normalize=False, borderType=border)
    narrow = cv2.boxFilter(image, depth, (length - 1, 1), normalize=False, borderType=border)
    total = cv2.add(wide, narrow)
    return cv2.convertScaleAbs(total, alpha=1.0 / (2 * length))


def _motion_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return motion_blur(image, int(params["length"]))


motion = register(
    Transform(
        "motion",
        "optical",
        "camera shake: horizontal line-kernel blur",
        _motion_sample,
        _motion_apply,
        level_table=lambda level: {"kernel_px@1024": MOTION_LENGTH[int(level)]},
    )
)
