"""load_csv / path_keys: same answers and errors as csvschema.parse_path / validate, in bulk."""

from __future__ import annotations

import random

import pytest

from chexphoto.cli import main
from chexphoto.csvschema import CSVFormatError, PathParseError, parse_path, read_csv, validate
from chexphoto.dataset import check_label_values, load_csv, path_keys

HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Edema,Site\n"


def _write(path, lines: list[str]):
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _row(patient: int, study: int = 1, view: str = "view1_frontal", labels=("", "1.0", "0.0"), site="A"):
    return (f"CheXpert-v1.0-small/train/patient{patient:05d}/study{study}/{view}.jpg,Female,50,Frontal,AP,"
            + ",".join(labels) + f",{site}")


ODD_PATHS = [
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
    "CheXpert-v1.0\\valid\\patient64541\\study1\\view1_frontal.jpg",
    "./CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg",
    "patient00003/study1/view1_frontal.jpg",
    "CheXphoto-v1.0/train/synthetic/digital/patient00001/study1/view1_frontal.jpg",
    "CheXpert-v1.0/test/patient65000/study1/view1_frontal.JPG",
    "a//patient7/study1/v.jpg",
    "patient8/./study1/v.jpg",
    "patient9/study1/v.jpg/",
    "PATIENT10/STUDY1/View1.Frontal.JPG",
    "patient11/study1/noext",
    "patient12/study1/trailingdot.",
    "patient13/study1/a..",
    "patient0١/study1/v.jpg",  # an Arabic-Indic digit: parse_path's \d takes it
    "patient_x-1/study-2_b/v.jpg",
]


def test_path_keys_equals_parse_path_on_odd_paths():
    keys = path_keys(ODD_PATHS)
    for path, (patient, study, view) in zip(ODD_PATHS, keys.itertuples(index=False), strict=True):
        expected = parse_path(path)
        assert (patient, study, view) == (expected.patient, expected.study, expected.view), path


def test_path_keys_equals_parse_path_on_random_paths():
    """Fuzz: random component soup; every path either gives parse_path's key or parse_path's error."""
    rng = random.Random(1234)
    anything = ["train", "valid", "x y", "", ".", "-", "CheXpert-v1.0-small", "ſtudy1", "patient3.jpg"]
    patients = ["patient1", "Patient00002", "PATIENT5-b", "patient_7x", "patientX", "patient", "patient0١", "pat1"]
    studies = ["study1", "STUDY22", "study4_", "Study-9", "study", "ſtudy1", "studyX"]
    files = ["v.jpg", "view1_frontal.jpg", "a.b.jpg", ".hidden", "x.", "a..", "noext", "V.JPG", "", "."]
    ok_paths, bad_paths = [], []
    for _ in range(3000):
        parts = [rng.choice(anything) for _ in range(rng.randint(0, 3))]
        parts += [rng.choice(patients), rng.choice(studies), rng.choice(files)]
        for _ in range(rng.choice([0, 0, 0, 1])):  # sometimes an extra or empty component somewhere
            parts.insert(rng.randint(0, len(parts)), rng.choice(anything + files))
        path = rng.choice(["/", "\\", "/"]).join(parts) + rng.choice(["", "", "", "/"])
        try:
            ok_paths.append((path, parse_path(path)))
        except PathParseError:
            bad_paths.append(path)
    assert len(ok_paths) > 100 and len(bad_paths) > 100
    keys = path_keys([p for p, _ in ok_paths])
    for (path, expected), got in zip(ok_paths, keys.itertuples(index=False), strict=True):
        assert tuple(got) == (expected.patient, expected.study, expected.view), path
    for path in bad_paths[:300]:
        with pytest.raises(CSVFormatError) as info:
            path_keys(["patient1/study1/v.jpg", path], file="f.csv")
        assert str(info.value).startswith("f.csv, row 3, column 'Path': ")


def test_path_keys_keeps_series_index():
    import pandas as pd

    keys = path_keys(pd.Series(["patient1/study1/v.jpg", "patient2/study3/w.png"], index=[10, 20]))
    assert keys.index.tolist() == [10, 20]
    assert keys.loc[20].tolist() == ["patient2", "study3", "w"]


