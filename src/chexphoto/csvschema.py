"""The CheXpert CSV format: columns, label values, and what a ``Path`` says about an image.

A CheXpert (or CheXphoto) CSV has the columns ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the
14 observations. Labels are ``1.0`` positive, ``-1.0`` uncertain, ``0.0`` negative, blank = not
mentioned. Extra columns are allowed and kept.

CSV files are read with every cell as *text* (``dtype=str``, blanks kept as ``""``) so that a
dataset we write carries the input's values byte for byte (``1.0`` stays ``1.0``, ``1`` stays
``1``); numeric views are made only where numbers are needed.

Paths look like ``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`` or, in
CheXphoto, ``CheXphoto-v1.0/train/synthetic/digital/patient00001/study1/view1_frontal.jpg``.
:func:`parse_path` finds the patient, study and view from such a path, whatever comes before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pandas as pd

METADATA_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five tasks of the CheXpert competition (and of CheXphoto's leaderboard).
COMPETITION_TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
LABEL_VALUES = (POSITIVE, NEGATIVE, UNCERTAIN)

SPLITS = ("train", "valid", "test")

_PATIENT_RE = re.compile(r"^patient[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*$", re.IGNORECASE)
_STUDY_RE = re.compile(r"^study[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*$", re.IGNORECASE)


class CSVFormatError(ValueError):
    """A CSV that is not in CheXpert format; the message names file, row and column."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
        self.file, self.row, self.column, self.reason = file, row, column, message


class PathParseError(ValueError):
    """A path from which no patient / study / view can be read."""


@dataclass(frozen=True, order=True)
class ImageKey:
    """Identity of one x-ray, independent of which copy (CheXpert, a synthetic set, a photo)."""

    patient: str
    study: str
    view: str  # file name without extension, e.g. "view1_frontal"
    split: str | None = None  # train / valid / test when the path says so

    @property
    def study_key(self) -> tuple[str, str]:
        return (self.patient, self.study)

    @property
    def match_key(self) -> tuple[str, str, str]:
        """What links a photo or a transformed copy to its source labels."""
        return (self.patient, self.study, self.view)


def path_parts(path: str) -> list[str]:
    """Split a CSV ``Path`` into components (``/`` or ``\\``), dropping empty and ``.`` parts."""
    return [p for p in str(path).replace("\\", "/").split("/") if p not in ("", ".")]


def parse_path(path: str) -> ImageKey:
    """Read patient, study, view (and split, when present) from an image path.

    The *last* ``patientN`` component followed directly by a ``studyN`` component and a file name
    is used; the split is the nearest ``train``/``valid``/``test`` component before the patient.

    >>> parse_path("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    ImageKey(patient='patient00001', study='study1', view='view1_frontal', split='train')
    """
    parts = path_parts(path)
    for i in range(len(parts) - 3, -1, -1):
        if _PATIENT_RE.match(parts[i]) and _STUDY_RE.match(parts[i + 1]):
            filename = parts[i + 2]
            if i + 3 != len(parts):
                continue  # something between study and file: not the CheXpert layout
            view = os.path.splitext(filename)[0]
            if not view or view.startswith("."):
                raise PathParseError(f"no view file name in path {path!r}")
            split = next((p.lower() for p in reversed(parts[:i]) if p.lower() in SPLITS), None)
            return ImageKey(parts[i], parts[i + 1], view, split)
    raise PathParseError(
        f"cannot find patient/study/view in path {path!r} "
        "(expected .../patientNNNNN/studyN/viewN_frontal.jpg)"
    )


def split_from_path(path: str) -> str | None:
    """``train``/``valid``/``test`` as named in the path, else ``None``."""
    try:
        return parse_path(path).split
    except PathParseError:
        parts = [p.lower() for p in path_parts(path)]
        return next((p for p in reversed(parts) if p in SPLITS), None)


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV with every cell as text, blanks as ``""``; requires a ``Path`` column.

    Raises :class:`CSVFormatError` for unreadable files and missing ``Path``.
    """
    path = str(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError as exc:
        raise CSVFormatError("file not found", file=path) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CSVFormatError(f"not a readable CSV: {exc}", file=path) from exc
    if "Path" not in df.columns:
        raise CSVFormatError("no 'Path' column (not a CheXpert-format CSV)", file=path, column="Path")
    _refuse_duplicate_columns(path)
    return df


def _refuse_duplicate_columns(path: str) -> None:
    """pandas silently renames a repeated column to ``X.1``; a label table must not be ambiguous."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # pandas read it; nothing more to learn from the header
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise CSVFormatError("column appears more than once in the header", file=path, row=1, column=name)
        seen.add(name)


