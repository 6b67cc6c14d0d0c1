"""The on-the-fly robustness benchmark (ImageNet-C style).

For the clean images and for every (transformation, level), the images are transformed in
memory as they are loaded (nothing is written but predictions and tables), the model predicts,
and :func:`chexphoto.evaluation.metrics.evaluate` scores the predictions against the CSV's labels.
:func:`chexphoto.evaluation.robustness.build_table` turns the scores into the table (AUROC per
transformation x level, drop from clean, mean over transformations) and
:func:`chexphoto.evaluation.robustness.write` writes ``robustness.csv`` and ``robustness.json``.

Each image's transformation is drawn from ``derive_rng(seed, transform, level, Path)``, so a
condition is the same image set whatever the workers or order. Transforms run on the image at its
working size (short side = the model's input size, see :mod:`chexphoto.learning.data`); their
pixel sizes scale with the image, so a level means the same at any resolution.

``OUT/predictions/<condition>.csv`` keeps each condition's predictions; a rerun with the same
settings reuses them (resume), and ``OUT/benchmark.json`` records the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from chexphoto import csvschema
from chexphoto.fsutil import atomic_write_text
from chexphoto.learning.augment import FixedTransform, transform_set
from chexphoto.learning.data import CheXpertDataset
from chexphoto.learning.models import load_model
from chexphoto.learning.predict import predict_dataset, write_csv, write_errors
from chexphoto.transforms import LEVELS

CLEAN = "clean"


def parse_levels(text: str | Sequence[int]) -> list[int]:
    """``"1-4"``, ``"2"``, ``"1,3"`` (or a list) -> sorted unique levels, each in 1..4."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
    else:
        values = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            low, sep, high = part.partition("-")
            try:
                values += list(range(int(low), int(high) + 1)) if sep else [int(low)]
            except ValueError:
                raise ValueError(f"bad level list {text!r}: use e.g. 1-4 or 1,3") from None
    bad = [v for v in values if v not in LEVELS]
    if bad or not values:
        raise ValueError(f"levels must be in {LEVELS[0]}-{LEVELS[-1]}, got {text!r}")
    return sorted(set(values))


def condition_name(transform: str | None, level: int | None) -> str:
    """File-name form of a condition: ``clean`` or ``blur_L4``."""
    return CLEAN if transform is None else f"{transform}_L{level}"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class BenchmarkResult:
    """Scores per condition, the table, and the images that could not be used."""

    clean: dict
    results: dict  # (transform, level) -> evaluate() result
    table: dict
    errors: list[dict] = field(default_factory=list)


def benchmark(*, model: str, csv: str, data_root: str, out: str, transforms: str | Sequence[str] = "all",
              levels: str | Sequence[int] = "1-4", bootstrap: int = 1000, seed: int = 0,
              batch_size: int = 16, workers: int = 1, level: str = "image", tasks: list[str] | None = None,
              image_size: int | None = None, allow_errors: bool = False, overwrite: bool = False,
              log: Callable[[str], None] = print) -> BenchmarkResult:
    """Run the benchmark and write ``OUT/robustness.{csv,json}`` (see the module docstring)."""
    from chexphoto.evaluation import robustness
    from chexphoto.evaluation.metrics import evaluate

    names = transform_set(transforms)
    level_list = parse_levels(levels)
    if bootstrap < 0:
        raise ValueError("--bootstrap must be 0 or more")
    loaded = load_model(model, tasks=tasks, image_size=image_size)
    labels = csvschema.read_csv(csv)
    dataset = CheXpertDataset(labels, data_root, tasks=loaded.tasks, image_size=loaded.image_size,
                              mean=loaded.mean, std=loaded.std, check_files=False, labels_required=False)
    dataset.source = str(csv)
    missing = [t for t in loaded.tasks if t not in labels.columns]
    if missing:
        raise csvschema.CSVFormatError(f"no label column(s) {missing} to score the model's tasks against",
                                       file=str(csv))
    settings = {"model_sha256": _sha256(str(model)), "csv_sha256": _sha256(str(csv)),
                "data_root": os.path.abspath(data_root), "seed": int(seed), "tasks": loaded.tasks,
                "image_size": loaded.image_size, "mean": list(loaded.mean), "std": list(loaded.std)}
    os.makedirs(out, exist_ok=True)
    settings_path = os.path.join(out, "benchmark.json")
    pred_dir = os.path.join(out, "predictions")
    reuse = True
    if os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as fh:
            previous = json.load(fh).get("settings")
        if previous != settings:
            if not overwrite:
                raise FileExistsError(f"{out} holds a benchmark with other settings (model, CSV, seed or "
                                      "size); choose another --out or pass --overwrite")
            reuse = False
    atomic_write_text(settings_path, json.dumps({"settings": settings, "transforms": names,
                                                 "levels": level_list, "bootstrap": bootstrap,
                                                 "level": level}, indent=2) + "\n")

    conditions: list[tuple[str | None, int | None]] = [(None, None)]
    conditions += [(name, lv) for name in names for lv in level_list]
    errors: list[dict] = []
    scores: dict = {}
    for index, (name, lv) in enumerate(conditions, 1):
        cond = condition_name(name, lv)
        pred_path = os.path.join(pred_dir, f"{cond}.csv")
        errors_path = os.path.join(pred_dir, f"{cond}.errors.csv")
        if reuse and os.path.exists(pred_path):
            predictions = pd.read_csv(pred_path)
            cond_errors = (pd.read_csv(errors_path, keep_default_na=False).to_dict("records")
                           if os.path.exists(errors_path) else [])
        else:
            dataset.transform = None if name is None else FixedTransform(name, lv, seed)
            run = predict_dataset(loaded, dataset, batch_size=batch_size, workers=workers,
                                  description=f"[{index}/{len(conditions)}] {cond}")
            predictions, cond_errors = run.predictions, run.errors
            if cond_errors:
                write_errors(errors_path, cond_errors)
            elif os.path.exists(errors_path):
                os.remove(errors_path)
            write_csv(pred_path, predictions)
        for error in cond_errors:
            errors.append({"condition": cond, **error})
        if cond_errors and not allow_errors and name is None:
            log(f"{len(cond_errors)} image(s) could not be used (listed in {errors_path})")
        if len(predictions) == 0:
            raise ValueError(f"condition {cond}: no image could be predicted")
        result = evaluate(labels, predictions, level=level, tasks=loaded.tasks, bootstrap=bootstrap,
                          seed=seed, allow_missing=bool(cond_errors))
        scores[(name, lv)] = result
        log(f"{cond:>24}: mean AUROC {_mean_text(result, loaded.tasks)}")

    clean = scores.pop((None, None))
    table = robustness.build_table(clean, scores)
    robustness.write(out, table)
    if errors:
        write_errors_all = pd.DataFrame(errors, columns=["condition", "row", "path", "reason"])
        write_csv(os.path.join(out, "errors.csv"), write_errors_all)
    elif os.path.exists(os.path.join(out, "errors.csv")):
        os.remove(os.path.join(out, "errors.csv"))
    return BenchmarkResult(clean, scores, table, errors)


def mean_over_tasks(result: dict, tasks: Sequence[str]) -> float | None:
    """Mean AUROC over ``tasks`` (``None`` when any is undefined)."""
    values = [result["tasks"][t]["auroc"] for t in tasks]
    return None if any(v is None for v in values) else float(sum(values) / len(values))


def _mean_text(result: dict, tasks: Sequence[str]) -> str:
    mean = result.get("mean", {}).get("auroc")
    if mean is None:
        mean = mean_over_tasks(result, tasks)
    return "n/a" if mean is None else f"{mean:.3f}"
