"""Compile exported phone photos into a labelled natural-photo dataset, proving every label.

Two ways of telling which CSV row a photo shows:

* **by name** (automated capture): the camera saved each photo under the CheXpeditor name
  ``{seq}__{nonce}__{parts of the CSV Path}`` (plus ``.jpg`` when the path had another extension).
  A row is proven when exactly one file carries its sequence number (= its 0-based row index) and
  that file's embedded path equals the row's ``Path``.
* **by time** (manual capture, any phone): the controller logged when each row was on screen
  (``row,path,shown_at,hidden_at``); a photo is assigned to a row when its EXIF capture time
  (corrected by ``clock_offset``) falls inside exactly one row's interval, away from the
  transitions by a ``guard`` margin.

Every photo must also be a decodable, complete JPEG. Whatever cannot be proven is a *problem*
(listed in ``<name>.report.json`` and printed); rows that need a new photo are written to
``recapture.csv`` (the input rows, same columns) in the set's own folder (one per set, so two sets
in one split never overwrite each other's list). Without ``allow_missing`` nothing
is compiled when there is any problem; with it, the proven rows are compiled and the rest left out.
No label is ever assigned from a guess.

Output (``out`` = the dataset folder, e.g. ``MyPhotos``)::

    <out>/<split>/natural/<name>/<patient>/<study>/<view>.jpg   byte-identical copies of the photos
    <out>/<split>/natural/<name>.csv                             input columns, Path rewritten
    <out>/<split>/natural/<name>.report.json                     what was compiled, every problem
    <out>/<split>/natural/<name>/recapture.csv                   rows to shoot again (if any)

The new ``Path`` is relative to the parent of ``out``, like the synthetic sets:
``MyPhotos/valid/natural/iphone/patient64541/study1/view1_frontal.jpg``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd
from PIL import Image

from chexphoto.capture.exif_time import (
    ExifTimeError,
    ShownInterval,
    read_capture_time,
    read_show_log,
)
from chexphoto.capture.naming import FilenameError, parse_filename, strip_photo_extension
from chexphoto.csvschema import PathParseError, parse_path, path_parts, read_csv, split_from_path, validate
from chexphoto.fsutil import atomic_write_bytes, atomic_write_text, resolve_inside
from chexphoto.imageio import DEFAULT_MAX_PIXELS
from chexphoto.progress import make_progress

PHOTO_SUFFIXES = (".jpg", ".jpeg")
DEFAULT_GUARD_S = 0.25

# Problem kinds (stable names: they appear in the report and the docs).
MISSING = "missing"  # row: no photo
DUPLICATE = "duplicate"  # row: more than one photo
PATH_MISMATCH = "path_mismatch"  # row: the photo named with its seq carries another row's path
CORRUPT = "corrupt"  # row: its photo is not a complete, decodable JPEG
OUT_OF_RANGE = "out_of_range"  # file: shows a row outside --rows
UNPARSABLE = "unparsable"  # file: not a (safe) CheXpeditor photo name
STRAY = "stray"  # file: not a photo (folder, link, other extension)
NO_CAPTURE_TIME = "no_capture_time"  # file: no EXIF capture time (match by time)
BETWEEN_FRAMES = "between_frames"  # file: taken while no row was on screen
GUARD_ZONE = "guard_zone"  # file: taken too close to a transition between rows
OUTSIDE_LOG = "outside_log"  # file: taken before the first or after the last logged row
AMBIGUOUS_TIME = "ambiguous_time"  # file: its time fits more than one row (overlapping log, zones)
LOG_MISMATCH = "log_mismatch"  # file/log: the log's path for a row is not the CSV's
LOG_LINE = "log_line"  # log: a line that cannot be used
BAD_CSV_ROW = "bad_csv_row"  # row: its Path cannot be placed (no patient/study/view, duplicate)

#: problems for which shooting the row again helps
RECAPTURE_KINDS = frozenset({MISSING, DUPLICATE, PATH_MISMATCH, CORRUPT})


@dataclass(frozen=True)
class Problem:
    """One thing that stops a row or a file from being compiled."""

    kind: str
    message: str
    row: int | None = None  # 0-based data row index in the CSV
    files: tuple[str, ...] = ()  # export file names involved

    def describe(self) -> str:
        """One terminal line (names with control characters are shown escaped)."""
        shown = ", ".join(f if f.isprintable() else repr(f) for f in self.files)
        where = f"row {self.row}" if self.row is not None else shown or "log"
        message = self.message if self.message.isprintable() else repr(self.message)
        return f"{self.kind:16s} {where}: {message}"


@dataclass
class CompileResult:
    """What :func:`compile_export` did; ``exit_code`` is 0 (all proven or allowed) or 1."""

    rows: tuple[int, int]
    split: str
    name: str
    proven_rows: list[int] = field(default_factory=list)  # rows with exactly one consistent photo
    compiled_rows: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    recapture_rows: list[int] = field(default_factory=list)
    dataset_csv: Path | None = None
    report_path: Path | None = None
    recapture_csv: Path | None = None
    written: int = 0  # photos copied (identical existing copies are not rewritten)
    exit_code: int = 0


@dataclass(frozen=True)
class _Row:
    index: int
    path: str  # the CSV Path, normalised to POSIX components
    dest_rel: str | None  # <patient>/<study>/<view>.jpg, None when the Path cannot be placed


def parse_rows(text: str, total: int) -> tuple[int, int]:
    """``START:END`` (0-based data rows, END exclusive; an empty END means the last row)."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d*)\s*", str(text))
    if not m:
        raise ValueError(f"--rows must look like START:END (0-based, END exclusive), got {text!r}")
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else total
    if start >= end:
        raise ValueError(f"--rows {text}: START must be less than END")
    if end > total:
        raise ValueError(f"--rows {text}: the CSV has only {total} data rows")
    return start, end


