"""Low-level helpers shared by the transforms: LUTs, PIL-exact blending, white/dark compositing.

Everything here works on ``uint8`` grey (H, W) or RGB (H, W, 3) images, returns new arrays (inputs
are never modified) and avoids full-size float64 temporaries: the transforms run on 2-4 MP x-rays
at one thread and must stay near the cost of a JPEG decode+encode.
"""

from __future__ import annotations

import cv2
import numpy as np

_LEVELS_256 = np.arange(256, dtype=np.float32)


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a transform input: ``uint8`` and 2-D grey or (H, W, 3) RGB."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"empty image of shape {image.shape}")
        return np.ascontiguousarray(image)  # a no-op for the usual contiguous arrays
    raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {image.shape}")


def apply_lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map every pixel (every channel alike) through a 256-entry ``uint8`` table."""
    lut = np.ascontiguousarray(lut, dtype=np.uint8).reshape(256)
    return cv2.LUT(check_image(image), lut)


def pil_blend_lut(base: float, factor: float) -> np.ndarray:
    """256-entry table of PIL's ``Image.blend(degenerate, image, factor)`` for a constant degenerate.

    PIL (``libImaging/Blend.c``) evaluates ``in1 + alpha * (in2 - in1)`` in C ``float`` and converts
    to 8 bits by truncation, clipping to 0..255 when extrapolating (factor outside 0..1). Doing the
    same arithmetic in float32 over the 256 input levels reproduces ``ImageEnhance`` byte for byte.
    """
    alpha = np.float32(factor)
    base32 = np.float32(int(base))
    value = base32 + alpha * (_LEVELS_256 - base32)  # float32 throughout, as in C
    value = np.clip(value, 0.0, 255.0)  # only reached when extrapolating; then PIL clips
    return np.trunc(value).astype(np.uint8)


def pil_grey_mean(image: np.ndarray) -> int:
    """``int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)``: the grey level PIL's Contrast uses."""
    image = check_image(image)
    if image.ndim == 3:
        # PIL's RGB->L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, in integers
        rgb = image.reshape(-1, 3)
        grey = rgb[:, 0] * np.uint32(19595)
        grey += rgb[:, 1] * np.uint32(38470)
        grey += rgb[:, 2] * np.uint32(7471)
        grey += np.uint32(0x8000)
        grey >>= np.uint32(16)
        total = int(grey.sum(dtype=np.uint64))
    else:
        # the sum of the levels (what PIL's histogram-weighted mean adds up), exact: OpenCV sums
        # 8-bit pixels in integers, and any sum below 2**53 is exact in the double it returns
        total = int(cv2.sumElems(image)[0])
    count = image.shape[0] * image.shape[1]
    return int(total / count + 0.5)


def sigmoid_lut(gain: float, cutoff: float) -> np.ndarray:
    """scikit-image ``adjust_sigmoid(image, cutoff, gain)`` for 8-bit input, as a 256-entry table.

    ``out = 255 / (1 + exp(gain * (cutoff - in / 255)))``, truncated to ``uint8`` as scikit-image's
    ``astype`` does.
    """
    levels = np.arange(256, dtype=np.float64)
    out = (1.0 / (1.0 + np.exp(gain * (cutoff - levels / 255.0)))) * 255.0
    return out.astype(np.uint8)


def _expand(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A single-channel per-pixel factor, repeated for RGB images."""
    return cv2.merge([mask, mask, mask]) if image.ndim == 3 else mask


def white_overlay(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite white over ``image`` with per-pixel 8-bit opacity ``alpha`` (H, W).

    ``out = in + round((255 - in) * alpha / 255)``, i.e. ``(255*alpha + in*(255-alpha)) / 255``
    rounded, which is what PIL's ``alpha_composite`` of a white RGBA mask computes.
    """
    headroom = 255 - image  # uint8, never negative
    lift = cv2.multiply(headroom, _expand(alpha, image), scale=1.0 / 255.0)
    return cv2.add(image, lift)


def white_overlay_lut(alpha: int) -> np.ndarray:
    """Table for a white overlay of constant opacity ``alpha`` (0..255); same rounding as above."""
    levels = np.arange(256, dtype=np.float64)
    return np.rint(levels + (255.0 - levels) * (int(alpha) / 255.0)).astype(np.uint8)


def multiply_transmission(image: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """``round(image * transmission / 255)``: compositing black at opacity ``255 - transmission``."""
    return cv2.multiply(image, _expand(transmission, image), scale=1.0 / 255.0)
