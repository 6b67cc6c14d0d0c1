"""AUROC per task with patient-level bootstrap confidence intervals.

The evaluation follows the CheXpert competition:

* **Matching.** Predictions are matched to labels by the (patient, study, view) read from the
  paths with :func:`chexphoto.csvschema.parse_path`, whatever comes before ``patientN`` -- so a
  prediction on ``CheXphoto-v1.0/valid/natural/patient64541/study1/view1_frontal.jpg`` is scored
  against the label of ``CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg``. At study
  level the key is (patient, study).
* **Study level.** The label of a study is the most positive label among its views (positive >
  uncertain > negative/blank; CheXpert valid/test labels are per study, so the views agree and this
  only matters for inconsistent CSVs). Image-level predictions are aggregated by the *maximum*
  over the study's views, as the competition does; a ``Study`` column is already one row per study.
* **Labels.** Uncertain labels (-1) are left out of that task's score and counted
  (``excluded_uncertain``); blank labels count as negative.
* **Strictness.** A prediction without a label is an error (it names the rows). Labels without a
  prediction are an error too unless ``allow_missing=True``: a number computed on a silently
  smaller set is not the number a reader thinks it is. With ``allow_missing`` they are counted in
  ``counts.unmatched_labels`` and a warning.
* **Undefined AUROC.** A task whose scored labels are all of one class has no AUROC: it is
  reported with ``auroc: null``, ``ci: [null, null]`` and a ``note``, never a crash. The mean over
  the five competition tasks is then undefined as well (``null`` and a note): a mean over four
  tasks would be silently incomparable with every other mean over five.
* **Bootstrap.** Each replicate draws as many *patients* as there are, with replacement; all
  images (or studies) of a drawn patient come along, as many times as the patient was drawn. This
  is done as integer weights per patient (how often each was drawn), so every task and the mean
  are computed on the same resample. AUROC is the Mann-Whitney statistic with ties counted one half,
  computed for a whole block of weighted replicates at once on data sorted once. Replicates in
  which a task has only one class are skipped for that task (counted in ``bootstrap.skipped``);
  the CI is the 2.5 and 97.5 percentiles of the remaining replicates. The random stream is
  derived from the seed alone (:func:`chexphoto.seeding.derive_rng`) and patients are numbered
  in sorted order, so the result does not depend on row order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chexphoto.csvschema import (
    COMPETITION_TASKS,
    OBSERVATIONS,
    CSVFormatError,
    PathParseError,
    csv_line_number,
    parse_path,
    read_csv,
    validate,
)
from chexphoto.seeding import derive_rng

LEVELS = ("image", "study")
KEY_COLUMNS = {"image": ("patient", "study", "view"), "study": ("patient", "study")}
#: Replicates computed per block; fixed (not data-dependent) so the random stream does not depend
#: on the data size, and small enough to bound memory (a few rows x block float arrays).
REPLICATE_BLOCK = 100
CI_LEVEL = 0.95
#: How many offending keys an error message lists.
EXAMPLES = 3

PathOrFrame = str | os.PathLike | pd.DataFrame


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


def plural_unit(level: str) -> str:
    """"images" / "studies": what is counted at an evaluation level."""
    return "studies" if level == "study" else f"{level}s"


def _source_name(path_or_df: PathOrFrame, default: str) -> str | None:
    return None if isinstance(path_or_df, pd.DataFrame) else str(path_or_df) if path_or_df else default


def parse_study_path(path: str) -> tuple[str, str]:
    """(patient, study) from a study path such as ``CheXpert-v1.0/valid/patient64541/study1``.

    >>> parse_study_path("CheXpert-v1.0/valid/patient64541/study1")
    ('patient64541', 'study1')
    """
    # A study path is an image path without the file name: reuse parse_path's exact rules by
    # appending a placeholder file name.
    try:
        key = parse_path(f"{str(path).rstrip('/')}/_")
    except PathParseError:
        raise PathParseError(
            f"cannot find patient/study in study path {path!r} (expected .../patientNNNNN/studyN)"
        ) from None
    return key.patient, key.study


def _read_text_csv(path: str | os.PathLike) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError as exc:
        raise CSVFormatError("file not found", file=str(path)) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CSVFormatError(f"not a readable CSV: {exc}", file=str(path)) from exc


def prediction_level(predictions: pd.DataFrame) -> str:
    """``"image"`` for a ``Path`` column, ``"study"`` for a ``Study`` column."""
    return "image" if "Path" in predictions.columns else "study"


def load_predictions(path_or_df: PathOrFrame) -> pd.DataFrame:
    """Read and validate a predictions CSV (or DataFrame).

    The input has a ``Path`` column (one row per image) or a ``Study`` column (one row per study)
    and one probability column per task, named as in CheXpert; other columns are ignored. Returns
    a new DataFrame with the key column, ``patient``, ``study`` (and ``view`` for ``Path``) and the
    task columns as floats, in input order.

    Raises :class:`~chexphoto.csvschema.CSVFormatError` naming file, row and column for: no or
    both key columns, no task column, a path without patient/study(/view), a probability that is
    not a number, NaN/blank or outside [0, 1], and two rows for the same image or study.
    """
    file = _source_name(path_or_df, "predictions")
    df = path_or_df.copy() if isinstance(path_or_df, pd.DataFrame) else _read_text_csv(path_or_df)
    has_path, has_study = "Path" in df.columns, "Study" in df.columns
    if has_path and has_study:
        raise CSVFormatError("has both 'Path' and 'Study' columns: a predictions file is per image (Path) "
                             "or per study (Study); drop the other column", file=file)
    if not (has_path or has_study):
        raise CSVFormatError("no 'Path' (image level) or 'Study' (study level) column", file=file)
    key_column = "Path" if has_path else "Study"
    tasks = [c for c in OBSERVATIONS if c in df.columns]
    if not tasks:
        raise CSVFormatError(
            "no task column: expected probability columns named as in CheXpert "
            f"(e.g. {', '.join(repr(t) for t in COMPETITION_TASKS)})", file=file)
    if df.empty:
        raise CSVFormatError("no prediction rows", file=file)

    out = pd.DataFrame({key_column: df[key_column].astype(str).to_numpy()})
    keys = []
    for pos, value in enumerate(out[key_column].tolist()):
        try:
            if has_path:
                key = parse_path(value)
                keys.append((key.patient, key.study, key.view))
            else:
                keys.append(parse_study_path(value))
        except PathParseError as exc:
            raise CSVFormatError(str(exc), file=file, row=csv_line_number(file, pos), column=key_column) from None
    names = KEY_COLUMNS["image" if has_path else "study"]
    for i, name in enumerate(names):
        out[name] = [k[i] for k in keys]

    for task in tasks:
        raw = df[task]
        text = raw.astype(str).str.strip().where(~raw.isna(), "")
        values = pd.to_numeric(text.where(text != "", "nan"), errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            shown = raw.iloc[pos]
            if text.iloc[pos] == "":
                reason = "probability is missing (blank or NaN)"
            elif math.isnan(values[pos]) and text.iloc[pos].lower() != "nan":
                reason = f"probability {shown!r} is not a number"
            elif math.isnan(values[pos]):
                reason = "probability is NaN"
            else:
                reason = f"probability {float(values[pos])!r} is outside [0, 1]"
            n_bad = int(bad.sum())
            more = f" ({n_bad - 1} more bad value(s) in this column)" if n_bad > 1 else ""
            raise CSVFormatError(reason + more, file=file, row=csv_line_number(file, pos), column=task)
        out[task] = values

    duplicated = pd.Series(keys).duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        rows = [csv_line_number(file, i) for i in np.flatnonzero(duplicated) if keys[i] == keys[first]]
        what = "image" if has_path else "study"
        raise CSVFormatError(
            f"duplicated key {'/'.join(keys[first])}: rows {', '.join(map(str, rows))} are predictions "
            f"for the same {what} (keys are read from the path, so copies of one x-ray collide)",
            file=file, row=rows[0], column=key_column)
    return out


def load_labels(path_or_df: PathOrFrame) -> pd.DataFrame:
    """Read and validate a CheXpert-format label CSV (or DataFrame).

    Returns ``Path``, ``patient``, ``study``, ``view`` and the observation columns as floats
    (1 positive, 0 negative, -1 uncertain, NaN blank), one row per image. Rows repeating an image
    (e.g. two copies of one x-ray) are merged when their labels agree and are an error otherwise.
    """
    file = _source_name(path_or_df, "labels")
    if isinstance(path_or_df, pd.DataFrame):
        df = path_or_df.copy()
        for column in df.columns:
            if column in OBSERVATIONS:
                df[column] = df[column].map(lambda v: "" if pd.isna(v) else str(v))
    else:
        df = read_csv(path_or_df)
    validate(df, file, require_keys=False)  # keys are parsed (once) just below
    observations = [c for c in OBSERVATIONS if c in df.columns]
    if not observations:
        raise CSVFormatError("no label column (CheXpert observation names)", file=file)
    keys = []
    for pos, value in enumerate(df["Path"].astype(str).tolist()):
        try:
            keys.append(parse_path(value))
        except PathParseError as exc:
            raise CSVFormatError(str(exc), file=file, row=csv_line_number(file, pos), column="Path") from None
    out = pd.DataFrame({
        "Path": df["Path"].astype(str).to_numpy(),
        "patient": [k.patient for k in keys],
        "study": [k.study for k in keys],
        "view": [k.view for k in keys],
    })
    for column in observations:
        text = df[column].astype(str).str.strip()
        # validate() has checked every value, so anything unparsable here is a blank
        out[column] = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)

    key_cols = list(KEY_COLUMNS["image"])
    dup = out.duplicated(key_cols, keep=False).to_numpy()
    if dup.any():
        # Same image twice: fine when the labels agree (e.g. a CSV listing several copies).
        same = out.duplicated(key_cols + observations, keep="first").to_numpy()
        conflicting = out[dup].groupby(key_cols, sort=False)[observations].nunique(dropna=False)
        conflicting = conflicting[(conflicting > 1).any(axis=1)]
        if not conflicting.empty:
            key = conflicting.index[0]
            rows = [csv_line_number(file, i) for i in np.flatnonzero(
                (out["patient"] == key[0]) & (out["study"] == key[1]) & (out["view"] == key[2]))]
            raise CSVFormatError(
                f"image {'/'.join(key)} appears in rows {', '.join(map(str, rows))} with different labels",
                file=file, row=rows[0])
        out = out[~same].reset_index(drop=True)
    return out


def resolve_tasks(tasks: str | Iterable[str]) -> tuple[str, ...]:
    """``"competition"`` (the 5 competition tasks), ``"all"`` (the 14 observations), a
    comma-separated string or a sequence of CheXpert observation names."""
    if isinstance(tasks, str):
        if tasks == "competition":
            return tuple(COMPETITION_TASKS)
        if tasks == "all":
            return tuple(OBSERVATIONS)
        names = [t.strip() for t in tasks.split(",") if t.strip()]
    else:
        names = list(tasks)
    unknown = [t for t in names if t not in OBSERVATIONS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {', '.join(map(repr, unknown)) or '(none given)'}: use "
                         "'competition', 'all' or CheXpert observation names")
    return tuple(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """Labels and predictions matched at one level, ready to score."""

    level: str
    tasks: tuple[str, ...]
    keys: list[tuple[str, ...]]  # sorted
    patient_codes: np.ndarray  # int, patients numbered in sorted order
    n_patients: int
    labels: dict[str, np.ndarray]  # per task: 1 / 0 / -1 (blank already 0)
    scores: dict[str, np.ndarray]
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def subset(self, keep: np.ndarray) -> Scored:
        """The same data restricted to the rows where ``keep`` is true (patients renumbered)."""
        keys = [k for k, ok in zip(self.keys, keep, strict=True) if ok]
        patients = sorted({k[0] for k in keys})
        codes = {p: i for i, p in enumerate(patients)}
        counts = dict(self.counts, scored=len(keys), patients=len(patients))
        return Scored(self.level, self.tasks, keys, np.array([codes[k[0]] for k in keys], dtype=np.intp),
                      len(patients), {t: v[keep] for t, v in self.labels.items()},
                      {t: v[keep] for t, v in self.scores.items()}, counts, list(self.warnings))


def study_labels(labels: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per (patient, study): the most positive label over its views
    (positive > uncertain > negative/blank), blank only when every view is blank."""
    rank = pd.DataFrame({"patient": labels["patient"], "study": labels["study"]})
    for task in tasks:
        v = labels[task].to_numpy()
        rank[task] = np.select([v == 1, v == -1, v == 0], [3, 2, 1], default=0)
    best = rank.groupby(["patient", "study"], sort=True)[list(tasks)].max()
    decode = np.array([np.nan, 0.0, -1.0, 1.0])
    out = best.reset_index()
    for task in tasks:
        out[task] = decode[best[task].to_numpy()]
    return out


