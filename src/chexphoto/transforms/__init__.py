"""Synthetic photographic transformations of x-rays (CheXphoto, Table 2).

>>> from chexphoto.transforms import Chain, get, names, preset
"""

from chexphoto.transforms.registry import (
    LEVELS,
    PRESETS,
    REGISTRY,
    Chain,
    Transform,
    apply_recorded,
    get,
    names,
    pixel_scale,
    preset,
)

__all__ = [
    "LEVELS",
    "PRESETS",
    "REGISTRY",
    "Chain",
    "Transform",
    "apply_recorded",
    "get",
    "names",
    "pixel_scale",
    "preset",
]
