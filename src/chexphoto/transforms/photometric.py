"""Photometric transforms: identity, brightness, contrast, random_digital, exposure.

All are pointwise tone curves, applied as one 256-entry lookup table (``cv2.LUT``), so they cost a
fraction of a JPEG decode+encode whatever the image size.

Brightness and contrast reproduce PIL's ``ImageEnhance`` exactly (same float32 arithmetic,
truncation and clipping; contrast blends toward PIL's rounded mean grey of the image), with the
reference's factors: ``1 + 0.2*L + u`` up and ``1 / (1 + 0.4*L + u)`` down, ``u ~ U(-0.01, 0.01)``,
``L = 0.5`` at level 1 and ``L = level`` otherwise (level 1: the paper's x1.1 and x0.83).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chexphoto.transforms._ops import apply_lut, check_image, pil_blend_lut, pil_grey_mean, sigmoid_lut
from chexphoto.transforms.registry import Transform, register

# ---------------------------------------------------------------------------------------- identity


def _identity_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    return {}


def _identity_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return image


identity = register(Transform("identity", "none", "the image unchanged", _identity_sample, _identity_apply))

# ------------------------------------------------------------------------- brightness and contrast

#: The reference's noise on the enhancement factor.
FACTOR_NOISE = 0.01


def strength(level: int) -> float:
    """The reference's ``L``: 0.5 at level 1 (the paper's x1.1 / x0.83), else the level itself."""
    return 0.5 if int(level) == 1 else float(level)


def factor_up(level: int, noise: float = 0.0) -> float:
    """Enhancement factor that increases brightness/contrast: ``1 + 0.2*L + noise``."""
    return 1.0 + 0.2 * strength(level) + noise


def factor_down(level: int, noise: float = 0.0) -> float:
    """Enhancement factor that decreases brightness/contrast: ``1 / (1 + 0.4*L + noise)``."""
    return 1.0 / (1.0 + 0.4 * strength(level) + noise)


def _noise(rng: np.random.Generator) -> float:
    return float(rng.uniform(-FACTOR_NOISE, FACTOR_NOISE))


def brightness_lut(factor: float) -> np.ndarray:
    """PIL ``ImageEnhance.Brightness(img).enhance(factor)`` as a table (blend toward black)."""
    return pil_blend_lut(0, factor)


def contrast_lut(mean_grey: int, factor: float) -> np.ndarray:
    """PIL ``ImageEnhance.Contrast`` as a table, given PIL's rounded mean grey of the image."""
    return pil_blend_lut(mean_grey, factor)


def enhance_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Byte-exact ``ImageEnhance.Brightness(image).enhance(factor)`` on a grey or RGB array."""
    return apply_lut(image, brightness_lut(factor))


def enhance_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Byte-exact ``ImageEnhance.Contrast(image).enhance(factor)`` on a grey or RGB array."""
    return apply_lut(image, contrast_lut(pil_grey_mean(image), factor))


def _factor_table(direction: str) -> Callable[[int], dict]:
    def table(level: int) -> dict:
        if direction == "up":
            return {"factor": f"{factor_up(level):.3f} ± 0.01"}
        return {"factor": f"{factor_down(level):.3f} (1/(1+0.4L±0.01))"}

    return table


def _make_sampler(direction: str) -> Callable[[np.random.Generator, int, int, int], dict]:
    def sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
        noise = _noise(rng)
        factor = factor_up(level, noise) if direction == "up" else factor_down(level, noise)
        return {"factor": float(factor)}

    return sample


def _brightness_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return enhance_brightness(image, float(params["factor"]))


def _contrast_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return enhance_contrast(image, float(params["factor"]))


brightness_up = register(
    Transform(
        "brightness_up",
        "digital",
        "brighter: every pixel scaled up (PIL ImageEnhance.Brightness)",
        _make_sampler("up"),
        _brightness_apply,
        level_table=_factor_table("up"),
    )
)
brightness_down = register(
    Transform(
        "brightness_down",
        "digital",
        "darker: every pixel scaled toward black (PIL ImageEnhance.Brightness)",
        _make_sampler("down"),
        _brightness_apply,
        level_table=_factor_table("down"),
    )
)
contrast_up = register(
    Transform(
        "contrast_up",
        "digital",
        "more contrast: pixels pushed away from the mean grey (PIL ImageEnhance.Contrast)",
        _make_sampler("up"),
        _contrast_apply,
        level_table=_factor_table("up"),
    )
)
contrast_down = register(
    Transform(
        "contrast_down",
        "digital",
        "less contrast: pixels pulled toward the mean grey (PIL ImageEnhance.Contrast)",
        _make_sampler("down"),
        _contrast_apply,
        level_table=_factor_table("down"),
    )
)

# -------------------------------------------------------------------------------- random_digital


def _random_digital_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    params: dict = {}
    for kind in ("contrast", "brightness"):  # the reference's order: contrast first
        direction = "up" if rng.integers(0, 2) == 1 else "down"
        noise = _noise(rng)
        factor = factor_up(level, noise) if direction == "up" else factor_down(level, noise)
        params[kind] = direction
        params[f"{kind}_factor"] = float(factor)
    return params


def _random_digital_apply(image: np.ndarray, params: dict) -> np.ndarray:
    image = check_image(image)
    # contrast's mean is that of the input; brightness is pointwise: compose both into one table
    contrast = contrast_lut(pil_grey_mean(image), float(params["contrast_factor"]))
    brightness = brightness_lut(float(params["brightness_factor"]))
    return apply_lut(image, brightness[contrast])


def _random_digital_table(level: int) -> dict:
    return {
        "contrast": f"×{factor_up(level):.3f} or ×{factor_down(level):.3f} (±0.01, coin flip)",
        "then brightness": f"×{factor_up(level):.3f} or ×{factor_down(level):.3f} (±0.01, coin flip)",
    }


random_digital = register(
    Transform(
        "random_digital",
        "digital",
        "contrast up or down, then brightness up or down (each a coin flip): the paper's digital set",
        _random_digital_sample,
        _random_digital_apply,
        level_table=_random_digital_table,
    )
)

# -------------------------------------------------------------------------------------- exposure

#: Sigmoid gain per level. The reference always uses gain 5 whatever the level; here level 1 keeps
#: 5 and each level adds 2.5, so the curve (and the effect) steepens with severity.
EXPOSURE_GAIN = {1: 5.0, 2: 7.5, 3: 10.0, 4: 12.5}
EXPOSURE_CUTOFF = 0.5


def _exposure_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    return {"gain": EXPOSURE_GAIN[int(level)], "cutoff": EXPOSURE_CUTOFF}


def _exposure_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return apply_lut(image, sigmoid_lut(float(params["gain"]), float(params["cutoff"])))


exposure = register(
    Transform(
        "exposure",
        "exposure",
        "sigmoid tone curve around mid-grey (scikit-image adjust_sigmoid)",
        _exposure_sample,
        _exposure_apply,
        level_table=lambda level: {"gain": EXPOSURE_GAIN[int(level)], "cutoff": EXPOSURE_CUTOFF},
    )
)