def _unmatched_message(n: int, what: str, examples: list[str], hint: str = "") -> str:
    shown = ", ".join(repr(e) for e in examples[:EXAMPLES])
    more = f" and {n - EXAMPLES} more" if n > EXAMPLES else ""
    return f"{n} {what}: {shown}{more}{hint}"


def match(labels: PathOrFrame, predictions: PathOrFrame, *, level: str = "image",
          tasks: str | Iterable[str] = "competition", allow_missing: bool = False) -> Scored:
    """Load, validate and match labels and predictions at ``level`` (see the module docstring)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    task_names = resolve_tasks(tasks)
    pred_file = _source_name(predictions, "predictions") or "predictions"
    label_file = _source_name(labels, "labels") or "labels"
    preds = load_predictions(predictions)
    labs = load_labels(labels)

    missing = [t for t in task_names if t not in preds.columns]
    if missing:
        hint = " (or evaluate fewer tasks with --tasks competition)" if len(task_names) > 5 else ""
        raise CSVFormatError(f"missing task column(s) {', '.join(map(repr, missing))}{hint}", file=pred_file)
    missing = [t for t in task_names if t not in labs.columns]
    if missing:
        raise CSVFormatError(f"missing label column(s) {', '.join(map(repr, missing))}", file=label_file)

    pred_level = prediction_level(preds)
    if pred_level == "study" and level == "image":
        raise ValueError(f"{pred_file}: has study-level predictions (a 'Study' column); "
                         "evaluate them with --level study")
    key_cols = list(KEY_COLUMNS[level])
    n_predictions = len(preds)
    if level == "study":
        labs = study_labels(labs, task_names)
        if pred_level == "image":
            # The competition scores a study by the maximum probability over its views.
            preds = preds.groupby(key_cols, sort=True)[list(task_names)].max().reset_index()
        preds["_shown"] = preds["patient"] + "/" + preds["study"]
    else:
        preds["_shown"] = preds["Path"]

    label_keys = pd.MultiIndex.from_frame(labs[key_cols])
    pred_keys = pd.MultiIndex.from_frame(preds[key_cols])
    has_label = pred_keys.isin(label_keys)
    if not has_label.all():
        examples = preds.loc[~has_label, "_shown"].tolist()
        raise CSVFormatError(_unmatched_message(
            len(examples), f"prediction(s) match no labelled {level} in {label_file}", examples,
            " (keys are patient/study/view read from the paths)" if level == "image" else ""),
            file=pred_file)
    has_pred = label_keys.isin(pred_keys)
    warnings: list[str] = []
    n_unmatched = int((~has_pred).sum())
    if n_unmatched:
        shown = (labs.loc[~has_pred, "Path"].tolist() if level == "image" else
                 (labs.loc[~has_pred, "patient"] + "/" + labs.loc[~has_pred, "study"]).tolist())
        message = _unmatched_message(n_unmatched, f"labelled {level}(s) have no prediction", shown)
        if not allow_missing:
            raise CSVFormatError(message + "; pass --allow-missing to score only "
                                 "the predicted ones", file=pred_file)
        warnings.append(message + "; they are left out of the scores")

    merged = preds[key_cols + list(task_names)].merge(
        labs.loc[has_pred, key_cols + list(task_names)], on=key_cols, how="inner",
        suffixes=("_pred", "_label"), validate="one_to_one",
    ).sort_values(key_cols, kind="stable").reset_index(drop=True)
    keys = list(merged[key_cols].itertuples(index=False, name=None))
    patients = sorted(set(merged["patient"]))
    codes = {p: i for i, p in enumerate(patients)}
    label_arrays = {t: np.nan_to_num(merged[f"{t}_label"].to_numpy(dtype=float), nan=0.0) for t in task_names}
    score_arrays = {t: merged[f"{t}_pred"].to_numpy(dtype=float) for t in task_names}
    counts = {"predictions": n_predictions, "labels": len(labs), "scored": len(keys),
              "patients": len(patients), "unmatched_labels": n_unmatched}
    return Scored(level, task_names, keys, np.array([codes[k[0]] for k in keys], dtype=np.intp),
                  len(patients), label_arrays, score_arrays, counts, warnings)


# ---------------------------------------------------------------------------------------------
# AUROC (weighted Mann-Whitney, vectorised over replicates)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskData:
    """One task's scored rows split into positives and negatives, prepared once and reused by
    every replicate.

    Negatives are sorted by score; for each positive, ``below``/``through`` count the negatives
    scoring strictly lower / lower-or-equal (``searchsorted``), so with ``C`` the cumulative
    negative weight (``C[k]`` = weight of the first ``k`` sorted negatives) a positive beats
    ``C[below] + (C[through] - C[below]) / 2 = (C[below] + C[through]) / 2`` negatives (ties half).
    """

    positive_units: np.ndarray  # resampling unit (patient code) of each positive
    negative_units: np.ndarray  # unit of each negative, negatives sorted by score
    below: np.ndarray  # per positive: negatives with a strictly lower score
    through: np.ndarray  # per positive: negatives with a lower or equal score
    n: int
    positives: int
    excluded_uncertain: int

    @classmethod
    def build(cls, labels: np.ndarray, scores: np.ndarray, units: np.ndarray) -> TaskData:
        """``labels``: 1 / 0 / -1 (uncertain, left out); ``units``: the resampling unit of each row."""
        labels = np.asarray(labels, dtype=float)
        scores = np.asarray(scores, dtype=float)
        pos = np.flatnonzero(labels == 1)
        neg = np.flatnonzero(labels == 0)
        neg = neg[np.argsort(scores[neg], kind="stable")]
        neg_scores = scores[neg]
        below = np.searchsorted(neg_scores, scores[pos], side="left")
        through = np.searchsorted(neg_scores, scores[pos], side="right")
        return cls(units[pos], units[neg], below, through, int(pos.size + neg.size), int(pos.size),
                   int((labels == -1).sum()))


def weighted_auroc(task: TaskData, unit_weights: np.ndarray) -> np.ndarray:
    """AUROC for each column of ``unit_weights`` (units x replicates): every row counted as many
    times as the weight of its unit -- exactly the bootstrap AUROC when the weights are how often
    each patient was drawn.

    AUROC = P(positive scores higher than negative) + 1/2 P(equal) (Mann-Whitney U / (n+ n-)).
    The units x replicates layout keeps every gather and cumulative sum on contiguous rows.
    Returns NaN for replicates without positive or without negative weight.
    """
    unit_weights = np.asarray(unit_weights, dtype=np.float64)
    replicates = unit_weights.shape[1]
    pos_w = unit_weights[task.positive_units]  # (positives, replicates)
    cum_neg = np.zeros((task.negative_units.size + 1, replicates))
    np.cumsum(unit_weights[task.negative_units], axis=0, out=cum_neg[1:])
    # Integer weights: every sum below is exact in float64 (halves included) until one division.
    beaten = cum_neg[task.below] + cum_neg[task.through]
    concordant = 0.5 * np.einsum("ij,ij->j", pos_w, beaten)
    total = pos_w.sum(axis=0) * cum_neg[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, concordant / np.where(total > 0, total, 1.0), np.nan)


def auroc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` (1/0; -1 ignored) for ``scores``; NaN with
    one class.

    Rank-based (Mann-Whitney U with ties counted one half); equal to
    ``sklearn.metrics.roc_auc_score`` to rounding.
    """
    labels = np.asarray(labels, dtype=float)
    task = TaskData.build(labels, scores, np.zeros(labels.size, dtype=np.intp))
    return float(weighted_auroc(task, np.ones((1, 1)))[0])


