"""Training, prediction and the robustness benchmark (needs the optional torch extra).

The submodules import torch; this package does not, so ``import chexphoto.learning`` is cheap
and works without torch. Names are loaded on first use:

>>> from chexphoto.learning import CheXpertDataset, RandomPhotographic  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CheXpertDataset": "chexphoto.learning.data",
    "RandomPhotographic": "chexphoto.learning.augment",
    "FixedTransform": "chexphoto.learning.augment",
    "build_model": "chexphoto.learning.models",
    "load_model": "chexphoto.learning.models",
    "export_torchscript": "chexphoto.learning.models",
    "TrainConfig": "chexphoto.learning.train",
    "predict_dataset": "chexphoto.learning.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'chexphoto.learning' has no attribute {name!r}")
