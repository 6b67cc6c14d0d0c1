"""The robustness table: build, write (CSV + JSON), load."""

from __future__ import annotations

import csv
import json

import pytest

from chexphoto.evaluation import robustness
from test_evaluation_metrics import TASKS


def fake_result(mean: float | None, *, ci_half: float = 0.02) -> dict:
    tasks = {t: {"auroc": None if mean is None else mean + 0.01 * (i - 2),
                 "ci": [None, None] if mean is None else [mean - ci_half, mean + ci_half],
                 "n": 100, "positives": 30, "excluded_uncertain": 3} for i, t in enumerate(TASKS)}
    return {"level": "image", "tasks": tasks,
            "mean": {"auroc": mean, "ci": [None, None] if mean is None else [mean - ci_half, mean + ci_half]}}


def make_results() -> dict:
    # inserted out of order on purpose: the table orders transforms and levels itself
    return {("zoom", 2): fake_result(0.70), ("blur", 2): fake_result(0.75), ("blur", 1): fake_result(0.85),
            ("zoom", 1): fake_result(0.80)}


def test_build_table_values():
    table = robustness.build_table(fake_result(0.90), make_results())
    assert table["transforms"] == ["blur", "zoom"] and table["levels"] == [1, 2]
    assert [(r["transform"], r["level"]) for r in table["rows"]] == [("blur", 1), ("blur", 2), ("zoom", 1), ("zoom", 2)]
    blur1 = table["rows"][0]
    assert blur1["auroc"] == 0.85 and blur1["drop"] == pytest.approx(0.05)
    assert blur1["relative_drop"] == pytest.approx(0.05 / 0.90)
    assert blur1["ci"] == [pytest.approx(0.83), pytest.approx(0.87)]
    assert blur1["tasks"]["Atelectasis"] == pytest.approx(0.83)
    assert [lv["auroc"] for lv in table["by_level"]] == [pytest.approx(0.825), pytest.approx(0.725)]
    assert [t["auroc"] for t in table["by_transform"]] == [pytest.approx(0.80), pytest.approx(0.75)]
    assert table["overall"]["auroc"] == pytest.approx(0.775) and table["overall"]["drop"] == pytest.approx(0.125)
    assert table["overall"]["cells"] == 4
    assert table["clean"]["auroc"] == 0.90


def test_undefined_cell_makes_its_aggregates_undefined():
    results = make_results()
    results[("zoom", 2)] = fake_result(None)
    table = robustness.build_table(fake_result(0.90), results)
    assert table["by_level"][1]["auroc"] is None and table["by_level"][0]["auroc"] is not None
    assert table["overall"]["auroc"] is None and table["rows"][-1]["drop"] is None


def test_write_load_round_trip_and_csv(tmp_path):
    table = robustness.build_table(fake_result(0.90), make_results())
    robustness.write(tmp_path / "bench", table)
    assert robustness.load(tmp_path / "bench") == table
    with open(tmp_path / "bench" / "robustness.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["transform", "level", "auroc", "ci_low", "ci_high", *TASKS, "drop", "relative_drop"]
    assert [(r["transform"], r["level"]) for r in rows] == [
        ("clean", "0"), ("blur", "1"), ("blur", "2"), ("zoom", "1"), ("zoom", "2"),
        ("mean", "1"), ("mean", "2"), ("mean", "all")]
    assert rows[1]["auroc"] == "0.850000" and rows[1]["drop"] == "0.050000" and rows[-1]["auroc"] == "0.775000"
    assert rows[-1]["ci_low"] == ""
    # byte-identical rewrite, no temporary files left behind
    before = (tmp_path / "bench" / "robustness.json").read_bytes()
    robustness.write(tmp_path / "bench", robustness.build_table(fake_result(0.90), dict(reversed(make_results().items()))))
    assert (tmp_path / "bench" / "robustness.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == ["robustness.csv", "robustness.json"]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="not an evaluate"):
        robustness.build_table({"x": 1}, {})
    other = fake_result(0.8)
    other["tasks"] = {"Edema": other["tasks"]["Edema"]}
    with pytest.raises(ValueError, match="scores tasks"):
        robustness.build_table(fake_result(0.9), {("blur", 1): other})
    with pytest.raises(ValueError, match=r"\(transform, level\) pairs"):
        robustness.build_table(fake_result(0.9), {"blur": fake_result(0.8)})
    with pytest.raises(FileNotFoundError, match="no robustness table"):
        robustness.load(tmp_path)
    (tmp_path / "robustness.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a robustness table"):
        robustness.load(tmp_path)