def test_load_csv_keeps_extra_columns_and_text(tmp_path):
    csv = _write(tmp_path / "a.csv", [_row(1, labels=("1.0", "", "-1")), _row(1, 2, site="\"B, C\""),
                                      _row(2, view="view2_lateral")])
    table = load_csv(csv)
    assert list(table.frame.columns) == HEADER.strip().split(",")
    assert table.frame["Site"].tolist() == ["A", "B, C", "A"]
    assert table.frame["No Finding"].tolist() == ["1.0", "", ""]
    assert table.frame["Edema"].tolist() == ["-1", "0.0", "0.0"]
    assert table.keys.values.tolist() == [["patient00001", "study1", "view1_frontal"],
                                          ["patient00001", "study2", "view1_frontal"],
                                          ["patient00002", "study1", "view2_lateral"]]
    assert (table.images, table.count_patients(), table.count_studies()) == (3, 2, 3)
    assert table.patient_ids == {"patient00001", "patient00002"}


MALFORMED = [
    # (description, file text, expected line, expected column, words in the message)
    ("no Path column", "Image,Cardiomegaly\nx.jpg,1.0\n", None, "Path", ["no 'Path' column"]),
    ("label 2", HEADER + _row(1) + "\n" + _row(2, labels=("", "2", "")) + "\n", 3, "Cardiomegaly",
     ["'2'", "not one of 1, 0, -1 or blank"]),
    ("label word", HEADER + _row(1, labels=("", "", "positive")) + "\n", 2, "Edema", ["'positive'"]),
    ("label 0.5 after a blank line", HEADER + _row(1) + "\n\n" + _row(2, labels=("0.5", "", "")) + "\n", 4,
     "No Finding", ["'0.5'"]),
    ("path without study", HEADER + _row(1) + "\n" + "train/patient00002/view1_frontal.jpg,F,1,Frontal,AP,,,,\n",
     3, "Path", ["train/patient00002/view1_frontal.jpg", "patient/study/view"]),
    ("path without patient", HEADER + "train/study1/view1_frontal.jpg,F,1,Frontal,AP,,,,\n", 2, "Path",
     ["train/study1/view1_frontal.jpg"]),
    ("empty path", HEADER + _row(1) + "\n" + _row(2) + "\n" + ",F,1,Frontal,AP,,,,\n", 4, "Path", ["''"]),
    ("folder between study and file",
     HEADER + "train/patient00001/study1/x/view1_frontal.jpg,F,1,Frontal,AP,,,,\n", 2, "Path", ["/x/"]),
]


@pytest.mark.parametrize(("text", "line", "column", "words"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_csv_errors_name_file_line_and_column(tmp_path, text, line, column, words):
    csv = tmp_path / "bad.csv"
    csv.write_text(text, encoding="utf-8")
    with pytest.raises(CSVFormatError) as info:
        load_csv(csv)
    err = info.value
    assert (err.file, err.row, err.column) == (str(csv), line, column)
    message = str(err)
    assert message.startswith(str(csv))
    if line is not None:
        assert f"row {line}," in message
    assert f"column '{column}'" in message
    for word in words:
        assert word in message
    # csvschema.validate says the same thing about the same cell
    if line is not None:
        with pytest.raises(CSVFormatError) as slow:
            validate(read_csv(csv), str(csv))
        assert (slow.value.row, slow.value.column) == (line, column)
        assert str(slow.value) == message


@pytest.mark.parametrize("command", [["stats"], ["stats", "--json"], ["check-splits", "OTHER"],
                                     ["sample", "--patients", "1", "--seed", "0", "--out", "OUT", "--csv"]])
def test_every_command_rejects_a_malformed_csv_with_exit_2(tmp_path, capsys, command):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + _row(1) + "\n" + _row(2, labels=("", "", "yes")) + "\n", encoding="utf-8")
    other = _write(tmp_path / "other.csv", [_row(3)])
    argv = [str(other) if a == "OTHER" else str(tmp_path / "out.csv") if a == "OUT" else a for a in command]
    assert main([*argv, str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}, row 3, column 'Edema': label value 'yes' is not one of 1, 0, -1 or blank" in err
    assert not (tmp_path / "out.csv").exists()


def test_check_label_values_accepts_every_spelling(tmp_path):
    csv = _write(tmp_path / "ok.csv", [_row(1, labels=(" 1 ", "-1.00", "nan")), _row(2, labels=("", "-0", "0"))])
    check_label_values(read_csv(csv), csv)
    load_csv(csv)
