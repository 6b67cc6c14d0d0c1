"""A torch ``Dataset`` over any CheXpert or CheXphoto CSV.

Each item is ``(image, labels, mask)``:

* ``image``: ``float32`` tensor ``3 x S x S``. The file (JPEG, PNG, DICOM: read with
  :func:`chexphoto.imageio.read_image`) is made grey (colour photos via luminance); an image
  larger than the working size is first reduced with area averaging so its short side is ``S``
  (the aspect ratio kept); the optional ``transform`` runs on that ``uint8`` array; the result is
  resized to ``S x S`` (squashed, as the CheXpert baseline does), scaled to [0, 1], replicated
  to 3 channels and normalised with the ImageNet mean and std;
* ``labels``: ``float32`` vector, one entry per task;
* ``mask``: ``float32`` vector, 1 where the label counts in the loss.

Uncertainty policies (CheXpert paper): ``u-ones`` maps uncertain (-1) to 1, ``u-zeros`` to 0,
blanks (not mentioned) are negatives with mask 1 in both; ``u-ignore`` masks uncertain *and*
blank labels out of the loss.

Every path is resolved inside ``data_root`` and checked to exist when the dataset is made, so a
training run fails before it starts, naming the missing files; a corrupt file raises
:class:`~chexphoto.imageio.ImageReadError` naming its path when it is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from chexphoto import csvschema
from chexphoto.fsutil import PathEscapeError, resolve_inside
from chexphoto.imageio import ImageReadError, read_image
from chexphoto.learning.models import IMAGENET_MEAN, IMAGENET_STD

UNCERTAINTY_POLICIES = ("u-ones", "u-zeros", "u-ignore")


def resolve_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``competition`` (the 5 CheXpert competition tasks), ``all`` (the 14 observations), or names."""
    if isinstance(tasks, str):
        if tasks == "competition":
            return list(csvschema.COMPETITION_TASKS)
        if tasks == "all":
            return list(csvschema.OBSERVATIONS)
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = [str(t) for t in tasks]
    unknown = [t for t in tasks if t not in csvschema.OBSERVATIONS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; tasks are CheXpert observations: "
                         f"{', '.join(csvschema.OBSERVATIONS)}")
    if not tasks:
        raise ValueError("no tasks given")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task listed twice in {tasks}")
    return tasks


