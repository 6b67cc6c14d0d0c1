"""evaluate(): AUROC against scikit-learn, patient bootstrap, matching, study level, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from chexphoto.csvschema import COMPETITION_TASKS, CSVFormatError
from chexphoto.evaluation import metrics

TASKS = list(COMPETITION_TASKS)


def make_data(n_patients: int = 60, *, seed: int = 0, max_views: int = 3, signal: float = 0.35,
              studies: int = 1, root: str = "CheXpert-v1.0/valid") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels (text cells, as read from a CSV: 1.0/0.0/-1.0/blank) and image-level predictions
    whose probabilities are higher for positives; rounded to 2 decimals so there are ties."""
    rng = np.random.default_rng(seed)
    labels, preds = [], []
    for p in range(n_patients):
        for s in range(1, studies + 1):
            study_labels = {t: rng.choice(["1.0", "0.0", "-1.0", ""], p=[0.3, 0.4, 0.1, 0.2]) for t in TASKS}
            for v in range(1, int(rng.integers(1, max_views + 1)) + 1):
                path = f"{root}/patient{10000 + p:05d}/study{s}/view{v}_{'frontal' if v == 1 else 'lateral'}.jpg"
                labels.append({"Path": path, "Sex": "Female", "Age": "60", "Frontal/Lateral": "Frontal",
                               "AP/PA": "AP", **study_labels})
                preds.append({"Path": path, **{
                    t: round(float(np.clip((study_labels[t] == "1.0") * signal + rng.random() * (1 - signal), 0, 1)), 2)
                    for t in TASKS}})
    return pd.DataFrame(labels), pd.DataFrame(preds)


def sklearn_auroc(labels: pd.DataFrame, preds: pd.DataFrame, task: str) -> float:
    y = pd.to_numeric(labels[task].replace("", "0")).to_numpy()
    keep = y != -1
    return roc_auc_score(y[keep], preds[task].to_numpy()[keep])


def write_csv(df: pd.DataFrame, path) -> str:
    df.to_csv(path, index=False)
    return str(path)


# ---------------------------------------------------------------------------------------------
# AUROC
# ---------------------------------------------------------------------------------------------


