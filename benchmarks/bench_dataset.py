"""Benchmark: ``stats``, ``sample`` and ``check-splits`` on a CheXpert-training-sized CSV.

Generates a CSV the size of the full CheXpert training set (223,414 rows, 64,540 patients,
187,641 studies) with realistic paths (``CheXpert-v1.0-small/train/patientNNNNN/studyN/
viewN_frontal|lateral.jpg``, 1 to 10 studies per patient, 1 to 3 views per study) and label mixes
like the paper's Table 1 (with blanks), then times each command end to end, in-process and as
a ``python -m chexphoto`` subprocess, against floors measured in the same run:

* in-process: ``pandas.read_csv`` of the same file with the options ``csvschema.read_csv`` uses
  (every command has to parse the file at least once);
* CLI: a ``python -c`` subprocess that imports pandas and does that same ``read_csv`` (interpreter
  start, pandas import and parsing, which every CLI run pays).

Run: ``python benchmarks/bench_dataset.py [--repeat 3] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chexphoto.csvschema import OBSERVATIONS

CHEXPERT_TRAIN_IMAGES = 223_414
CHEXPERT_TRAIN_PATIENTS = 64_540
CHEXPERT_TRAIN_STUDIES = 187_641

# (positive, uncertain) fractions per observation, from the paper's Table 1 (Nokia10k, which is
# a random patient sample of CheXpert training); the rest is negative, split between an explicit
# 0.0 and a blank ("not mentioned"), as in the real CSV where blanks dominate.
TABLE1_FRACTIONS = {
    "No Finding": (0.0925, 0.0),
    "Enlarged Cardiomediastinum": (0.0493, 0.0571),
    "Cardiomegaly": (0.1250, 0.0352),
    "Lung Opacity": (0.4934, 0.0203),
    "Lung Lesion": (0.0395, 0.0074),
    "Edema": (0.2430, 0.0603),
    "Consolidation": (0.0639, 0.1252),
    "Pneumonia": (0.0250, 0.0842),
    "Atelectasis": (0.1501, 0.1518),
    "Pneumothorax": (0.0911, 0.0158),
    "Pleural Effusion": (0.3916, 0.0578),
    "Pleural Other": (0.0162, 0.0121),
    "Fracture": (0.0372, 0.0030),
    "Support Devices": (0.5321, 0.0046),
}
EXPLICIT_NEGATIVE_SHARE = 0.2  # of the negatives, how many are written as 0.0 rather than blank


def _counts_with_total(rng: np.random.Generator, draws: np.ndarray, total: int, low: int, high: int) -> np.ndarray:
    """Nudge integer ``draws`` (each in [low, high]) by +-1 at random until they sum to ``total``."""
    counts = np.clip(draws, low, high).astype(np.int64)
    while (diff := total - int(counts.sum())) != 0:
        eligible = np.flatnonzero(counts < high) if diff > 0 else np.flatnonzero(counts > low)
        pick = rng.choice(eligible, size=min(abs(diff), eligible.size), replace=False)
        counts[pick] += 1 if diff > 0 else -1
    return counts


def make_chexpert_like_frame(patients: int = CHEXPERT_TRAIN_PATIENTS, studies: int = CHEXPERT_TRAIN_STUDIES,
                             images: int = CHEXPERT_TRAIN_IMAGES, seed: int = 0) -> pd.DataFrame:
    """A CheXpert-format training table with exactly the given numbers of patients, studies, images."""
    rng = np.random.default_rng(seed)
    studies_per_patient = _counts_with_total(rng, rng.geometric(1 / (studies / patients), patients),
                                             studies, 1, 10)
    views_per_study = _counts_with_total(rng, 1 + rng.binomial(2, (images / studies - 1) / 2, studies),
                                         images, 1, 3)
    patient_of_study = np.repeat(np.arange(1, patients + 1), studies_per_patient)
    study_number = np.arange(studies) - np.repeat(np.cumsum(studies_per_patient) - studies_per_patient,
                                                  studies_per_patient) + 1
    patient = np.repeat(patient_of_study, views_per_study)
    study = np.repeat(study_number, views_per_study)
    view = np.arange(images) - np.repeat(np.cumsum(views_per_study) - views_per_study, views_per_study) + 1
    frontal = (view == 1) | (rng.random(images) < 0.15)
    orientation = np.where(frontal, "frontal", "lateral")
    paths = [f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/view{v}_{o}.jpg"
             for p, s, v, o in zip(patient.tolist(), study.tolist(), view.tolist(), orientation.tolist(),
                                   strict=True)]
    columns: dict[str, object] = {
        "Path": paths,
        "Sex": rng.choice(np.array(["Male", "Female", "Unknown"]), images, p=[0.59, 0.409, 0.001]),
        "Age": rng.integers(18, 91, images).astype(str),
        "Frontal/Lateral": np.where(frontal, "Frontal", "Lateral"),
        "AP/PA": np.where(frontal, rng.choice(np.array(["AP", "PA"]), images, p=[0.8, 0.2]), ""),
    }
    for name in OBSERVATIONS:
        positive, uncertain = TABLE1_FRACTIONS[name]
        negative = 1.0 - positive - uncertain
        explicit = 0.0 if name == "No Finding" else negative * EXPLICIT_NEGATIVE_SHARE
        columns[name] = rng.choice(np.array(["1.0", "-1.0", "0.0", ""]), images,
                                   p=[positive, uncertain, explicit, negative - explicit])
    return pd.DataFrame(columns)


def _time(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _run(argv: list[str], ok_codes: tuple[int, ...] = ()) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    if done.returncode not in (0, *ok_codes):
        raise SystemExit(f"{' '.join(argv)} failed with exit status {done.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best and median shown)")
    parser.add_argument("--keep", help="write the generated CSVs into this folder and keep them")
    args = parser.parse_args(argv)

    from chexphoto.cli import main as cli_main
    from chexphoto.dataset import compute_stats, find_shared_patients, load_csv, sample_patients

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        big = folder / "train_full.csv"
        start = time.perf_counter()
        make_chexpert_like_frame().to_csv(big, index=False)
        print(f"generated {big} ({big.stat().st_size / 1e6:.1f} MB, {CHEXPERT_TRAIN_IMAGES:,} rows, "
              f"{CHEXPERT_TRAIN_PATIENTS:,} patients) in {time.perf_counter() - start:.1f} s")
        sampled = folder / "sample_3000.csv"
        valid = folder / "valid_200.csv"
        py = [sys.executable, "-m", "chexphoto"]

        rows: list[tuple[str, list[float], str]] = []  # label, times, label of its floor
        read_floor = "floor: pandas.read_csv (same options)"
        cli_floor = "floor: subprocess python + import pandas + read_csv"

        def measure(label: str, fn, floor: str) -> None:
            rows.append((label, _time(fn, args.repeat), floor))
            print(f"  {label}: best {min(rows[-1][1]):.3f} s", file=sys.stderr)

        read_options = {"dtype": str, "keep_default_na": False, "na_filter": False}
        measure(read_floor, lambda: pd.read_csv(big, **read_options), read_floor)
        measure("library: load_csv (read + validate + keys)", lambda: load_csv(big), read_floor)
        measure("library: stats (load + Table 1/3)", lambda: compute_stats(load_csv(big)), read_floor)
        measure("library: sample 3000 patients + write",
                lambda: sample_patients(big, 3000, seed=0, out=sampled), read_floor)
        cli_main(["sample", "--csv", str(big), "--patients", "200", "--seed", "1", "--out", str(valid),
                  "--exclude", str(sampled)])
        measure("library: check-splits full vs 3000-patient sample",
                lambda: find_shared_patients([load_csv(big), load_csv(sampled)]), read_floor)
        floor_script = (f"import pandas; pandas.read_csv({str(big)!r}, dtype=str, keep_default_na=False, "
                        "na_filter=False)")
        measure(cli_floor, lambda: _run([sys.executable, "-c", floor_script]), cli_floor)
        measure("CLI: stats --json", lambda: _run([*py, "stats", str(big), "--json"]), cli_floor)
        measure("CLI: stats (Rich table)", lambda: _run([*py, "stats", str(big)]), cli_floor)
        measure("CLI: sample --patients 3000",
                lambda: _run([*py, "sample", "--csv", str(big), "--patients", "3000", "--seed", "0",
                              "--out", str(sampled)]), cli_floor)
        measure("CLI: check-splits full vs 3000-patient sample",
                lambda: _run([*py, "check-splits", str(big), str(sampled)], ok_codes=(1,)), cli_floor)

        best = {label: min(times) for label, times, _ in rows}
        width = max(len(label) for label, _, _ in rows)
        print()
        print(f"{'measurement':<{width}}  {'best s':>7}  {'median s':>8}  {'x floor':>7}")
        print(f"{'-' * width}  {'-' * 7}  {'-' * 8}  {'-' * 7}")
        for label, times, floor in rows:
            print(f"{label:<{width}}  {best[label]:7.3f}  {statistics.median(times):8.3f}  "
                  f"{best[label] / best[floor]:7.2f}")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{CHEXPERT_TRAIN_IMAGES:,} rows; {args.repeat} runs each; x floor = best / best of the floor "
              f"above it; {os.cpu_count()} CPUs, load average {load}; Python {sys.version.split()[0]}, "
              f"pandas {pd.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
