"""On-the-fly photographic augmentation for training (issue 5's ``chexphoto.augment``).

``RandomPhotographic`` applies randomly chosen CheXphoto transforms (the synthesis transforms
themselves, via the registry) to images as they are loaded. It needs no torch. The code lives in
:mod:`chexphoto.learning.augment`; this module is the public name.
"""

from chexphoto.learning.augment import FixedTransform, RandomPhotographic

__all__ = ["FixedTransform", "RandomPhotographic"]
