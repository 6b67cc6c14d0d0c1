"""Inference: probabilities per task per image, and study-level aggregation.

The pipeline is built so the model, not the loading, sets the pace: images are decoded, resized
(and, for the benchmark, transformed) by DataLoader worker processes (default 1: on a small
machine the forward pass needs the other cores) that prefetch batches while the model runs under
``torch.inference_mode``. An unreadable image never stops the run: it is reported, left out of the
predictions and listed in the returned errors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from chexphoto import csvschema
from chexphoto.fsutil import atomic_write_text
from chexphoto.learning.data import CheXpertDataset, SafeItems
from chexphoto.learning.models import LoadedModel
from chexphoto.progress import make_progress

#: How probabilities are written: 6 decimals is far below any AUROC-relevant difference and
#: keeps files byte-identical across runs.
FLOAT_FORMAT = "%.6f"


@dataclass
class PredictionRun:
    """What :func:`predict_dataset` produced."""

    predictions: pd.DataFrame  # Path + one column per task, rows in CSV order (failures left out)
    errors: list[dict] = field(default_factory=list)  # {"row", "path", "reason"}
    seconds: float = 0.0
    images: int = 0


def make_loader(dataset, batch_size: int, workers: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """A DataLoader with worker processes that prefetch (``workers=0``: load in the main process)."""
    if workers < 0:
        raise ValueError("--workers must be 0 or more")
    extra = {"prefetch_factor": 4, "persistent_workers": False} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      generator=generator, drop_last=drop_last, **extra)


def run_model(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Sigmoid probabilities for one batch (the models output one logit per task)."""
    return torch.sigmoid(model(batch.contiguous(memory_format=torch.channels_last)))


def predict_dataset(loaded: LoadedModel, dataset: CheXpertDataset, *, batch_size: int = 16,
                    workers: int = 1, progress: bool | None = None, description: str = "predict",
                    on_error: Callable[[dict], None] | None = None) -> PredictionRun:
    """Run ``loaded.model`` over ``dataset``; failures are collected, not raised."""
    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    model = loaded.model.eval()
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule):
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(SafeItems(dataset), batch_size, workers)
    n = len(dataset)
    probs = np.full((n, len(loaded.tasks)), np.nan, np.float32)
    ok = np.zeros(n, bool)
    errors: list[dict] = []
    start = time.perf_counter()
    with make_progress("images", disable=None if progress is None else not progress) as bar:
        task = bar.add_task(description, total=n)
        with torch.inference_mode():
            for indices, images, good, reasons in loader:
                good_mask = good.bool()
                if good_mask.any():
                    out = run_model(model, images[good_mask]).float().numpy()
                    if out.ndim != 2 or out.shape[1] != len(loaded.tasks):
                        raise ValueError(f"the model gives {tuple(out.shape[1:])} outputs per image, "
                                         f"expected {len(loaded.tasks)} (one per task)")
                    rows = indices[good_mask].numpy()
                    probs[rows] = out
                    ok[rows] = True
                for index, fine, reason in zip(indices.tolist(), good.tolist(), reasons, strict=True):
                    if not fine:
                        error = {"row": dataset.rows[index], "path": dataset.csv.at[index, "Path"],
                                 "reason": reason}
                        errors.append(error)
                        if on_error is not None:
                            on_error(error)
                bar.advance(task, len(indices))
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(probs[ok], columns=list(loaded.tasks))
    frame.insert(0, "Path", dataset.csv["Path"].to_numpy()[ok])
    errors.sort(key=lambda e: e["row"])
    return PredictionRun(frame, errors, seconds, int(ok.sum()))


def study_of(path: str) -> str:
    """The study a path belongs to: the path up to its ``studyN`` component (CheXpert competition)."""
    csvschema.parse_path(path)  # PathParseError when there is no patient/study/view
    return "/".join(csvschema.path_parts(path)[:-1])


def study_level(predictions: pd.DataFrame) -> pd.DataFrame:
    """Study-level predictions: the maximum over each study's views; ``Study`` + task columns."""
    tasks = [c for c in predictions.columns if c != "Path"]
    frame = predictions[tasks].copy()
    frame.insert(0, "Study", [study_of(p) for p in predictions["Path"]])
    return frame.groupby("Study", sort=False)[tasks].max().reset_index()


def study_path_for(out: str | os.PathLike) -> str:
    """``PRED.csv`` -> ``PRED.study.csv`` (where ``--study`` writes)."""
    root, ext = os.path.splitext(str(out))
    return f"{root}.study{ext or '.csv'}"


def errors_path_for(out: str | os.PathLike) -> str:
    """``PRED.csv`` -> ``PRED.errors.csv`` (the rows whose image could not be read)."""
    root, ext = os.path.splitext(str(out))
    return f"{root}.errors{ext or '.csv'}"


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a predictions/errors CSV atomically with the fixed float format."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


def write_errors(path: str | os.PathLike, errors: list[dict]) -> None:
    write_csv(path, pd.DataFrame(errors, columns=["row", "path", "reason"]))


def check_study_paths(dataset: CheXpertDataset) -> None:
    """Fail before inference when a path has no patient/study (``--study`` needs them)."""
    for row, path in zip(dataset.rows, dataset.csv["Path"].tolist(), strict=True):
        try:
            csvschema.parse_path(path)
        except csvschema.PathParseError as exc:
            raise csvschema.CSVFormatError(f"{exc} (needed by --study)", file=dataset.source, row=row,
                                           column="Path") from None
