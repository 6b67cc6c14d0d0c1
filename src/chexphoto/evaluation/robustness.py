"""The ImageNet-C-style robustness table: AUROC per transformation x severity level.

Built from one clean evaluation and one evaluation per (transform, level), all results of
:func:`chexphoto.evaluation.metrics.evaluate`. Every row holds the mean AUROC over the
competition tasks with its bootstrap CI, the AUROC of each task, and the **drop** from clean
(``clean mean AUROC - mean AUROC``: positive means the transformation costs AUROC) and the
relative drop (drop / clean). Aggregates, as in ImageNet-C: the mean over transformations at each
level (``by_level``), the mean over levels of each transformation (``by_transform``), and the
overall mean over every (transform, level) cell (``overall``). Aggregates have no CI (that would
need the replicates of every cell); an aggregate is ``null`` if any cell in it is undefined.

Written as ``DIR/robustness.json`` (the complete table; :func:`load` reads it back) and
``DIR/robustness.csv`` (one line per cell, then the aggregates; for spreadsheets), each atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from chexphoto.fsutil import atomic_write_text

FORMAT = "chexphoto-robustness/1"
JSON_NAME = "robustness.json"
CSV_NAME = "robustness.csv"


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(sum(values) / len(values))


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a - b)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else float(a / b)


def _check_result(result: Mapping, what: str) -> None:
    if not isinstance(result, Mapping) or "tasks" not in result or "mean" not in result:
        raise ValueError(f"{what} is not an evaluate() result (needs 'tasks' and 'mean')")


def _transform_order(names: list[str]) -> list[str]:
    """Transformations in registry order (as ``chexphoto.transforms.names()`` lists them), unknown
    names after, alphabetically -- independent of the order results arrived in."""
    try:
        from chexphoto.transforms import names as registry_names

        known = list(registry_names())
    except Exception:  # the table must build even if the registry cannot be imported
        known = []
    rank = {n: i for i, n in enumerate(known)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def build_table(clean: Mapping, results: Mapping[tuple[str, int], Mapping]) -> dict:
    """The robustness table (JSON-able dict) from the clean result and one result per
    (transform, level). All results must score the same tasks."""
    _check_result(clean, "clean")
    tasks = list(clean["tasks"])
    clean_auroc = clean["mean"]["auroc"]
    rows_by_key = {}
    for key, result in results.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"results keys must be (transform, level) pairs, not {key!r}")
        transform, level = str(key[0]), int(key[1])
        _check_result(result, f"result for {transform} level {level}")
        if list(result["tasks"]) != tasks:
            raise ValueError(f"result for {transform} level {level} scores tasks {list(result['tasks'])}, "
                             f"the clean result {tasks}")
        if (transform, level) in rows_by_key:
            raise ValueError(f"two results for {transform} level {level}")
        auroc = result["mean"]["auroc"]
        rows_by_key[(transform, level)] = {
            "transform": transform,
            "level": level,
            "auroc": auroc,
            "ci": list(result["mean"].get("ci") or [None, None]),
            "tasks": {t: result["tasks"][t]["auroc"] for t in tasks},
            "drop": _sub(clean_auroc, auroc),
            "relative_drop": _ratio(_sub(clean_auroc, auroc), clean_auroc),
        }
    transforms = _transform_order(sorted({t for t, _ in rows_by_key}))
    levels = sorted({lv for _, lv in rows_by_key})
    rows = [rows_by_key[(t, lv)] for t in transforms for lv in levels if (t, lv) in rows_by_key]

    def aggregate(cells: list[dict], **ident) -> dict:
        auroc = _mean([c["auroc"] for c in cells])
        return {**ident, "auroc": auroc,
                "tasks": {t: _mean([c["tasks"][t] for c in cells]) for t in tasks},
                "drop": _sub(clean_auroc, auroc), "relative_drop": _ratio(_sub(clean_auroc, auroc), clean_auroc),
                "cells": len(cells)}

    return {
        "format": FORMAT,
        "level": clean.get("level"),
        "tasks": tasks,
        "transforms": transforms,
        "levels": levels,
        "clean": {"auroc": clean_auroc, "ci": list(clean["mean"].get("ci") or [None, None]),
                  "tasks": {t: clean["tasks"][t]["auroc"] for t in tasks}},
        "rows": rows,
        "by_level": [aggregate([r for r in rows if r["level"] == lv], level=lv) for lv in levels],
        "by_transform": [aggregate([r for r in rows if r["transform"] == t], transform=t) for t in transforms],
        "overall": aggregate(rows),
    }


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6f}"
    return str(x)


def to_csv(table: Mapping) -> str:
    """The table as CSV text: columns ``transform, level, auroc, ci_low, ci_high, <tasks>, drop,
    relative_drop``; first the clean row (transform ``clean``, level 0), then one row per cell,
    then ``mean`` rows per level and the overall ``mean`` (level ``all``)."""
    tasks = list(table["tasks"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["transform", "level", "auroc", "ci_low", "ci_high", *tasks, "drop", "relative_drop"])
    clean = table["clean"]
    writer.writerow(["clean", 0, _fmt(clean["auroc"]), _fmt(clean["ci"][0]), _fmt(clean["ci"][1]),
                     *[_fmt(clean["tasks"][t]) for t in tasks], _fmt(0.0 if clean["auroc"] is not None else None),
                     _fmt(0.0 if clean["auroc"] is not None else None)])
    for r in table["rows"]:
        writer.writerow([r["transform"], r["level"], _fmt(r["auroc"]), _fmt(r["ci"][0]), _fmt(r["ci"][1]),
                         *[_fmt(r["tasks"][t]) for t in tasks], _fmt(r["drop"]), _fmt(r["relative_drop"])])
    for r in [*table["by_level"], dict(table["overall"], level="all")]:
        writer.writerow(["mean", r["level"], _fmt(r["auroc"]), "", "", *[_fmt(r["tasks"][t]) for t in tasks],
                         _fmt(r["drop"]), _fmt(r["relative_drop"])])
    return out.getvalue()


def write(out_dir: str | os.PathLike, table: Mapping) -> None:
    """Write ``robustness.csv`` and ``robustness.json`` into ``out_dir``, each atomically (the JSON,
    which :func:`load` reads, last)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, indent=2, allow_nan=False) + "\n"  # fails before writing anything
    atomic_write_text(out_dir / CSV_NAME, to_csv(table))
    atomic_write_text(out_dir / JSON_NAME, text)


def load(out_dir: str | os.PathLike) -> dict:
    """Read the table written by :func:`write` from ``out_dir`` (its ``robustness.json``)."""
    path = Path(out_dir) / JSON_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no robustness table in {out_dir} (expected {JSON_NAME}; run chexphoto benchmark)")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable robustness table: {exc}") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise ValueError(f"{path}: not a robustness table (format {FORMAT!r} expected)")
    return table
