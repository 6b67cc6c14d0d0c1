"""Check that dataset splits are patient-disjoint (no patient in two of the CSVs).

CheXphoto keeps its validation and test patients out of training; a patient's images in two
splits leak information between them. Patients are compared by the patient id in the path
(``patient00001``), so a CheXphoto CSV and the CheXpert CSV it came from share their patients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from chexphoto.dataset.loading import CheXpertTable, load_csv


@dataclass(frozen=True)
class SplitCheck:
    """Result of :func:`find_shared_patients`."""

    files: tuple[str, ...]
    patients_per_file: tuple[int, ...]
    #: patient id -> the files (in the order given) it appears in, for patients in two or more files
    shared: dict[str, tuple[str, ...]]

    @property
    def disjoint(self) -> bool:
        return not self.shared

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Shared patients per pair of files (pairs with none left out)."""
        counts: dict[tuple[str, str], int] = {}
        for files in self.shared.values():
            for i, a in enumerate(files):
                for b in files[i + 1:]:
                    counts[(a, b)] = counts.get((a, b), 0) + 1
        return counts

    def report(self) -> str:
        """Human-readable summary; lists every shared patient with its files."""
        sizes = "\n".join(f"  {name}: {count:,} patients" for name, count in
                          zip(self.files, self.patients_per_file, strict=True))
        if self.disjoint:
            return f"OK: no patient appears in more than one of the {len(self.files)} CSVs\n{sizes}\n"
        lines = [f"FAIL: {len(self.shared):,} patients appear in more than one CSV", sizes, "shared per pair:"]
        lines += [f"  {a} & {b}: {count:,} patients" for (a, b), count in self.pair_counts().items()]
        lines.append("shared patients (patient: files):")
        lines += [f"  {patient}: {', '.join(files)}" for patient, files in self.shared.items()]
        return "\n".join(lines) + "\n"


def find_shared_patients(tables: Sequence[CheXpertTable | str | os.PathLike]) -> SplitCheck:
    """Find patients present in two or more of the CSVs (loaded tables or paths).

    Raises ``ValueError`` for fewer than two CSVs or the same file given twice, and
    ``CSVFormatError`` for a malformed CSV.
    """
    if len(tables) < 2:
        raise ValueError("check-splits needs at least two CSVs to compare")
    names = [t.path if isinstance(t, CheXpertTable) else os.fspath(t) for t in tables]
    real = [os.path.realpath(name) for name in names]
    for i, name in enumerate(real):
        if name in real[:i]:
            raise ValueError(f"{names[i]!r} is given twice (as {names[real.index(name)]!r})")
    loaded = [t if isinstance(t, CheXpertTable) else load_csv(t) for t in tables]
    patient_sets = [t.patient_ids for t in loaded]
    files_of: dict[str, list[str]] = {}
    for name, patients in zip(names, patient_sets, strict=True):
        for patient in patients:
            files_of.setdefault(patient, []).append(name)
    shared = {p: tuple(files) for p, files in sorted(files_of.items()) if len(files) > 1}
    return SplitCheck(files=tuple(names), patients_per_file=tuple(len(s) for s in patient_sets), shared=shared)