def contiguous_ranges(rows: list[int]) -> list[str]:
    """``[2, 3, 7]`` -> ``["2:4", "7:8"]``: the ``--rows`` arguments that shoot exactly these rows."""
    ranges: list[list[int]] = []
    for row in sorted(set(rows)):
        if ranges and ranges[-1][1] == row:
            ranges[-1][1] = row + 1
        else:
            ranges.append([row, row + 1])
    return [f"{a}:{b}" for a, b in ranges]


def check_name(value: str, what: str) -> str:
    """A dataset or split name must be one plain folder name."""
    if (not value or value in (".", "..") or value.startswith(".") or re.search(r"[\x00-\x1f\x7f/\\:]", value)
            or value != value.strip()):
        raise ValueError(f"{what} {value!r} must be a plain folder name (no '/', '\\', '..' or leading '.')")
    return value


def check_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``None`` if ``data`` is a complete JPEG that decodes, else the reason it is not."""
    if not data:
        return "empty file"
    if not data.startswith(b"\xff\xd8\xff"):
        return "not a JPEG file"
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                return f"not a JPEG file ({im.format})"
            width, height = im.size
            if width * height > max_pixels:
                return f"image too large ({width}x{height})"
            # Decoding at 1/8 scale still entropy-decodes the whole stream, so truncated or
            # corrupt data raises (LOAD_TRUNCATED_IMAGES is off), at half the cost of a full decode.
            im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
    except Exception as exc:  # Pillow raises several kinds
        return f"corrupt JPEG: {exc}"
    return None


def _list_export(export_dir: Path) -> tuple[list[str], list[Problem]]:
    """Candidate photo file names in the flat export folder, and the stray entries."""
    if not export_dir.is_dir():
        raise FileNotFoundError(f"export folder not found: {export_dir}")
    photos, problems = [], []
    for entry in sorted(os.scandir(export_dir), key=lambda e: e.name):
        name = entry.name
        if name.startswith("."):  # camera-server state and temporary files
            continue
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            problems.append(Problem(STRAY, "not a regular file (folder or link)", files=(name,)))
        elif not name.lower().endswith(PHOTO_SUFFIXES):
            problems.append(Problem(STRAY, "not a .jpg/.jpeg photo (export photos as JPEG)", files=(name,)))
        else:
            photos.append(name)
    return photos, problems


def _csv_rows(df: pd.DataFrame, start: int, end: int) -> tuple[dict[int, _Row], list[Problem]]:
    rows, problems, seen = {}, [], {}
    paths = df["Path"].tolist()
    for index in range(start, end):
        raw = paths[index]
        norm = "/".join(path_parts(raw))
        try:
            key = parse_path(raw)
        except PathParseError as exc:
            problems.append(Problem(BAD_CSV_ROW, str(exc), row=index))
            rows[index] = _Row(index, norm, None)
            continue
        dest = f"{key.patient}/{key.study}/{key.view}.jpg"
        if dest in seen:
            problems.append(Problem(BAD_CSV_ROW, f"same patient/study/view as row {seen[dest]} ({dest})", row=index))
            rows[index] = _Row(index, norm, None)
            continue
        seen[dest] = index
        rows[index] = _Row(index, norm, dest)
    return rows, problems


def _assign_by_name(photos: list[str], rows: dict[int, _Row], start: int, end: int
                    ) -> tuple[dict[int, list[str]], list[Problem]]:
    """Group photo names by the row their sequence number claims (file-level problems apart)."""
    claims: dict[int, list[str]] = defaultdict(list)
    problems = []
    for name in photos:
        try:
            parsed = parse_filename(name)
        except FilenameError as exc:
            problems.append(Problem(UNPARSABLE, str(exc), files=(name,)))
            continue
        if not start <= parsed.seq < end:
            problems.append(Problem(OUT_OF_RANGE, f"sequence number {parsed.seq} is outside rows {start}:{end}",
                                    files=(name,)))
            continue
        claims[parsed.seq].append(name)
    return claims, problems


def _name_matches(name: str, row: _Row) -> tuple[bool, str]:
    """Whether the photo name's embedded path is the row's path (and the path it carries)."""
    try:
        embedded = parse_filename(strip_photo_extension(name, row.path)).csv_path
    except FilenameError as exc:
        return False, str(exc)
    return embedded == row.path, embedded


def _assign_by_time(export_dir: Path, photos: list[str], rows: dict[int, _Row], start: int, end: int,
                    log_paths: list[str], clock_offset: float, guard: float
                    ) -> tuple[dict[int, list[str]], list[Problem]]:
    """Group photos by the row that was on screen when they were taken (one or more logs)."""
    intervals, problems = [], []
    for log_path in log_paths:
        found, warnings = read_show_log(log_path)
        intervals += found
        problems += [Problem(LOG_LINE, w, files=(os.path.basename(log_path),)) for w in warnings]
    if not intervals:
        raise ValueError(f"{', '.join(log_paths)}: the capture log has no usable lines")
    poisoned: set[ShownInterval] = set()  # log lines whose path is not the CSV's
    for iv in intervals:
        if start <= iv.row < end and "/".join(path_parts(iv.path)) != rows[iv.row].path:
            poisoned.add(iv)
            problems.append(Problem(LOG_MISMATCH, f"{iv.where} says row {iv.row} showed {iv.path!r}, "
                                    f"the CSV has {rows[iv.row].path!r}", row=iv.row))
    offsets = sorted({iv.shown_at.utcoffset() for iv in intervals} | {iv.hidden_at.utcoffset() for iv in intervals})
    first = min(iv.shown_at for iv in intervals)
    last = max(iv.hidden_at for iv in intervals)
    margin = timedelta(seconds=guard)
    shift = timedelta(seconds=clock_offset)

    def classify(when) -> tuple[str, ShownInterval | None]:
        safe = [iv for iv in intervals if iv.shown_at + margin <= when <= iv.hidden_at - margin]
        if len(safe) == 1:
            return "ok", safe[0]
        if len(safe) > 1:
            return AMBIGUOUS_TIME, None
        if any(iv.shown_at - margin <= when <= iv.hidden_at + margin for iv in intervals):
            return GUARD_ZONE, None
        if when < first or when > last:
            return OUTSIDE_LOG, None
        return BETWEEN_FRAMES, None

    messages = {
        GUARD_ZONE: "taken within {guard}s of a change of row",
        BETWEEN_FRAMES: "taken while no row was on screen",
        OUTSIDE_LOG: "taken before the first or after the last row of the log",
        AMBIGUOUS_TIME: "its time falls in more than one row's interval of the log",
    }
    claims: dict[int, list[str]] = defaultdict(list)
    for name in photos:
        try:
            taken = read_capture_time(export_dir / name)
        except ExifTimeError as exc:
            problems.append(Problem(NO_CAPTURE_TIME, str(exc), files=(name,)))
            continue
        candidates = [taken.resolve(o) + shift for o in (offsets if not taken.has_offset else [timedelta(0)])]
        outcomes = {(kind, iv): iv for kind, iv in map(classify, candidates)}
        if len(outcomes) > 1:
            problems.append(Problem(AMBIGUOUS_TIME, "its zone-less EXIF time gives different rows for the "
                                    "log's different UTC offsets", files=(name,)))
            continue
        (kind, _), interval = next(iter(outcomes.items()))
        stamp = candidates[0].isoformat()
        if kind != "ok":
            problems.append(Problem(kind, messages[kind].format(guard=guard) + f" (at {stamp})", files=(name,)))
            continue
        if interval in poisoned:
            problems.append(Problem(LOG_MISMATCH, f"taken at {stamp} while {interval.where} was shown, whose "
                                    "path disagrees with the CSV", files=(name,)))
            continue
        if not start <= interval.row < end:
            problems.append(Problem(OUT_OF_RANGE, f"taken at {stamp} while row {interval.row} was on screen, "
                                    f"outside rows {start}:{end}", files=(name,)))
            continue
        claims[interval.row].append(name)
    return claims, problems


def _recapture_and_report(df, result: CompileResult, natural_dir: Path, meta: dict) -> None:
    recapture_path = natural_dir / result.name / "recapture.csv"
    if result.recapture_rows:
        atomic_write_text(recapture_path, df.iloc[result.recapture_rows].to_csv(index=False))
        result.recapture_csv = recapture_path
    elif recapture_path.is_file():
        recapture_path.unlink()  # stale list from an earlier run whose rows are now all proven
    report = {
        **meta,
        "compiled": len(result.compiled_rows),
        "rows_total": result.rows[1] - result.rows[0],
        "exit_code": result.exit_code,
        "dataset_csv": result.dataset_csv.name if result.dataset_csv else None,
        "recapture_csv": f"{result.name}/recapture.csv" if result.recapture_rows else None,
        "recapture_rows": result.recapture_rows,
        "recapture_ranges": contiguous_ranges(result.recapture_rows),
        "problems": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()}
                     for p in result.problems],
    }
    report_path = natural_dir / f"{result.name}.report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    result.report_path = report_path


def _check_rows(export_dir: Path, csv_rows: dict[int, _Row], claims: dict[int, list[str]],
                problems: list[Problem], start: int, end: int, *, by_time: bool, max_pixels: int,
                bar) -> dict[int, tuple[str, bytes]]:
    """Rows with exactly one consistent, complete photo: row -> (photo, sha256 of its bytes).

    Row-level problems are appended to ``problems``. Photo bytes are not kept (an export can hold
    tens of thousands of photos); the copy step re-reads them and checks the digest.
    """
    bad_rows = {p.row for p in problems if p.row is not None and p.kind in (BAD_CSV_ROW, LOG_MISMATCH)}
    proven: dict[int, tuple[str, bytes]] = {}
    checking = bar.add_task("check", total=end - start)
    for index in range(start, end):
        bar.advance(checking)
        row = csv_rows[index]
        names = sorted(claims.get(index, []))
        if row.dest_rel is None:
            continue  # already reported as a bad CSV row
        if not names:
            if index not in bad_rows:
                problems.append(Problem(MISSING, f"no photo of {row.path}", row=index))
            continue
        if len(names) > 1:
            digests = {hashlib.sha256((export_dir / n).read_bytes()).digest() for n in names}
            same = " (byte-identical copies)" if len(digests) == 1 else ""
            problems.append(Problem(DUPLICATE, f"{len(names)} photos for one row{same}; keep one and delete "
                                    "the others, or recapture", row=index, files=tuple(names)))
            continue
        photo = names[0]
        if not by_time:
            same, embedded = _name_matches(photo, row)
            if not same:
                problems.append(Problem(PATH_MISMATCH, f"the photo carries {embedded!r}, the CSV row is "
                                        f"{row.path!r}", row=index, files=(photo,)))
                continue
        data = (export_dir / photo).read_bytes()
        reason = check_photo(data, max_pixels)
        if reason:
            problems.append(Problem(CORRUPT, reason, row=index, files=(photo,)))
            continue
        if index not in bad_rows:
            proven[index] = (photo, hashlib.sha256(data).digest())
    return proven


def compile_export(csv_path: str | os.PathLike, rows: str | tuple[int, int], export_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, name: str, *, split: str | None = None,
                   allow_missing: bool = False,
                   match_log: str | os.PathLike | list[str | os.PathLike] | None = None,
                   clock_offset: float = 0.0, guard: float = DEFAULT_GUARD_S,
                   max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False) -> CompileResult:
    """Check an export folder against CSV rows and compile the proven photos (see module doc).

    ``rows`` is ``"START:END"`` or a tuple (0-based data rows, END exclusive). With ``match_log``
    (one capture log, or several, e.g. the first session and a recapture session) photos are
    matched by EXIF time (``clock_offset`` seconds are added to the photo's clock to
    get the computer's), otherwise by their CheXpeditor names.
    """
    name = check_name(name, "--name")
    df = read_csv(csv_path)
    # label values are copied into the dataset: refuse a malformed table outright (paths are
    # checked row by row below, where a bad one is a reported problem, not a crash)
    validate(df, str(csv_path), require_keys=False)
    start, end = parse_rows(f"{rows[0]}:{rows[1]}" if isinstance(rows, tuple) else rows, len(df))
    if guard < 0:
        raise ValueError("--guard must not be negative")
    if split is None:
        found = {split_from_path(p) for p in df["Path"].iloc[start:end]}
        if len(found) != 1 or None in found:
            shown = ", ".join(sorted(str(s) for s in found))
            raise ValueError(f"cannot tell the split from the CSV paths ({shown}); pass --split")
        split = found.pop()
    split = check_name(split, "--split")
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    dataset_name = out_dir.resolve().name
    natural_rel = f"{split}/natural"
    natural_dir = resolve_inside(out_dir, natural_rel)
    images_rel = f"{natural_rel}/{name}"

    result = CompileResult((start, end), split, name)
    csv_rows, problems = _csv_rows(df, start, end)
    photos, stray = _list_export(export_dir)
    problems += stray
    logs = None
    if match_log is not None:
        logs = [os.fspath(p) for p in (match_log if isinstance(match_log, list | tuple) else [match_log])]
    if logs:
        claims, file_problems = _assign_by_time(export_dir, photos, csv_rows, start, end, logs, clock_offset,
                                                guard)
    else:
        claims, file_problems = _assign_by_name(photos, csv_rows, start, end)
    problems += file_problems

    with make_progress("rows", disable=None if progress else True) as bar:
        proven = _check_rows(export_dir, csv_rows, claims, problems, start, end, by_time=bool(logs),
                             max_pixels=max_pixels, bar=bar)
        result.proven_rows = sorted(proven)
        result.problems = sorted(problems, key=lambda p: (p.row is None, p.row or 0, p.files, p.kind))
        result.recapture_rows = sorted({p.row for p in problems if p.row is not None and p.kind in RECAPTURE_KINDS}
                                       - set(proven))
        result.exit_code = 1 if result.problems and not allow_missing else 0
        meta = {
            "csv": os.fspath(csv_path), "rows": f"{start}:{end}", "export": os.fspath(export_dir),
            "match": "time" if logs else "name", "match_logs": logs,
            "clock_offset_s": clock_offset if logs else None, "guard_s": guard if logs else None,
            "split": split, "name": name,
        }
        if result.problems and not allow_missing:
            _recapture_and_report(df, result, natural_dir, meta)
            return result

        result.compiled_rows = result.proven_rows
        copying = bar.add_task("copy", total=len(result.compiled_rows))
        for index in result.compiled_rows:
            photo, digest = proven[index]
            data = (export_dir / photo).read_bytes()
            if hashlib.sha256(data).digest() != digest:
                raise ValueError(f"{photo} changed while compiling; run the compile again")
            dest = resolve_inside(out_dir, f"{images_rel}/{csv_rows[index].dest_rel}")
            if not (dest.is_file() and dest.stat().st_size == len(data) and dest.read_bytes() == data):
                atomic_write_bytes(dest, data)
                result.written += 1
            bar.advance(copying)
    table = df.iloc[result.compiled_rows].copy()
    table["Path"] = [f"{dataset_name}/{images_rel}/{csv_rows[i].dest_rel}" for i in result.compiled_rows]
    dataset_csv = natural_dir / f"{name}.csv"
    atomic_write_text(dataset_csv, table.to_csv(index=False))
    result.dataset_csv = dataset_csv
    _recapture_and_report(df, result, natural_dir, meta)
    return result
