"""The public import paths the issues name stay importable."""

from __future__ import annotations

import numpy as np
import pytest


def test_augment_public_name_needs_no_torch_and_is_the_learning_class():
    from chexphoto.augment import RandomPhotographic
    from chexphoto.learning.augment import RandomPhotographic as Impl

    assert RandomPhotographic is Impl
    aug = RandomPhotographic(levels=(4,), p=1.0, seed=3)
    img = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    assert not np.array_equal(aug(img), img)


def test_data_public_name():
    pytest.importorskip("torch")
    from chexphoto.data import CheXpertDataset
    from chexphoto.learning.data import CheXpertDataset as Impl

    assert CheXpertDataset is Impl
