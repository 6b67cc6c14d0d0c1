"""Geometric transforms: rotation, translation and tilt (perspective), black outside the image.

Coordinates: params hold positions in PIL's continuous convention (the image spans ``[0, w] x
[0, h]``, pixel centres at ``+0.5``), as the reference does; they are converted once to OpenCV's
(pixel centres at integers) when building the warp matrix.
"""

from __future__ import annotations

import cv2
import numpy as np

from chexphoto.transforms._ops import check_image
from chexphoto.transforms.registry import Transform, pixel_scale, register

# -------------------------------------------------------------------------------------- rotation

ROTATION_STEP_DEG = 5.0


def _rotation_matrix(angle: float, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The reference's rotation about ``(w // 2, h // 2)`` and its enlarged canvas ``(h, w)``."""
    matrix = cv2.getRotationMatrix2D((width // 2, height // 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w = int(height * sin + width * cos)
    new_h = int(height * cos + width * sin)
    matrix[0, 2] += new_w / 2 - width // 2
    matrix[1, 2] += new_h / 2 - height // 2
    return matrix, (new_h, new_w)


def _rotation_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    sign = 1.0 if rng.integers(0, 2) == 1 else -1.0
    return {"angle": sign * ROTATION_STEP_DEG * int(level)}


def _rotation_size(params: dict, height: int, width: int) -> tuple[int, int]:
    return _rotation_matrix(float(params["angle"]), height, width)[1]


def _rotation_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    height, width = image.shape[:2]
    matrix, (new_h, new_w) = _rotation_matrix(float(params["angle"]), height, width)
    return cv2.warpAffine(
        image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


rotation = register(
    Transform(
        "rotation",
        "geometric",
        "rotated on black, canvas enlarged to fit the whole image",
        _rotation_sample,
        _rotation_apply,
        level_table=lambda level: {"angle_deg": f"±{ROTATION_STEP_DEG * int(level):g}"},
        output_size=_rotation_size,
    )
)

# ----------------------------------------------------------------------------------- translation

TRANSLATION_INSET = 100  # px at a 1024 px short side, on each side
TRANSLATION_STEP = 20  # px at a 1024 px short side, per level


def _translation_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    scale = pixel_scale(height, width)
    shift = round(TRANSLATION_STEP * int(level) * scale)
    signs = rng.integers(0, 2, size=2)
    # The inset is kept >= the shift so the image never leaves the frame (it does not at 1024 px).
    inset = max(round(TRANSLATION_INSET * scale), shift)
    return {
        "dx": int(shift if signs[0] else -shift),
        "dy": int(shift if signs[1] else -shift),
        "inset": int(inset),
        "scale": scale,
    }


def _translation_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    height, width = image.shape[:2]
    inset, dx, dy = int(params["inset"]), int(params["dx"]), int(params["dy"])
    inner_w, inner_h = width - 2 * inset, height - 2 * inset
    if inner_w < 1 or inner_h < 1:
        raise ValueError(f"image of {width}x{height} px is too small for an inset of {inset} px")
    x0, y0 = inset + dx, inset + dy
    out = np.zeros_like(image)
    # An axis-aligned scale + integer shift: a bicubic resize pasted on black is the reference's
    # bicubic perspective transform (whose four corners form this rectangle), at a tenth of the cost.
    # (per channel: OpenCV's 3-channel cubic resize rounds a few pixels differently from its
    # 1-channel one, and a colour image with equal channels must give the grey result)
    channels = [image] if image.ndim == 2 else cv2.split(image)
    shrunk = [cv2.resize(c, (inner_w, inner_h), interpolation=cv2.INTER_CUBIC) for c in channels]
    out[y0 : y0 + inner_h, x0 : x0 + inner_w] = shrunk[0] if image.ndim == 2 else cv2.merge(shrunk)
    return out


translation = register(
    Transform(
        "translation",
        "geometric",
        "image shrunk into the frame inset by 100 px per side and shifted, black outside",
        _translation_sample,
        _translation_apply,
        level_table=lambda level: {
            "inset_px@1024": TRANSLATION_INSET,
            "shift_px@1024": f"±{TRANSLATION_STEP * int(level)} in x and y",
        },
    )
)

# ------------------------------------------------------------------------------------------ tilt

TILT_STEP = 0.05  # max fraction of width/height each corner moves inward, per level


def tilt_corners(params: dict, height: int, width: int) -> np.ndarray:
    """The quadrilateral (TL, TR, BR, BL; PIL coordinates) the image is mapped onto."""
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = params["inward"]
    return np.array(
        [
            [width * tlx, height * tly],
            [width * (1 - trx), height * try_],
            [width * (1 - brx), height * (1 - bry)],
            [width * blx, height * (1 - bly)],
        ],
        dtype=np.float64,
    )


def _tilt_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    degree = TILT_STEP * int(level)
    inward = rng.uniform(0.0, degree, size=(4, 2))
    return {"inward": [[float(x), float(y)] for x, y in inward]}


#: Bicubic taps reach 2 source px; the image only shrinks, so 3 output px bound the spill-over.
_CUBIC_REACH = 3


def _tilt_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    height, width = image.shape[:2]
    # image corners (its outer edges) -> quad corners, in OpenCV's pixel-centre coordinates
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64) - 0.5
    quad = tilt_corners(params, height, width)
    homography = cv2.getPerspectiveTransform(src.astype(np.float32), (quad - 0.5).astype(np.float32))
    # Everything outside the quad's bounding box is black: warp only that box (the cost is the
    # bicubic interpolation, ~proportional to the pixels computed), same values as a full warp.
    x0 = max(0, int(np.floor(quad[:, 0].min())) - _CUBIC_REACH)
    y0 = max(0, int(np.floor(quad[:, 1].min())) - _CUBIC_REACH)
    x1 = min(width, int(np.ceil(quad[:, 0].max())) + _CUBIC_REACH)
    y1 = min(height, int(np.ceil(quad[:, 1].max())) + _CUBIC_REACH)
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    out = np.zeros_like(image)
    # written straight into the box of the black output (no temporary, no second copy)
    cv2.warpPerspective(
        image,
        shift @ homography,
        (x1 - x0, y1 - y0),
        dst=out[y0:y1, x0:x1],
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out


tilt = register(
    Transform(
        "tilt",
        "photographic",
        "photographed at an angle: each corner moved inward at random, perspective warp on black",
        _tilt_sample,
        _tilt_apply,
        level_table=lambda level: {"corner_shift": f"U(0, {TILT_STEP * int(level):.2f}) of width and height"},
    )
)
