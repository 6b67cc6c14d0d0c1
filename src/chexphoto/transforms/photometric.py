"""Photometric transforms: identity, brightness, contrast, random_digital, exposure."""

from __future__ import annotations

import numpy as np

from chexphoto.transforms.registry import Transform, register


def _identity_sample(rng: np.random.Generator, level: int, height: int, width: int) -> dict:
    return {}


def _identity_apply(image: np.ndarray, params: dict) -> np.ndarray:
    return image


identity = register(Transform("identity", "none", "the image unchanged", _identity_sample, _identity_apply))
