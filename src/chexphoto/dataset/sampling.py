"""Patient-level sampling: choose N patients at random and keep all of their images.

CheXphoto's training x-rays are all the images of 3,000 patients drawn at random from CheXpert's
training set. :func:`sample_patients` does the same for any CheXpert-format CSV.

How patients are chosen: each distinct patient id gets a random key, the first 64 bits of
``SHA-256(seed, patient id)``, and the N patients with the smallest keys are taken. Every subset of
N patients is equally likely, and the choice depends only on the seed and the set of patient ids:
not on row order, on other patients' rows, on the NumPy version or the machine. Growing N with
the same seed keeps the earlier patients (the sample for 3,000 is inside the sample for 3,500),
and excluding patients (``exclude``) never changes which of the remaining patients are preferred.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chexphoto.dataset.loading import CheXpertTable, load_csv
from chexphoto.fsutil import atomic_write_text


@dataclass(frozen=True)
class SampleResult:
    """What :func:`sample_patients` chose and wrote."""

    out: str
    seed: int
    available: int  # patients in the source CSV not excluded
    excluded: int  # patients of the source CSV removed because another CSV has them
    patients: tuple[str, ...]  # chosen patient ids, sorted
    images: int
    studies: int


def _key_prefix(seed: int) -> bytes:
    return f"chexphoto.sample\0{int(seed)}\0".encode()


def patient_key(seed: int, patient: str) -> tuple[bytes, str]:
    """The sort key that decides which patients are chosen (smallest first).

    The first 8 bytes of ``SHA-256("chexphoto.sample", seed, patient)``: uniform, independent per
    patient, identical on every machine; the id breaks (astronomically unlikely) ties.
    """
    return hashlib.sha256(_key_prefix(seed) + patient.encode()).digest()[:8], patient


def choose_patients(patients: Iterable[str], n: int, seed: int) -> list[str]:
    """Choose ``n`` distinct patients uniformly at random, deterministically for ``seed``.

    Returns the chosen ids sorted. Raises ``ValueError`` when ``n`` is below 1 or larger than the
    number of distinct patients.
    """
    pool = set(patients)
    if n < 1:
        raise ValueError(f"--patients must be at least 1 (got {n})")
    if n > len(pool):
        raise ValueError(f"asked for {n} patients but only {len(pool)} are available")
    prefix, sha256 = _key_prefix(seed), hashlib.sha256
    keys = [(sha256(prefix + patient.encode()).digest()[:8], patient) for patient in pool]
    return sorted(patient for _, patient in heapq.nsmallest(n, keys))


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def sample_patients(csv: str | os.PathLike | CheXpertTable, n: int, seed: int, out: str | os.PathLike,
                    exclude: Sequence[str | os.PathLike | CheXpertTable] = ()) -> SampleResult:
    """Write to ``out`` all rows of ``n`` randomly chosen patients of ``csv``, in their original order.

    Patients that appear in any of the ``exclude`` CSVs are removed before choosing. Columns,
    header and cell values are written exactly as read (all text, blanks stay blank); ``out`` is
    written atomically. Raises ``ValueError`` when ``n`` exceeds the patients available or ``out``
    is one of the input files, and ``CSVFormatError`` for a malformed input CSV.
    """
    inputs = [item.path if isinstance(item, CheXpertTable) else os.fspath(item) for item in [csv, *exclude]]
    for name in inputs:
        if _same_file(name, out):
            raise ValueError(f"--out {os.fspath(out)!r} is one of the input CSVs; refusing to overwrite it")
    source = csv if isinstance(csv, CheXpertTable) else load_csv(csv)
    excluded_ids: set[str] = set()
    for other in exclude:
        excluded_ids |= (other if isinstance(other, CheXpertTable) else load_csv(other)).patient_ids
    source_ids = source.patient_ids
    pool = source_ids - excluded_ids
    removed = len(source_ids) - len(pool)
    if n > len(pool):
        detail = f" ({len(source_ids)} in {source.path}, {removed} excluded)" if removed else f" in {source.path}"
        raise ValueError(f"asked for {n} patients but only {len(pool)} are available{detail}")
    chosen = choose_patients(pool, n, seed)
    keep = source.keys["patient"].isin(chosen)
    rows = source.frame[keep.to_numpy()]
    atomic_write_text(out, rows.to_csv(index=False, lineterminator="\n"))
    kept_keys = source.keys[keep.to_numpy()]
    return SampleResult(
        out=os.fspath(out), seed=int(seed), available=len(pool), excluded=removed,
        patients=tuple(chosen), images=len(rows),
        studies=int(len(kept_keys.drop_duplicates(["patient", "study"]))),
    )
