"""The manifest of a synthetic set: one JSON line per image written, enough to re-render it.

A line looks like (keys always in this order)::

    {"row": 2,
     "source": "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
     "source_sha256": "9f2c...",
     "seed": 0,
     "chain": [{"name": "random_digital", "level": 1, "params": {...}}],
     "format": "jpg", "quality": 95,
     "output": "CheXphoto-v1.0/valid/synthetic/digital/patient64541/study1/view1_frontal.jpg",
     "output_sha256": "41ab...",
     "height": 390, "width": 320}

* ``row``: the row number in the input CSV as a person counts it (header = row 1);
* ``source``: the input CSV's ``Path`` exactly as written (relative to ``--data-root``);
* ``source_sha256``: SHA-256 of the source file's bytes;
* ``seed``: the ``--seed`` of the run;
* ``chain``: every step with the exact params applied (JSON round-tripped before applying, so
  :func:`chexphoto.transforms.apply_recorded` on the decoded source gives the same pixels);
* ``format``/``quality``: how the output was encoded;
* ``output``: the label CSV's ``Path`` for the image (relative to the parent of ``--out``);
* ``output_sha256``: SHA-256 of the output file's bytes; ``height``/``width``: its size.

While a run is going, records are appended to ``<name>.manifest.jsonl.partial`` (the journal) as
each image completes; at the end the manifest is written atomically in input row order and the
journal removed. A run killed in between leaves the journal, which ``--resume`` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from chexphoto.fsutil import atomic_write_text

RECORD_KEYS = (
    "row", "source", "source_sha256", "seed", "chain", "format", "quality",
    "output", "output_sha256", "height", "width",
)

JOURNAL_SUFFIX = ".partial"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: object) -> object:
    # transforms should return plain Python values; accept NumPy scalars/arrays too
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: object) -> str:
    """One-line JSON (the manifest's encoding); NumPy scalars become Python numbers."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def roundtrip(value: object) -> object:
    """``value`` as it will read back from the manifest (so replay applies the same numbers)."""
    return json.loads(to_json(value))


def record_line(record: dict) -> str:
    """A manifest record as one JSON line (keys in :data:`RECORD_KEYS` order), without newline."""
    ordered = {key: record[key] for key in RECORD_KEYS if key in record}
    return to_json(ordered)


def parse_lines(lines: Iterable[str], *, lenient: bool = False) -> Iterator[dict]:
    """Records from JSON lines; blank lines skipped. ``lenient`` skips broken lines (a journal
    cut short by a crash) instead of raising ``ValueError``."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if lenient:
                continue
            raise ValueError(f"manifest line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict) or not {"source", "chain", "output", "output_sha256"} <= set(record):
            if lenient:
                continue
            raise ValueError(f"manifest line {number} is not a chexphoto manifest record")
        yield record


def read_manifest(path: str | os.PathLike, *, lenient: bool = False) -> list[dict]:
    """All records of a manifest (or journal) file."""
    # lenient: a line torn by a crash may end inside a multi-byte character; decode it anyway
    # (the torn line is then skipped as broken JSON) instead of failing on the whole file
    with open(path, encoding="utf-8", errors="replace" if lenient else "strict") as fh:
        return list(parse_lines(fh, lenient=lenient))


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write a manifest atomically, one record per line."""
    text = "".join(record_line(r) + "\n" for r in records)
    atomic_write_text(path, text)


def compact_record(record: dict) -> dict:
    """What ``--resume`` needs of a previous record: the hashes to compare and the line itself
    (parsed again only for the rows that are skipped)."""
    return {"source": record.get("source"), "source_sha256": record.get("source_sha256"),
            "output": record.get("output"),
            "output_sha256": record.get("output_sha256"), "line": record_line(record)}


def expand_record(compact: dict) -> dict:
    """The full record of a :func:`compact_record`."""
    return json.loads(compact["line"])


class Journal:
    """Append-only record log for a run in progress (crash-safe: each line flushed as written).

    A line cut short by a crash is ignored when read back (:func:`read_manifest` ``lenient``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = None

    def append(self, records: Iterable[dict]) -> None:
        """Append records and flush."""
        self.append_lines(record_line(r) for r in records)

    def open(self) -> None:
        """Create (or reopen) the journal file. A run does this before rendering anything, so a
        crash that leaves images written but not yet journaled still leaves a journal, and
        ``--resume`` recognises the target as an interrupted run rather than unknown files."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            # start on a fresh line in case a crash left half a line behind
            if self._fh.tell() > 0:
                self._fh.write("\n")
            self._fh.flush()

    def append_lines(self, lines: Iterable[str]) -> None:
        """Append already-encoded record lines (no newline) and flush."""
        self.open()
        for line in lines:
            self._fh.write(line + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