def patient_counts(rng: np.random.Generator, n_patients: int, replicates: int) -> np.ndarray:
    """How many times each patient is drawn in each replicate, as a (patients x replicates)
    float array: each replicate draws ``n_patients`` patients uniformly with replacement."""
    if n_patients == 0:
        return np.zeros((0, replicates))
    drawn = rng.integers(0, n_patients, size=(replicates, n_patients))
    flat = (drawn + (np.arange(replicates) * n_patients)[:, None]).ravel()
    counts = np.bincount(flat, minlength=replicates * n_patients).reshape(replicates, n_patients)
    return np.ascontiguousarray(counts.T, dtype=np.float64)


def bootstrap_rng(seed: int) -> np.random.Generator:
    """The bootstrap's random stream for ``seed`` (shared by evaluate and compare so a condition
    gets the same CI from both on the same keys)."""
    return derive_rng("evaluation-bootstrap", int(seed))


def replicate_blocks(n_patients: int, replicates: int, seed: int):
    """Yield blocks of patient counts (patients x block), ``replicates`` columns in all."""
    rng = bootstrap_rng(seed)
    done = 0
    while done < replicates:
        size = min(REPLICATE_BLOCK, replicates - done)
        yield patient_counts(rng, n_patients, size)
        done += size


def percentile_ci(values: np.ndarray) -> list[float | None]:
    """The central ``CI_LEVEL`` percentile interval of the finite ``values``; [None, None] if none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [None, None]
    alpha = (1 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(values, [alpha, 100 - alpha])
    return [float(lo), float(hi)]


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def advance(self, *args, **kwargs):
        pass


def progress_bar(enabled: bool, replicates: int):
    """A Rich progress bar over bootstrap replicates, or a no-op.

    Off by default in the library: Rich allows one live display at a time, and callers such as
    ``benchmark`` run evaluate under their own bar."""
    if not enabled or replicates <= 0:
        return _NoProgress()
    from chexphoto.progress import make_progress

    return make_progress("replicates")


# ---------------------------------------------------------------------------------------------
# Evaluate
# ---------------------------------------------------------------------------------------------


def bootstrap_distributions(conditions: Mapping[str, Scored], replicates: int, seed: int, *,
                            progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap AUROC per task (and ``"__mean__"`` over the competition tasks) for each condition,
    all on the *same* patient resamples. Every condition must have the same keys.

    Returns ``{condition: {task: array(replicates)}}`` with NaN for skipped replicates.
    """
    first = next(iter(conditions.values()))
    for name, scored in conditions.items():
        if scored.keys != first.keys:
            raise ValueError(f"condition {name!r} is not on the same keys as the first condition")
    prepared = {name: {t: TaskData.build(s.labels[t], s.scores[t], s.patient_codes) for t in s.tasks}
                for name, s in conditions.items()}
    dists = {name: {t: np.empty(replicates) for t in s.tasks} for name, s in conditions.items()}
    done = 0
    with progress_bar(progress, replicates) as bar:
        task_id = bar.add_task("bootstrap", total=replicates)
        for counts in replicate_blocks(first.n_patients, replicates, seed):
            size = counts.shape[1]
            for name, tasks in prepared.items():
                for t, data in tasks.items():
                    dists[name][t][done:done + size] = weighted_auroc(data, counts)
            done += size
            bar.advance(task_id, size)
    for name, s in conditions.items():
        dists[name]["__mean__"] = (np.mean([dists[name][t] for t in COMPETITION_TASKS], axis=0)
                                   if set(COMPETITION_TASKS) <= set(s.tasks) else np.full(replicates, np.nan))
    return dists