def parse_label(value: str) -> float | None:
    """Parse one label cell: ``None`` for blank; ``1.0``/``0.0``/``-1.0`` otherwise.

    Raises ``ValueError`` for anything else.
    """
    text = str(value).strip()
    if text == "" or text.lower() == "nan":
        return None
    number = float(text)
    if number not in LABEL_VALUES:
        raise ValueError(f"label {value!r} is not one of 1, 0, -1 or blank")
    return number


def label_columns(df: pd.DataFrame) -> list[str]:
    """The observation columns present in ``df``, in CheXpert order."""
    return [c for c in OBSERVATIONS if c in df.columns]


def csv_row_number(index: int) -> int:
    """Row number as a person counts it in the file (header is row 1, first data row is row 2)."""
    return int(index) + 2


def csv_line_number(file: str | os.PathLike | None, position: int) -> int:
    """Line of ``file`` on which data row ``position`` (0-based, as :func:`read_csv` numbers rows) starts.

    Equal to :func:`csv_row_number` for an ordinary file; differs when the file has blank lines
    (which ``pandas.read_csv`` skips) or quoted cells spanning several lines, so an error message
    points at the line a person sees in an editor. Only called when reporting an error (it re-reads
    the file); falls back to :func:`csv_row_number` when ``file`` is not a readable file.
    """
    import csv

    fallback = csv_row_number(position)
    if file is None or not os.path.isfile(file):
        return fallback
    try:
        with open(file, encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh)
            record, previous_line = -1, 0  # record -1 is the header
            for row in reader:
                blank = not row or (len(row) == 1 and not row[0].strip())
                if not blank:  # pandas skips blank (and whitespace-only) lines
                    if record == position:
                        return previous_line + 1
                    record += 1
                previous_line = reader.line_num
    except (OSError, csv.Error):
        return fallback
    return fallback


def validate(df: pd.DataFrame, file: str | None = None, *, require_keys: bool = True) -> None:
    """Check label values and (optionally) that every path has a patient/study/view.

    Raises :class:`CSVFormatError` naming the first bad file/row/column.
    """
    if "Path" not in df.columns:
        raise CSVFormatError("no 'Path' column (not a CheXpert-format CSV)", file=file, column="Path")
    for column in label_columns(df):
        values = df[column].astype(str).str.strip()
        ok = values.isin(["", "1", "0", "-1", "1.0", "0.0", "-1.0", "nan"])
        if not ok.all():
            # slow path only for the unusual spellings (e.g. "1.00", "-0")
            for idx in values.index[~ok]:
                try:
                    parse_label(values[idx])
                except ValueError:
                    raise CSVFormatError(
                        f"label value {df.at[idx, column]!r} is not one of 1, 0, -1 or blank",
                        file=file, row=csv_line_number(file, df.index.get_loc(idx)), column=column,
                    ) from None
    if require_keys:
        for pos, value in enumerate(df["Path"].tolist()):
            try:
                parse_path(value)
            except PathParseError as exc:
                raise CSVFormatError(str(exc), file=file, row=csv_line_number(file, pos), column="Path") from None


def numeric_labels(df: pd.DataFrame, columns: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """Label columns as floats (blank -> NaN). Assumes :func:`validate` passed."""
    columns = list(columns) if columns is not None else label_columns(df)

    def to_float(column: pd.Series) -> pd.Series:
        # blanks (and the text "nan") become missing values first: pandas >= 3 no longer parses
        # the string "nan" in to_numeric
        text = column.astype(str).str.strip()
        blank = text.eq("") | text.str.lower().eq("nan")
        return pd.to_numeric(text.where(~blank, None)).astype("float64")

    return pd.DataFrame({column: to_float(df[column]) for column in columns}, index=df.index)
