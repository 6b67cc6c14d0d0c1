"""Table 1 / Table 3 counting rules and the stats command's output forms."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import numpy as np
import pytest

from chexphoto.cli import main
from chexphoto.csvschema import OBSERVATIONS
from chexphoto.dataset import LabelCounts, compute_stats, load_csv, percent_text
from chexphoto.dataset import stats as tables

# A hand-computed example. Studies are (patient, study) pairs: patient1/study1 and patient2/study1
# are different studies.
SMALL = """Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Edema,Site
CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,1.0,,a
CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg,Female,68,Lateral,,,-1.0,0.0,a
CheXpert-v1.0-small/train/patient00001/study2/view1_frontal.jpg,Female,69,Frontal,AP,,0.0,1,b
CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,40,Frontal,PA,,,-1,c
CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,33,Frontal,PA,0.0,1,1.0,d
"""
SMALL_LABELS = {
    "No Finding": {"positive": 1, "uncertain": 0, "negative": 4},
    "Cardiomegaly": {"positive": 2, "uncertain": 1, "negative": 2},
    "Edema": {"positive": 2, "uncertain": 1, "negative": 2},
}

# The paper's Table 1 (Nokia10k, 10,507 images): counts and the percentages it prints.
PAPER_TABLE1 = {
    "No Finding": ((972, "9.25"), (0, "0.00"), (9535, "90.75")),
    "Enlarged Cardiomediastinum": ((518, "4.93"), (600, "5.71"), (9389, "89.36")),
    "Cardiomegaly": ((1313, "12.50"), (370, "3.52"), (8824, "83.98")),
    "Lung Opacity": ((5184, "49.34"), (213, "2.03"), (5110, "48.63")),
    "Lung Lesion": ((415, "3.95"), (78, "0.74"), (10014, "95.31")),
    "Edema": ((2553, "24.30"), (634, "6.03"), (7320, "69.67")),
    "Consolidation": ((671, "6.39"), (1315, "12.52"), (8521, "81.10")),
    "Pneumonia": ((263, "2.50"), (885, "8.42"), (9359, "89.07")),
    "Atelectasis": ((1577, "15.01"), (1595, "15.18"), (7335, "69.81")),
    "Pneumothorax": ((957, "9.11"), (166, "1.58"), (9384, "89.31")),
    "Pleural Effusion": ((4115, "39.16"), (607, "5.78"), (5785, "55.06")),
    "Pleural Other": ((170, "1.62"), (127, "1.21"), (10210, "97.17")),
    "Fracture": ((391, "3.72"), (31, "0.30"), (10085, "95.98")),
    "Support Devices": ((5591, "53.21"), (48, "0.46"), (4868, "46.33")),
}


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(SMALL, encoding="utf-8")
    return path


def test_hand_computed_example(small_csv):
    stats = compute_stats(load_csv(small_csv))
    assert (stats.images, stats.patients, stats.studies) == (5, 3, 4)
    assert {name: counts.as_dict() for name, counts in stats.labels.items()} == SMALL_LABELS
    assert list(stats.labels) == ["No Finding", "Cardiomegaly", "Edema"]  # only those present, CheXpert order
    assert stats.labels["Cardiomegaly"].percentages() == {"positive": "40.00", "uncertain": "20.00",
                                                           "negative": "40.00"}


def test_blanks_count_as_negative_and_rows_sum_to_images(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("Path,Edema,Fracture\n" + "".join(f"patient{i}/study1/v.jpg,,{'' if i % 2 else 'nan'}\n"
                                                       for i in range(7)), encoding="utf-8")
    stats = compute_stats(load_csv(path))
    assert stats.labels["Edema"] == LabelCounts(positive=0, uncertain=0, negative=7)
    assert stats.labels["Fracture"] == LabelCounts(positive=0, uncertain=0, negative=7)


@pytest.mark.parametrize(("count", "total", "text"), [
    (1, 3, "33.33"), (2, 3, "66.67"), (1, 32, "3.13"), (3, 32, "9.38"), (1, 8, "12.50"), (0, 5, "0.00"),
    (5, 5, "100.00"), (1, 200000, "0.00"), (1, 20000, "0.01"), (0, 0, "-"),
])
def test_percent_text_rounds_half_up_exactly(count, total, text):
    assert percent_text(count, total) == text


def test_percentages_reproduce_the_papers_table1():
    for name, cells in PAPER_TABLE1.items():
        counts = LabelCounts(*(count for count, _ in cells))
        assert counts.total == 10507, name
        assert list(counts.percentages().values()) == [pct for _, pct in cells], name


def test_percentages_sum_to_100_per_observation(tmp_path):
    rng = np.random.default_rng(7)
    n = 997  # prime, so percentages are never round numbers
    lines = ["Path," + ",".join(OBSERVATIONS)]
    for i in range(n):
        values = rng.choice(["1.0", "-1.0", "0.0", "", "1", "0"], size=len(OBSERVATIONS),
                            p=[0.2, 0.1, 0.2, 0.4, 0.05, 0.05])
        lines.append(f"train/patient{i // 3}/study{i % 3}/view1_frontal.jpg," + ",".join(values))
    path = tmp_path / "random.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = compute_stats(load_csv(path))
    assert list(stats.labels) == list(OBSERVATIONS)
    for name, counts in stats.labels.items():
        assert counts.total == n, name
        assert sum(Fraction(100 * getattr(counts, c), n) for c in tables.CATEGORIES) == 100
        rounded = sum(Fraction(p) for p in counts.percentages().values())
        assert abs(rounded - 100) <= Fraction(1, 100), name


def test_cli_json_single_csv_is_one_object_with_the_contract_shape(small_csv, capsys):
    assert main(["stats", str(small_csv), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj == {"csv": str(small_csv), "images": 5, "patients": 3, "studies": 4, "labels": SMALL_LABELS}
    assert list(obj) == ["csv", "images", "patients", "studies", "labels"]
    assert list(obj["labels"]) == ["No Finding", "Cardiomegaly", "Edema"]
    assert all(list(v) == ["positive", "uncertain", "negative"] for v in obj["labels"].values())
    assert all(type(n) is int for v in obj["labels"].values() for n in v.values())


def test_cli_json_several_csvs_is_a_list_in_argument_order(small_csv, tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text("Path,Sex,Extra\npatient9/study1/view1_frontal.jpg,F,x\n", encoding="utf-8")
    assert main(["stats", str(other), str(small_csv), "--json"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert isinstance(objs, list) and [o["csv"] for o in objs] == [str(other), str(small_csv)]
    assert objs[0] == {"csv": str(other), "images": 1, "patients": 1, "studies": 1, "labels": {}}


def test_cli_default_is_a_readable_table(small_csv, capsys):
    assert main(["stats", str(small_csv)]) == 0
    out = capsys.readouterr().out
    assert "Table 3" in out and "Table 1" in out and "…" not in out
    assert "Positive (%)" in out and "Uncertain (%)" in out and "Negative (%)" in out
    assert "2 (40.00)" in out and "1 (20.00)" in out and "4 (80.00)" in out
    lines = [line for line in out.splitlines() if str(small_csv) in line and "Table" not in line]
    assert lines and lines[0].split()[-3:] == ["3", "4", "5"]


def test_cli_markdown(small_csv, capsys):
    assert main(["stats", str(small_csv), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| CSV | Patients | Studies | Images |" in out
    assert f"| {small_csv} | 3 | 4 | 5 |" in out
    assert "| Observation | Positive (%) | Uncertain (%) | Negative (%) |" in out
    assert "| Cardiomegaly | 2 (40.00) | 1 (20.00) | 2 (40.00) |" in out
    assert "| No Finding | 1 (20.00) | 0 (0.00) | 4 (80.00) |" in out


def test_cli_csv_is_one_parseable_table_with_both_tables(small_csv, capsys):
    assert main(["stats", str(small_csv), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == list(tables.CSV_COLUMNS)
    table3 = [r for r in rows if r["table"] == "3"]
    assert table3 == [{"csv": str(small_csv), "table": "3", "observation": "", "patients": "3", "studies": "4",
                       "images": "5", "positive": "", "positive_pct": "", "uncertain": "", "uncertain_pct": "",
                       "negative": "", "negative_pct": ""}]
    table1 = {r["observation"]: r for r in rows if r["table"] == "1"}
    assert list(table1) == ["No Finding", "Cardiomegaly", "Edema"]
    edema = table1["Edema"]
    assert (edema["positive"], edema["positive_pct"], edema["uncertain"], edema["negative_pct"]) == \
        ("2", "40.00", "1", "40.00")


def test_empty_csv_has_zero_counts_and_no_division_by_zero(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("Path,Edema\n", encoding="utf-8")
    assert main(["stats", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "csv": str(path), "images": 0, "patients": 0, "studies": 0,
        "labels": {"Edema": {"positive": 0, "uncertain": 0, "negative": 0}}}
    assert main(["stats", str(path), "--markdown"]) == 0
    assert "| Edema | 0 (-) | 0 (-) | 0 (-) |" in capsys.readouterr().out


def test_stats_of_a_missing_file_is_a_clean_error(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