def summarize(scored: Scored, dist: Mapping[str, np.ndarray] | None, *, replicates: int,
              seed: int) -> dict:
    """The evaluate result (JSON-able) from matched data and its bootstrap distributions."""
    result_tasks: dict[str, dict] = {}
    skipped: dict[str, int] = {}
    point: dict[str, float] = {}
    for t in scored.tasks:
        data = TaskData.build(scored.labels[t], scored.scores[t], scored.patient_codes)
        value = float(weighted_auroc(data, np.ones((scored.n_patients, 1)))[0])
        point[t] = value
        entry = {"auroc": _num(value),
                 "ci": percentile_ci(dist[t]) if dist is not None and math.isfinite(value) else [None, None],
                 "n": data.n, "positives": data.positives, "excluded_uncertain": data.excluded_uncertain}
        if not math.isfinite(value):
            entry["note"] = (f"undefined: one class only (all {data.n} {'positive' if data.positives else 'negative'})"
                             if data.n else "undefined: no scored labels")
        result_tasks[t] = entry
        skipped[t] = int(np.isnan(dist[t]).sum()) if dist is not None else 0

    warnings = list(scored.warnings)
    mean: dict = {"auroc": None, "ci": [None, None]}
    if not set(COMPETITION_TASKS) <= set(scored.tasks):
        mean["note"] = "undefined: not all five competition tasks were evaluated"
    else:
        undefined = [t for t in COMPETITION_TASKS if not math.isfinite(point[t])]
        if undefined:
            mean["note"] = f"undefined: {', '.join(undefined)} undefined"
            warnings.append(f"mean AUROC undefined because {', '.join(undefined)} has one class only")
        else:
            mean["auroc"] = float(np.mean([point[t] for t in COMPETITION_TASKS]))
            if dist is not None:
                mean["ci"] = percentile_ci(dist["__mean__"])
        skipped["mean"] = int(np.isnan(dist["__mean__"]).sum()) if dist is not None else 0
    for t, k in skipped.items():
        defined = mean["auroc"] is not None if t == "mean" else result_tasks[t]["auroc"] is not None
        if k and replicates and defined:
            warnings.append(f"{k} of {replicates} bootstrap replicates had one class only for "
                            f"{t} and were skipped for it")
    return {
        "level": scored.level,
        "tasks": result_tasks,
        "mean": mean,
        "bootstrap": {"replicates": int(replicates), "seed": int(seed), "resampling": "patient",
                      "ci_level": CI_LEVEL, "skipped": skipped},
        "counts": dict(scored.counts),
        "warnings": warnings,
    }


