"""How long does ``evaluate`` with a 1000-replicate patient bootstrap take?

Two data sets: CheXpert-valid-sized (234 images of 200 patients) and 10,000 images of 4,000
patients. Each is timed against floors measured in the same run:

* floor: one ``sklearn.metrics.roc_auc_score`` per competition task on arrays already in memory
  (the point estimate alone, no loading, no CI);
* naive bootstrap: what a straightforward bootstrap costs -- 1000 x 5 sklearn calls on resampled
  patients (timed on 50 replicates and scaled to 1000).

``evaluate`` is timed end to end from CSV files (read, validate, match, 1000 replicates, CIs).

    python benchmarks/bench_evaluate.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from chexphoto.csvschema import COMPETITION_TASKS
from chexphoto.evaluation import metrics

TASKS = list(COMPETITION_TASKS)
REPLICATES = 1000


def make_set(n_images: int, n_patients: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    patient = np.sort(np.r_[np.arange(n_patients), rng.integers(0, n_patients, n_images - n_patients)])
    view = np.zeros(n_images, dtype=int)
    for i in range(1, n_images):
        view[i] = view[i - 1] + 1 if patient[i] == patient[i - 1] else 0
    paths = [f"CheXpert-v1.0/valid/patient{p:05d}/study1/view{v + 1}_frontal.jpg"
             for p, v in zip(patient, view, strict=True)]
    labels = {"Path": paths}
    preds = {"Path": paths}
    for t in TASKS:
        y = rng.choice([1.0, 0.0, -1.0, np.nan], size=n_images, p=[0.3, 0.5, 0.05, 0.15])
        labels[t] = ["" if np.isnan(v) else f"{v:.1f}" for v in y]
        preds[t] = np.round(np.clip((y == 1) * 0.3 + rng.random(n_images) * 0.7, 0, 1), 4)
    return pd.DataFrame(labels), pd.DataFrame(preds)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    table = Table(title=f"evaluate with --bootstrap {REPLICATES} (best of 3, seconds)")
    for col in ("data set", "images", "patients", "floor (5 AUROCs)", "evaluate", "/ floor", "naive bootstrap",
                "naive / evaluate"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for name, n_images, n_patients in [("CheXpert valid size", 234, 200), ("10k images", 10_000, 4_000)]:
            labels, preds = make_set(n_images, n_patients, seed=n_images)
            label_csv, pred_csv = Path(tmp) / f"{name}_labels.csv", Path(tmp) / f"{name}_preds.csv"
            labels.to_csv(label_csv, index=False)
            preds.to_csv(pred_csv, index=False)
            y = {t: pd.to_numeric(labels[t].replace("", "0")).to_numpy() for t in TASKS}
            s = {t: preds[t].to_numpy() for t in TASKS}
            keep = {t: y[t] != -1 for t in TASKS}

            def floor(y=y, s=s, keep=keep):
                for t in TASKS:
                    roc_auc_score(y[t][keep[t]], s[t][keep[t]])

            def run(label_csv=label_csv, pred_csv=pred_csv):
                metrics.evaluate(label_csv, pred_csv, bootstrap=REPLICATES, seed=0)

            codes = pd.factorize(labels["Path"].str.split("/").str[2])[0]
            members = [np.flatnonzero(codes == p) for p in range(n_patients)]

            def naive(n_rep=50, y=y, s=s, keep=keep, members=members, n_patients=n_patients):
                rng = np.random.default_rng(0)
                for _ in range(n_rep):
                    idx = np.concatenate([members[p] for p in rng.integers(0, n_patients, n_patients)])
                    for t in TASKS:
                        k = idx[keep[t][idx]]
                        if len(set(y[t][k])) == 2:
                            roc_auc_score(y[t][k], s[t][k])

            t_floor = best_of(floor, 3)
            t_eval = best_of(run, 3)
            t_naive = best_of(naive, 1) * REPLICATES / 50
            table.add_row(name, str(n_images), str(n_patients), f"{t_floor:.4f}", f"{t_eval:.3f}",
                          f"{t_eval / t_floor:.0f}x", f"{t_naive:.2f}", f"{t_naive / t_eval:.0f}x")
    table.caption = ("floor: one sklearn roc_auc_score per competition task, arrays in memory; evaluate: from "
                     f"CSV files, {REPLICATES} patient-bootstrap replicates; naive: {REPLICATES} x 5 sklearn calls")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
