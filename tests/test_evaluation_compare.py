"""compare(): paired bootstrap differences between conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chexphoto.evaluation import compare, metrics
from test_evaluation_metrics import TASKS, make_data


def test_identical_conditions_differ_by_zero_with_p_one():
    labels, preds = make_data(40, seed=1)
    result = compare.compare(labels, {"A": preds, "B": preds.copy()}, bootstrap=200, seed=0)
    assert result["reference"] == "A" and result["conditions"] == ["A", "B"]
    (diff,) = result["differences"]
    for entry in [*diff["tasks"].values(), diff["mean"]]:
        assert entry["difference"] == 0.0 and entry["ci"] == [0.0, 0.0] and entry["p_value"] == 1.0


def test_clearly_better_model_has_positive_difference_and_small_p():
    labels, good = make_data(80, seed=2, signal=0.6)
    rng = np.random.default_rng(0)
    weak = good.copy()
    weak[TASKS] = np.clip(0.5 * good[TASKS].to_numpy() + 0.5 * rng.random((len(good), len(TASKS))), 0, 1)
    result = compare.compare(labels, {"weak": weak, "good": good}, bootstrap=500, seed=0)
    mean = result["differences"][0]["mean"]
    assert mean["difference"] > 0.05 and mean["ci"][0] > 0 and mean["p_value"] < 0.01
    assert mean["difference"] == pytest.approx(
        result["results"]["good"]["mean"]["auroc"] - result["results"]["weak"]["mean"]["auroc"], abs=1e-12)


def test_only_common_keys_compared_and_drops_reported():
    labels, preds = make_data(30, seed=3)
    photo = preds.assign(Path=preds["Path"].str.replace("CheXpert-v1.0", "CheXphoto-v1.0/natural", regex=False))
    photo = photo.iloc[5:]
    result = compare.compare(labels, [("xray", preds), ("photo", photo)], bootstrap=100, seed=4)
    assert result["common"]["keys"] == len(photo)
    assert result["common"]["dropped"] == {"xray": 5, "photo": 0}
    assert any("xray: 5 of its" in w for w in result["warnings"])
    # each condition's numbers equal evaluate() on the same keys with the same seed
    alone = metrics.evaluate(labels, photo, bootstrap=100, seed=4, allow_missing=True)
    assert result["results"]["photo"]["tasks"] == alone["tasks"]
    assert result["results"]["photo"]["mean"] == alone["mean"]


def test_all_conditions_are_scored_on_the_same_resamples():
    labels, preds = make_data(25, seed=5)
    shifted = preds.copy()
    shifted[TASKS] = preds[TASKS] * 0.5  # monotone transform: same AUROC in every resample
    result = compare.compare(labels, {"a": preds, "b": shifted, "c": preds}, bootstrap=100, seed=1)
    for diff in result["differences"]:
        assert diff["mean"]["ci"] == [0.0, 0.0] and diff["mean"]["p_value"] == 1.0


def test_p_value_definition():
    assert compare.bootstrap_p_value(np.zeros(99)) == 1.0
    assert compare.bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)
    d = np.r_[np.full(10, -1.0), np.full(90, 1.0)]
    assert compare.bootstrap_p_value(d) == pytest.approx(2 * 11 / 101)
    assert compare.bootstrap_p_value(np.array([np.nan])) is None


def test_compare_needs_two_distinct_conditions():
    labels, preds = make_data(5, seed=6)
    with pytest.raises(ValueError, match="at least two conditions"):
        compare.compare(labels, {"a": preds})
    with pytest.raises(ValueError, match="given twice: a"):
        compare.compare(labels, [("a", preds), ("a", preds)])
    other = pd.DataFrame({"Path": ["CheXpert-v1.0/valid/patient10000/study1/view1_frontal.jpg"],
                          **{t: [0.5] for t in TASKS}})
    disjoint = preds[~preds["Path"].str.contains("patient10000/")]
    with pytest.raises(ValueError, match="no image/study in common"):
        compare.compare(labels, {"a": other, "b": disjoint})


def test_study_level_compare_mixes_study_and_image_predictions():
    labels, preds = make_data(30, seed=7, studies=2)
    study = preds.assign(Study=preds["Path"].str.rsplit("/", n=1).str[0]).groupby("Study", as_index=False)[TASKS].max()
    result = compare.compare(labels, {"images": preds, "studies": study}, level="study", bootstrap=50)
    assert result["level"] == "study" and result["common"]["keys"] == 60
    assert result["differences"][0]["mean"] == {"difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0}
