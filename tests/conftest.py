"""Shared fixtures: the real chest radiograph that ships in pydicom-data, read once per session."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from chexphoto.imageio import read_image


@pytest.fixture(scope="session")
def rg1_path() -> str:
    """Path of RG1_UNCR.dcm: CR chest PA, MONOCHROME1, 15-bit, 1841 wide x 1955 high."""
    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None, "pydicom-data is a dependency and ships RG1_UNCR.dcm"
    return path


@pytest.fixture(scope="session")
def rg1_image(rg1_path) -> np.ndarray:
    img = read_image(rg1_path)
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def rg1_small(rg1_image) -> np.ndarray:
    """The radiograph at 320 px short side (fast tests)."""
    h, w = rg1_image.shape
    scale = 320 / min(h, w)
    img = cv2.resize(rg1_image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    img.setflags(write=False)
    return img