def test_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for n in (2, 7, 50, 999):
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        scores = np.round(rng.random(n), 1)  # many ties
        assert metrics.auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert np.isnan(metrics.auroc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_weighted_auroc_equals_sklearn_sample_weight():
    """The bootstrap's weighted Mann-Whitney equals sklearn's AUROC with the same integer weights."""
    rng = np.random.default_rng(2)
    n = 80
    y = rng.integers(0, 2, n).astype(float)
    scores = np.round(rng.random(n), 1)
    task = metrics.TaskData.build(y, scores, np.arange(n))
    weights = rng.integers(0, 4, size=(5, n))
    got = metrics.weighted_auroc(task, weights.T)  # each row its own unit
    for b in range(5):
        assert got[b] == pytest.approx(roc_auc_score(y, scores, sample_weight=weights[b]), abs=1e-12)


def test_evaluate_point_estimates_equal_sklearn():
    labels, preds = make_data(80, seed=3)
    result = metrics.evaluate(labels, preds, bootstrap=0)
    assert result["level"] == "image"
    assert set(result["tasks"]) == set(TASKS)
    for t in TASKS:
        entry = result["tasks"][t]
        assert entry["auroc"] == pytest.approx(sklearn_auroc(labels, preds, t), abs=1e-12)
        assert entry["n"] == int((labels[t] != "-1.0").sum())
        assert entry["positives"] == int((labels[t] == "1.0").sum())
        assert entry["excluded_uncertain"] == int((labels[t] == "-1.0").sum())
    expected_mean = np.mean([sklearn_auroc(labels, preds, t) for t in TASKS])
    assert result["mean"]["auroc"] == pytest.approx(expected_mean, abs=1e-12)
    assert result["mean"]["ci"] == [None, None]


def test_evaluate_json_structure_and_ci_contains_estimate(tmp_path):
    labels, preds = make_data(60, seed=4)
    result = metrics.evaluate(write_csv(labels, tmp_path / "l.csv"), write_csv(preds, tmp_path / "p.csv"),
                              bootstrap=300, seed=1)
    for entry in [*result["tasks"].values(), result["mean"]]:
        lo, hi = entry["ci"]
        assert lo <= entry["auroc"] <= hi and hi - lo > 0.01
    assert set(result["tasks"]["Edema"]) == {"auroc", "ci", "n", "positives", "excluded_uncertain"}
    assert result["bootstrap"]["replicates"] == 300 and result["counts"]["patients"] == 60


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_order_independent():
    labels, preds = make_data(50, seed=5)
    a = metrics.evaluate(labels, preds, bootstrap=200, seed=7)
    b = metrics.evaluate(labels, preds, bootstrap=200, seed=7)
    shuffled = preds.sample(frac=1.0, random_state=0).reset_index(drop=True)
    c = metrics.evaluate(labels.iloc[::-1].reset_index(drop=True), shuffled, bootstrap=200, seed=7)
    d = metrics.evaluate(labels, preds, bootstrap=200, seed=8)
    assert a == b == c
    assert a["mean"]["ci"] != d["mean"]["ci"]


def test_resampling_draws_whole_patients():
    """Replay the bootstrap: each replicate equals sklearn's AUROC on the data expanded by drawing
    whole patients (every image of a patient repeated as often as the patient was drawn)."""
    labels, preds = make_data(30, seed=6, max_views=4)
    scored = metrics.match(labels, preds)
    dist = metrics.bootstrap_distributions({"x": scored}, 5, seed=3)["x"]
    counts = next(metrics.replicate_blocks(scored.n_patients, 5, seed=3))
    assert counts.shape == (30, 5) and (counts.sum(axis=0) == 30).all()
    t = "Cardiomegaly"
    for b in range(5):
        row_weights = counts[scored.patient_codes, b].astype(int)
        # all images of one patient carry the same weight: they come along together
        for p in range(scored.n_patients):
            assert len(set(row_weights[scored.patient_codes == p])) == 1
        keep = scored.labels[t] != -1
        y = np.repeat(scored.labels[t][keep], row_weights[keep])
        s = np.repeat(scored.scores[t][keep], row_weights[keep])
        assert dist[t][b] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_patient_level_ci_is_wider_than_image_level_on_clustered_data():
    """20 patients x 15 identical images: only 20 independent units. Patient resampling sees that;
    treating each image as its own patient (image-level resampling) gives a far narrower CI."""
    rng = np.random.default_rng(8)
    label_rows, pred_rows, label_rows_iid = [], [], []
    for p in range(20):
        lab = {t: "1.0" if p % 2 else "0.0" for t in TASKS}
        score = {t: round(float(np.clip(0.2 * (p % 2) + rng.random() * 0.8, 0, 1)), 3) for t in TASKS}
        for v in range(15):
            path = f"x/patient{p:03d}/study1/view{v}_frontal.jpg"
            label_rows.append({"Path": path, **lab})
            pred_rows.append({"Path": path, **score})
            label_rows_iid.append({"Path": f"x/patient{p:03d}v{v}/study1/view{v}_frontal.jpg", **lab})
    pred_iid = pd.DataFrame(pred_rows).assign(Path=[r["Path"] for r in label_rows_iid])
    clustered = metrics.evaluate(pd.DataFrame(label_rows), pd.DataFrame(pred_rows), bootstrap=400, seed=0)
    iid = metrics.evaluate(pd.DataFrame(label_rows_iid), pred_iid, bootstrap=400, seed=0)
    assert clustered["mean"]["auroc"] == pytest.approx(iid["mean"]["auroc"], abs=1e-12)
    width = lambda r: r["mean"]["ci"][1] - r["mean"]["ci"][0]  # noqa: E731
    assert width(clustered) > 2.5 * width(iid)


def test_replicates_with_one_class_are_skipped_and_counted():
    labels, preds = make_data(12, seed=9, max_views=1)
    labels["Edema"] = "0.0"
    labels.loc[0, "Edema"] = "1.0"  # one positive patient: absent from ~1/e of the replicates
    result = metrics.evaluate(labels, preds, bootstrap=300, seed=0)
    skipped = result["bootstrap"]["skipped"]["Edema"]
    assert 60 < skipped < 160
    assert result["bootstrap"]["skipped"]["mean"] >= skipped
    assert any("Edema" in w and "skipped" in w for w in result["warnings"])
    assert result["tasks"]["Edema"]["ci"][0] is not None


# ---------------------------------------------------------------------------------------------
# Matching and study level
# ---------------------------------------------------------------------------------------------


def test_chexphoto_paths_match_chexpert_labels():
    labels, preds = make_data(40, seed=10)
    photo = preds.assign(Path=preds["Path"].str.replace(
        "CheXpert-v1.0/valid/", "CheXphoto-v1.0/valid/natural/", regex=False).str.replace(".jpg", ".png"))
    assert metrics.evaluate(labels, photo, bootstrap=50) == metrics.evaluate(labels, preds, bootstrap=50)


def test_study_level_takes_max_over_views():
    labels, preds = make_data(50, seed=11, studies=2)
    result = metrics.evaluate(labels, preds, level="study", bootstrap=0)
    key = labels["Path"].str.rsplit("/", n=1).str[0]
    for t in TASKS:
        study_scores = preds[t].groupby(key).max()
        study_labels = pd.to_numeric(labels[t].replace("", "0")).groupby(key).first()
        keep = study_labels != -1
        assert result["tasks"][t]["auroc"] == pytest.approx(
            roc_auc_score(study_labels[keep], study_scores[keep]), abs=1e-12)
        assert result["tasks"][t]["n"] == int(keep.sum())
    # a Study column with the aggregated probabilities gives the same result
    study_preds = preds.assign(Study=key).groupby("Study", as_index=False)[TASKS].max()
    from_study = metrics.evaluate(labels, study_preds, level="study", bootstrap=100)
    from_images = metrics.evaluate(labels, preds, level="study", bootstrap=100)
    assert from_study.pop("counts")["predictions"] == 100 and from_images.pop("counts")["predictions"] == len(preds)
    assert from_study == from_images


def test_study_labels_take_the_most_positive_view():
    labels = pd.DataFrame({
        "Path": [f"v/patient1/study1/view{i}_frontal.jpg" for i in (1, 2, 3)]
        + [f"v/patient2/study1/view{i}_frontal.jpg" for i in (1, 2)],
        "Edema": ["0.0", "-1.0", "", "", ""],
        "Cardiomegaly": ["0.0", "1.0", "-1.0", "0.0", ""],
    })
    got = metrics.study_labels(metrics.load_labels(labels), ["Edema", "Cardiomegaly"])
    assert got["Edema"].tolist()[0] == -1.0 and np.isnan(got["Edema"].tolist()[1])
    assert got["Cardiomegaly"].tolist() == [1.0, 0.0]


def test_study_predictions_rejected_at_image_level():
    labels, preds = make_data(5, seed=12)
    study = preds.assign(Study=preds["Path"].str.rsplit("/", n=1).str[0]).drop(columns="Path")
    study = study.groupby("Study", as_index=False)[TASKS].max()
    with pytest.raises(ValueError, match="--level study"):
        metrics.evaluate(labels, study)


# ---------------------------------------------------------------------------------------------
# Bad input: one test each, checking the message
# ---------------------------------------------------------------------------------------------


def test_prediction_without_label_is_an_error_naming_it(tmp_path):
    labels, preds = make_data(10, seed=13)
    preds.loc[2, "Path"] = "CheXpert-v1.0/valid/patient99999/study1/view1_frontal.jpg"
    with pytest.raises(CSVFormatError, match=r"1 prediction\(s\) match no labelled image.*patient99999"):
        metrics.evaluate(labels, write_csv(preds, tmp_path / "p.csv"))


def test_labels_without_prediction_error_unless_allowed():
    labels, preds = make_data(10, seed=14)
    partial = preds.iloc[:-2]
    with pytest.raises(CSVFormatError, match=r"2 labelled image\(s\) have no prediction.*--allow-missing"):
        metrics.evaluate(labels, partial)
    result = metrics.evaluate(labels, partial, allow_missing=True, bootstrap=0)
    assert result["counts"]["unmatched_labels"] == 2 and result["counts"]["scored"] == len(preds) - 2
    assert any("no prediction" in w for w in result["warnings"])


def test_duplicated_prediction_keys(tmp_path):
    labels, preds = make_data(10, seed=15)
    dup = pd.concat([preds, preds.iloc[[3]].assign(
        Path=preds.loc[3, "Path"].replace("CheXpert-v1.0", "CheXphoto-v1.0/natural"))], ignore_index=True)
    with pytest.raises(CSVFormatError, match=r"row 5.*duplicated key patient\d+/study1/view\d_\w+: rows 5, "):
        metrics.load_predictions(write_csv(dup, tmp_path / "p.csv"))


@pytest.mark.parametrize("value, message", [
    (1.5, r"row 6, column 'Edema': probability 1.5 is outside \[0, 1\]"),
    (-0.1, r"row 6, column 'Edema': probability -0.1 is outside \[0, 1\]"),
    (float("nan"), r"row 6, column 'Edema': probability is missing \(blank or NaN\)"),
    ("high", r"row 6, column 'Edema': probability 'high' is not a number"),
])
def test_bad_probabilities_name_row_and_column(tmp_path, value, message):
    _, preds = make_data(10, seed=16)
    preds["Edema"] = preds["Edema"].astype(object)
    preds.loc[4, "Edema"] = value
    with pytest.raises(CSVFormatError, match=message):
        metrics.load_predictions(write_csv(preds, tmp_path / "p.csv"))


def test_missing_task_column():
    labels, preds = make_data(10, seed=17)
    with pytest.raises(CSVFormatError, match=r"missing task column\(s\) 'Edema'"):
        metrics.evaluate(labels, preds.drop(columns="Edema"))
    with pytest.raises(CSVFormatError, match=r"missing task column\(s\) 'No Finding'.*--tasks competition"):
        metrics.evaluate(labels, preds, tasks="all")


def test_one_class_task_is_undefined_not_a_crash():
    labels, preds = make_data(20, seed=18)
    labels["Edema"] = labels["Edema"].replace({"1.0": "0.0"})
    result = metrics.evaluate(labels, preds, bootstrap=100)
    edema = result["tasks"]["Edema"]
    assert edema["auroc"] is None and edema["ci"] == [None, None] and edema["positives"] == 0
    assert "one class only" in edema["note"]
    assert result["mean"]["auroc"] is None and "Edema" in result["mean"]["note"]
    assert result["tasks"]["Cardiomegaly"]["auroc"] is not None


def test_unparsable_path_and_missing_key_column(tmp_path):
    _, preds = make_data(5, seed=19)
    preds.loc[1, "Path"] = "images/x.jpg"
    with pytest.raises(CSVFormatError, match=r"row 3, column 'Path': cannot find patient/study/view"):
        metrics.load_predictions(preds)
    with pytest.raises(CSVFormatError, match=r"no 'Path' \(image level\) or 'Study'"):
        metrics.load_predictions(preds.drop(columns="Path"))
    with pytest.raises(CSVFormatError, match="file not found"):
        metrics.load_predictions(tmp_path / "missing.csv")


def test_conflicting_duplicate_labels():
    labels, preds = make_data(5, seed=20, max_views=1)
    conflict = pd.concat([labels, labels.iloc[[0]].assign(Edema="1.0" if labels.loc[0, "Edema"] != "1.0" else "0.0")],
                         ignore_index=True)
    with pytest.raises(CSVFormatError, match="appears in rows 2, 7 with different labels"):
        metrics.evaluate(conflict, preds)
    same = pd.concat([labels, labels.iloc[[0]]], ignore_index=True)  # agreeing copies are merged
    assert metrics.evaluate(same, preds, bootstrap=0)["counts"]["labels"] == len(labels)