def evaluate(labels: PathOrFrame, predictions: PathOrFrame, *, level: str = "image",
             tasks: str | Iterable[str] = "competition", bootstrap: int = 1000, seed: int = 0,
             allow_missing: bool = False, progress: bool = False) -> dict:
    """AUROC per task and the mean over the competition tasks, with patient-bootstrap 95% CIs.

    ``labels``: a CheXpert-format CSV path or DataFrame; ``predictions``: a predictions CSV path
    or DataFrame (see :func:`load_predictions`). ``level``: ``"image"`` or ``"study"``.
    ``tasks``: see :func:`resolve_tasks`. ``bootstrap``: number of replicates (0: no CIs).

    Returns ``{"level", "tasks": {task: {"auroc", "ci": [lo, hi], "n", "positives",
    "excluded_uncertain"[, "note"]}}, "mean": {"auroc", "ci"[, "note"]}, "bootstrap": {...},
    "counts": {...}, "warnings": [...]}``; undefined values are ``None``.
    """
    if int(bootstrap) < 0:
        raise ValueError(f"bootstrap must be >= 0, not {bootstrap}")
    scored = match(labels, predictions, level=level, tasks=tasks, allow_missing=allow_missing)
    dist = (bootstrap_distributions({"_": scored}, int(bootstrap), seed, progress=progress)["_"]
            if bootstrap else None)
    return summarize(scored, dist, replicates=int(bootstrap), seed=seed)
