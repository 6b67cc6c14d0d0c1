"""``chexphoto demo``: the whole synthesis pipeline on the real radiograph that ships with
pydicom-data (RG1_UNCR.dcm, a CR chest PA), offline, in a few seconds.

It makes a tiny CheXpert-style data root (a few JPEGs at CheXpert paths, some flipped, cropped or
at other sizes, plus a ``valid.csv`` with realistic labels), the transforms x levels contact
sheet, and both of the paper's synthetic sets (``digital`` and ``photographic``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from chexphoto.csvschema import METADATA_COLUMNS, OBSERVATIONS
from chexphoto.fsutil import atomic_write_text
from chexphoto.imageio import read_image, write_image

DATA_FOLDER = "CheXpert-v1.0-small"
OUT_FOLDER = "CheXphoto-v1.0"

# (path under the data root, variant, Sex, Age, Frontal/Lateral, AP/PA, positive observations)
_ROWS = [
    ("valid/patient64541/study1/view1_frontal.jpg", "plain", "Male", "73", "Frontal", "AP",
     ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Atelectasis", "Support Devices")),
    ("valid/patient64542/study1/view1_frontal.jpg", "flipped", "Male", "70", "Frontal", "PA",
     ("No Finding",)),
    ("valid/patient64542/study1/view2_lateral.jpg", "narrow", "Male", "70", "Lateral", "",
     ("No Finding",)),
    ("valid/patient64543/study1/view1_frontal.jpg", "large", "Female", "85", "Frontal", "AP",
     ("Lung Opacity", "Edema", "Pleural Effusion", "Support Devices")),
    ("valid/patient64544/study1/view1_frontal.jpg", "dark", "Female", "42", "Frontal", "AP",
     ("Consolidation", "Pneumonia")),
]


def _variant(image: np.ndarray, kind: str) -> np.ndarray:
    """Different sizes, crops and flips so the demo rows are distinct images."""
    h, w = image.shape[:2]

    def resize_short(img: np.ndarray, short: int) -> np.ndarray:
        ih, iw = img.shape[:2]
        scale = short / min(ih, iw)
        return cv2.resize(img, (round(iw * scale), round(ih * scale)), interpolation=cv2.INTER_AREA)

    if kind == "plain":
        return resize_short(image, 320)
    if kind == "flipped":
        return resize_short(image[:, ::-1], 320)
    if kind == "narrow":  # a crop of the mediastinum, taller than wide like a lateral view
        return resize_short(image[h // 10: h - h // 10, w // 4: 3 * w // 4], 320)
    if kind == "large":
        return resize_short(image, 512)
    if kind == "dark":
        lut = (255.0 * (np.arange(256) / 255.0) ** 1.6).round().astype(np.uint8)
        return resize_short(cv2.LUT(image, lut), 320)
    raise ValueError(kind)


@dataclass
class DemoResult:
    out: Path
    data_root: Path
    csv: Path
    sheet: Path
    datasets: list = field(default_factory=list)  # SynthesisResult per preset


def make_data_root(out: Path, image: np.ndarray) -> Path:
    """Write the demo's CheXpert-style images and ``valid.csv``; returns the CSV path."""
    rows = []
    for rel, kind, sex, age, view, ap_pa, positives in _ROWS:
        path = f"{DATA_FOLDER}/{rel}"
        write_image(out / path, _variant(image, kind))
        labels = {obs: ("1.0" if obs in positives else "0.0") for obs in OBSERVATIONS}
        rows.append({"Path": path, "Sex": sex, "Age": age, "Frontal/Lateral": view, "AP/PA": ap_pa, **labels})
    frame = pd.DataFrame(rows, columns=list(METADATA_COLUMNS) + list(OBSERVATIONS))
    csv = out / DATA_FOLDER / "valid.csv"
    atomic_write_text(csv, frame.to_csv(index=False, lineterminator="\n"))
    return csv


def run_demo(out: str | os.PathLike = "chexphoto-demo", *, workers: int | None = None, seed: int = 0,
             progress: bool | None = None) -> DemoResult:
    """Build the demo under ``out`` (re-running replaces the demo's own files)."""
    from pydicom.data import get_testdata_file

    from chexphoto.synthesis.contact_sheet import write_contact_sheet
    from chexphoto.synthesis.run import synthesize
    from chexphoto.transforms import PRESETS, preset

    source = get_testdata_file("RG1_UNCR.dcm")
    if source is None:
        raise FileNotFoundError("pydicom-data's RG1_UNCR.dcm is missing; reinstall pydicom-data")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image = read_image(source)
    csv = make_data_root(out, image)
    sheet = out / "transforms.png"
    write_contact_sheet(sheet, image, seed=seed)
    workers = workers or min(2, os.cpu_count() or 1)
    results = []
    for preset_name in PRESETS:
        results.append(synthesize(csv, out, out / OUT_FOLDER, preset(preset_name), seed=seed,
                                  workers=workers, overwrite=True, progress=progress))
    return DemoResult(out=out, data_root=out, csv=csv, sheet=sheet, datasets=results)
