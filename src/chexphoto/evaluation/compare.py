"""Paired comparison of conditions (e.g. digital x-ray vs natural photo) on the same images.

Method:

* Every condition is matched to the same labels (as in :func:`chexphoto.evaluation.metrics.evaluate`);
  only keys (images, or studies at study level) present in *every* condition are compared, and
  how many each condition loses is reported (``common.dropped``).
* The first condition is the **reference**; each other condition is compared with it
  (``difference = AUROC(condition) - AUROC(reference)``, positive means the condition scores
  higher). With k conditions there are k - 1 comparisons, which keeps the multiple-testing burden
  small and matches the usual question "how much is lost relative to the x-ray".
* **Paired bootstrap.** Patients are resampled once per replicate and *every* condition is scored
  on that same resample, so the difference's distribution reflects only the disagreement between
  conditions, not the (shared) sampling of patients. Replicates where a task has one class are
  skipped for that task.
* **CI**: the 2.5 and 97.5 percentiles of the bootstrap differences.
* **p-value** (two-sided): ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))`` over the bootstrap
  differences ``d*``, each proportion computed as ``(count + 1) / (replicates + 1)`` so a p-value is
  never reported as exactly 0 from a finite number of replicates. It is the smallest alpha at
  which the percentile CI at level 1 - alpha excludes 0 (test inversion): p < 0.05 when the 95% CI
  excludes 0. Identical conditions give every ``d* = 0``, hence difference 0, CI [0, 0] and p = 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from chexphoto.evaluation.metrics import (
    PathOrFrame,
    Scored,
    bootstrap_distributions,
    match,
    percentile_ci,
    plural_unit,
    summarize,
)


def bootstrap_p_value(differences: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value for "no difference" (see the module docstring)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return None
    below = (np.count_nonzero(d <= 0) + 1) / (d.size + 1)
    above = (np.count_nonzero(d >= 0) + 1) / (d.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def _difference(cond_auc: float | None, ref_auc: float | None, dist: np.ndarray | None) -> dict:
    if cond_auc is None or ref_auc is None:
        return {"difference": None, "ci": [None, None], "p_value": None,
                "note": "undefined: AUROC undefined in one of the conditions"}
    entry = {"difference": float(cond_auc - ref_auc), "ci": [None, None], "p_value": None}
    if dist is not None:
        entry["ci"] = percentile_ci(dist)
        entry["p_value"] = bootstrap_p_value(dist)
    return entry


def _as_pairs(predictions: Mapping[str, PathOrFrame] | Iterable[tuple[str, PathOrFrame]]
              ) -> list[tuple[str, PathOrFrame]]:
    pairs = list(predictions.items()) if isinstance(predictions, Mapping) else list(predictions)
    names = [name for name, _ in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"condition name(s) given twice: {', '.join(duplicated)}")
    if len(pairs) < 2:
        raise ValueError("compare needs at least two conditions (NAME=PRED.csv twice or more)")
    return pairs


def common_keys(conditions: Mapping[str, Scored]) -> tuple[dict[str, Scored], dict[str, int]]:
    """Restrict every condition to the keys all of them have; returns the restricted data and how
    many keys each condition dropped."""
    shared = set.intersection(*(set(s.keys) for s in conditions.values()))
    restricted, dropped = {}, {}
    for name, scored in conditions.items():
        keep = np.array([k in shared for k in scored.keys], dtype=bool)
        dropped[name] = int((~keep).sum())
        restricted[name] = scored.subset(keep)
    return restricted, dropped


def compare(labels: PathOrFrame, predictions: Mapping[str, PathOrFrame] | Sequence[tuple[str, PathOrFrame]],
            *, level: str = "image", tasks: str | Iterable[str] = "competition", bootstrap: int = 1000,
            seed: int = 0, progress: bool = False) -> dict:
    """Paired bootstrap comparison of each condition against the first one.

    ``predictions`` maps condition name to a predictions CSV path or DataFrame (order matters: the
    first is the reference). Returns ``{"level", "reference", "conditions": [names],
    "common": {"keys", "patients", "labels", "dropped": {name: n}}, "results": {name: evaluate
    result on the common keys}, "differences": [{"condition", "reference", "tasks": {task:
    {"difference", "ci", "p_value"}}, "mean": {...}}], "bootstrap": {...}, "warnings": [...]}``.
    """
    if int(bootstrap) < 0:
        raise ValueError(f"bootstrap must be >= 0, not {bootstrap}")
    pairs = _as_pairs(predictions)
    matched = {}
    for name, pred in pairs:
        # Labels without a prediction in some condition are expected here: the comparison is on
        # the keys every condition has, and what each one drops is reported.
        matched[name] = match(labels, pred, level=level, tasks=tasks, allow_missing=True)
    restricted, dropped = common_keys(matched)
    reference = pairs[0][0]
    first = restricted[reference]
    if not first.keys:
        raise ValueError("the conditions have no image/study in common: nothing to compare")

    replicates = int(bootstrap)
    dists = bootstrap_distributions(restricted, replicates, seed, progress=progress) if replicates else None
    results = {}
    for name, scored in restricted.items():
        scored.warnings = []  # unmatched labels are reported once, as common/dropped
        results[name] = summarize(scored, dists[name] if dists else None, replicates=replicates, seed=seed)

    differences = []
    for name, _ in pairs[1:]:
        entry = {"condition": name, "reference": reference, "tasks": {}, "mean": {}}
        for t in first.tasks:
            dist = dists[name][t] - dists[reference][t] if dists else None
            entry["tasks"][t] = _difference(results[name]["tasks"][t]["auroc"],
                                            results[reference]["tasks"][t]["auroc"], dist)
        dist = dists[name]["__mean__"] - dists[reference]["__mean__"] if dists else None
        entry["mean"] = _difference(results[name]["mean"]["auroc"], results[reference]["mean"]["auroc"], dist)
        differences.append(entry)

    warnings = []
    for name, n in dropped.items():
        if n:
            warnings.append(f"{name}: {n} of its {len(matched[name].keys)} {plural_unit(level)} are not in every "
                            "condition and were left out")
    n_labels = first.counts.get("labels", 0)
    if len(first.keys) < n_labels:
        warnings.append(f"{n_labels - len(first.keys)} of {n_labels} labelled {plural_unit(level)} are not in "
                        "every condition and were left out")
    for name in results:
        warnings.extend(f"{name}: {w}" for w in results[name]["warnings"])
    return {
        "level": first.level,
        "reference": reference,
        "conditions": [name for name, _ in pairs],
        "common": {"keys": len(first.keys), "patients": first.n_patients, "labels": n_labels,
                   "dropped": dropped},
        "results": results,
        "differences": differences,
        "bootstrap": {"replicates": replicates, "seed": int(seed), "resampling": "patient (paired)",
                      "p_value": "two-sided, 2*min(P(d*<=0), P(d*>=0)) with (count+1)/(B+1)"},
        "warnings": warnings,
    }