def encode_labels(df: pd.DataFrame, tasks: Sequence[str], uncertainty: str,
                  *, file: str | None = None, required: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Label and mask arrays (``N x T`` float32) for ``tasks`` under an uncertainty policy."""
    if uncertainty not in UNCERTAINTY_POLICIES:
        raise ValueError(f"unknown uncertainty policy {uncertainty!r}; choose one of "
                         f"{', '.join(UNCERTAINTY_POLICIES)}")
    missing = [t for t in tasks if t not in df.columns]
    if missing and required:
        raise csvschema.CSVFormatError(f"no label column(s) {missing}", file=file, column=missing[0])
    n = len(df)
    labels = np.zeros((n, len(tasks)), np.float32)
    mask = np.zeros((n, len(tasks)), np.float32)
    present = [t for t in tasks if t in df.columns]
    if not present:
        return labels, mask
    values = csvschema.numeric_labels(df, present).to_numpy(np.float64)
    for j_present, task in enumerate(present):
        j = list(tasks).index(task)
        column = values[:, j_present]
        blank, uncertain = np.isnan(column), column == csvschema.UNCERTAIN
        positive = column == csvschema.POSITIVE
        if uncertainty == "u-ones":
            labels[:, j] = positive | uncertain
            mask[:, j] = 1.0
        elif uncertainty == "u-zeros":
            labels[:, j] = positive
            mask[:, j] = 1.0
        else:
            labels[:, j] = positive
            mask[:, j] = ~(blank | uncertain)
    return labels, mask


def to_grey(image: np.ndarray) -> np.ndarray:
    """A 2-D ``uint8`` array (colour photos converted by luminance)."""
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def reduce_to(image: np.ndarray, short_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the short side is ``short_side``; area averaging, aspect kept."""
    h, w = image.shape[:2]
    if min(h, w) <= short_side:
        return image
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_model_input(image: np.ndarray, image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``uint8`` grey image -> normalised ``float32`` tensor ``3 x S x S`` (see module docstring)."""
    image = to_grey(image)
    h, w = image.shape
    interpolation = cv2.INTER_AREA if h >= image_size and w >= image_size else cv2.INTER_LINEAR
    if (h, w) != (image_size, image_size):
        image = cv2.resize(image, (image_size, image_size), interpolation=interpolation)
    grey = torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32).div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (grey.unsqueeze(0).expand(3, -1, -1) - mean_t) / std_t


class CheXpertDataset(Dataset):
    """Images, labels and loss masks from a CheXpert-format CSV (see the module docstring).

    ``csv`` is a file path or a DataFrame read with :func:`chexphoto.csvschema.read_csv`; image
    paths are relative to ``data_root``. ``.csv`` is the (filtered) DataFrame aligned with the
    items, ``.tasks`` the task names, ``.labels``/``.masks`` the encoded arrays, ``.paths`` the
    resolved files. ``transform`` is any callable on a ``uint8`` numpy image; when it has an
    ``accepts_key`` attribute (:class:`~chexphoto.learning.augment.RandomPhotographic`) it is called
    with ``key=(Path, epoch)`` so seeded augmentation does not depend on workers or order
    (:meth:`set_epoch` changes the epoch).

    ``check_files=False`` skips the up-front existence check (predict reports missing files
    per row instead); ``labels_required=False`` allows a CSV without label columns.
    """

    def __init__(self, csv: str | os.PathLike | pd.DataFrame, data_root: str | os.PathLike,
                 tasks: str | Sequence[str] = "competition", uncertainty: str = "u-ones",
                 frontal_only: bool = False, transform: Callable | None = None, image_size: int = 320,
                 *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 check_files: bool = True, labels_required: bool = True):
        if isinstance(csv, pd.DataFrame):
            df, file = csv.copy(), None
            if "Path" not in df.columns:
                raise csvschema.CSVFormatError("no 'Path' column (not a CheXpert-format CSV)", column="Path")
        else:
            file = str(csv)
            df = csvschema.read_csv(file)
        csvschema.validate(df, file, require_keys=False)
        if int(image_size) < 8:
            raise ValueError(f"image size must be at least 8 px, got {image_size}")
        self.tasks = resolve_tasks(tasks)
        self.uncertainty, self.image_size = uncertainty, int(image_size)
        self.transform, self.mean, self.std = transform, tuple(mean), tuple(std)
        self.data_root, self.source = str(data_root), file
        self.epoch = 0
        df.insert(0, "_row", [csvschema.csv_row_number(i) for i in range(len(df))])
        if frontal_only:
            if "Frontal/Lateral" in df.columns:
                frontal = df["Frontal/Lateral"].str.strip().str.lower() == "frontal"
            else:
                frontal = df["Path"].str.lower().str.contains("frontal", regex=False)
            df = df[frontal]
        self.csv = df.reset_index(drop=True)
        self.rows = self.csv.pop("_row").tolist()
        self.labels, self.masks = encode_labels(self.csv, self.tasks, uncertainty, file=file,
                                                required=labels_required)
        self.paths: list[str] = []
        for row, rel in zip(self.rows, self.csv["Path"].tolist(), strict=True):
            try:
                self.paths.append(str(resolve_inside(self.data_root, rel)))
            except PathEscapeError as exc:
                raise csvschema.CSVFormatError(str(exc), file=file, row=row, column="Path") from None
        if check_files:
            missing = [(row, p) for row, p in zip(self.rows, self.paths, strict=True) if not os.path.isfile(p)]
            if missing:
                shown = "; ".join(f"row {row}: {p}" for row, p in missing[:5])
                more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
                raise FileNotFoundError(f"{len(missing)} image(s) listed in {file or 'the CSV'} not found "
                                        f"under {self.data_root}: {shown}{more}")

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """The epoch passed to a keyed transform (new augmentation draws every epoch)."""
        self.epoch = int(epoch)

    def load(self, index: int) -> torch.Tensor:
        """The model input for item ``index``; :class:`ImageReadError` naming the path on failure."""
        path = self.paths[index]
        try:
            image = reduce_to(to_grey(read_image(path)), self.image_size)
            if self.transform is not None:
                if getattr(self.transform, "accepts_key", False):
                    image = self.transform(image, key=[self.csv.at[index, "Path"], self.epoch])
                else:
                    image = self.transform(image)
                image = np.asarray(image)
            return to_model_input(image, self.image_size, self.mean, self.std)
        except ImageReadError as exc:
            message = str(exc)
            if path not in message:
                message = f"{path}: {message}"
            raise ImageReadError(message) from exc

    def __getitem__(self, index: int):
        return self.load(index), torch.from_numpy(self.labels[index]), torch.from_numpy(self.masks[index])


class SafeItems(Dataset):
    """Wrap a dataset for inference: an unreadable image gives ``ok=False`` and its reason
    instead of killing the DataLoader (predict reports, skips and lists such rows)."""

    def __init__(self, dataset: CheXpertDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return index, self.dataset.load(index), True, ""
        except Exception as exc:  # one bad image never stops inference; it is reported and listed
            size = self.dataset.image_size
            reason = str(exc) if isinstance(exc, ImageReadError) else f"{type(exc).__name__}: {exc}"
            path = self.dataset.paths[index]
            return index, torch.zeros(3, size, size), False, reason if path in reason else f"{path}: {reason}"
