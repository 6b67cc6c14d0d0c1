"""The shared CheXpert CSV conventions: path parsing, reading as text, validation messages."""

from __future__ import annotations

import pandas as pd
import pytest

from chexphoto.csvschema import (
    OBSERVATIONS,
    CSVFormatError,
    ImageKey,
    PathParseError,
    csv_line_number,
    csv_row_number,
    label_columns,
    numeric_labels,
    parse_label,
    parse_path,
    read_csv,
    split_from_path,
    validate,
)

VALID_PATHS = [
    # (path, patient, study, view, split)
    ("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
     "patient00001", "study1", "view1_frontal", "train"),
    ("CheXpert-v1.0\\valid\\patient64541\\study1\\view1_frontal.jpg",
     "patient64541", "study1", "view1_frontal", "valid"),
    ("./CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg",
     "patient00002", "study2", "view2_lateral", "train"),
    ("patient00003/study1/view1_frontal.jpg", "patient00003", "study1", "view1_frontal", None),
    ("CheXphoto-v1.0/train/synthetic/digital/patient00001/study1/view1_frontal.jpg",
     "patient00001", "study1", "view1_frontal", "train"),
    ("CheXphoto-v1.0/train/natural/nokia10k/patient00005/study3/view1_frontal.jpg",
     "patient00005", "study3", "view1_frontal", "train"),
    ("CheXphoto-v1.0/valid/natural/patient64600/study1/view1_frontal.jpg",
     "patient64600", "study1", "view1_frontal", "valid"),
    ("CheXpert-v1.0/test/patient65000/study1/view1_frontal.JPG",
     "patient65000", "study1", "view1_frontal", "test"),
    ("data/patient1/study10/view1_frontal.png", "patient1", "study10", "view1_frontal", None),
    ("data/patient1234567/study1/view3.jpeg", "patient1234567", "study1", "view3", None),
    ("/abs/olute//patient00007/study1/view1_frontal.jpg",
     "patient00007", "study1", "view1_frontal", None),
    ("TRAIN/Patient00008/Study2/view1_frontal.jpg", "Patient00008", "Study2", "view1_frontal", "train"),
    ("train/patient00009/study1/view1.frontal.jpg", "patient00009", "study1", "view1.frontal", "train"),
    ("train/patient00010/study1/view1_frontal", "patient00010", "study1", "view1_frontal", "train"),
    # the nearest split before the patient wins
    ("test/copy/train/patient00011/study1/v.jpg", "patient00011", "study1", "v", "train"),
]

INVALID_PATHS = [
    "",
    "   ",
    "view1_frontal.jpg",
    "CheXpert-v1.0-small/train/study1/view1_frontal.jpg",  # no patient
    "CheXpert-v1.0-small/train/patient00001/view1_frontal.jpg",  # patient without study
    "CheXpert-v1.0-small/train/patient00001/study1/extra/view1_frontal.jpg",  # folder after study
    "CheXpert-v1.0-small/train/patient00001/study1/",  # no file
    "CheXpert-v1.0-small/train/patient/study1/view1_frontal.jpg",  # patient without a number
    "CheXpert-v1.0-small/train/patient00001/study/view1_frontal.jpg",  # study without a number
    "CheXpert-v1.0-small/train/patient00001/study1/.jpg",  # no view name
    "train/study1/patient00001/view1_frontal.jpg",  # study before patient
]


@pytest.mark.parametrize(("path", "patient", "study", "view", "split"), VALID_PATHS)
def test_parse_path_reads_odd_but_valid_paths(path, patient, study, view, split):
    assert parse_path(path) == ImageKey(patient, study, view, split)
    assert parse_path(path).study_key == (patient, study)
    assert parse_path(path).match_key == (patient, study, view)


@pytest.mark.parametrize("path", INVALID_PATHS)
def test_parse_path_rejects_paths_without_patient_study_view(path):
    with pytest.raises(PathParseError, match="path"):
        parse_path(path)


def test_split_from_path_also_for_unparsable_paths():
    assert split_from_path("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg") == "valid"
    assert split_from_path("somewhere/Test/images/x.jpg") == "test"
    assert split_from_path("somewhere/images/x.jpg") is None


@pytest.mark.parametrize(("text", "value"), [
    ("1.0", 1.0), ("1", 1.0), ("0.0", 0.0), ("0", 0.0), ("-1.0", -1.0), ("-1", -1.0), (" 1.0 ", 1.0),
    ("1.00", 1.0), ("-0", 0.0), ("", None), ("  ", None), ("nan", None),
])
def test_parse_label_accepts_chexpert_spellings(text, value):
    assert parse_label(text) == value


@pytest.mark.parametrize("text", ["2", "0.5", "yes", "-2.0", "NA", "1,0", "inf"])
def test_parse_label_rejects_other_values(text):
    with pytest.raises(ValueError):
        parse_label(text)


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA,Cardiomegaly,Edema,Notes\n"


def test_read_csv_keeps_every_cell_as_text(tmp_path):
    csv = _write(tmp_path / "a.csv", HEADER
                 + "train/patient1/study1/view1_frontal.jpg,Female,068,Frontal,AP,1.0,,\"a, b\"\n"
                 + "train/patient2/study1/view1_frontal.jpg,Male,70,Frontal,PA,1,NA,nan\n")
    df = read_csv(csv)
    assert df["Age"].tolist() == ["068", "70"]
    assert df["Cardiomegaly"].tolist() == ["1.0", "1"]
    assert df["Edema"].tolist() == ["", "NA"]
    assert df["Notes"].tolist() == ["a, b", "nan"]
    assert label_columns(df) == ["Cardiomegaly", "Edema"]


def test_read_csv_without_path_column_names_file_and_column(tmp_path):
    csv = _write(tmp_path / "nopath.csv", "Image,Cardiomegaly\nx.jpg,1.0\n")
    with pytest.raises(CSVFormatError) as info:
        read_csv(csv)
    assert str(csv) in str(info.value) and "'Path'" in str(info.value)
    assert info.value.column == "Path"


def test_read_csv_missing_and_empty_files(tmp_path):
    with pytest.raises(CSVFormatError, match="file not found"):
        read_csv(tmp_path / "missing.csv")
    with pytest.raises(CSVFormatError, match="not a readable CSV"):
        read_csv(_write(tmp_path / "empty.csv", ""))


def test_validate_names_file_line_and_column_of_a_bad_label(tmp_path):
    csv = _write(tmp_path / "bad.csv", HEADER
                 + "train/patient1/study1/view1_frontal.jpg,F,1,Frontal,AP,1.0,0.0,\n"
                 + "train/patient1/study1/view2_lateral.jpg,F,1,Lateral,,0.0,2.0,\n")
    with pytest.raises(CSVFormatError) as info:
        validate(read_csv(csv), str(csv))
    message = str(info.value)
    assert message.startswith(f"{csv}, row 3, column 'Edema': ")
    assert "'2.0'" in message and "not one of 1, 0, -1 or blank" in message
    assert (info.value.file, info.value.row, info.value.column) == (str(csv), 3, "Edema")


def test_validate_names_file_line_and_column_of_a_bad_path(tmp_path):
    csv = _write(tmp_path / "badpath.csv", HEADER
                 + "train/patient1/study1/view1_frontal.jpg,F,1,Frontal,AP,1.0,0.0,\n"
                 + "train/patient1/study1/view2_lateral.jpg,F,1,Lateral,,0.0,,\n"
                 + "train/patient2/view1_frontal.jpg,F,1,Frontal,AP,,,\n")
    with pytest.raises(CSVFormatError) as info:
        validate(read_csv(csv), str(csv))
    assert str(info.value).startswith(f"{csv}, row 4, column 'Path': ")
    assert "train/patient2/view1_frontal.jpg" in str(info.value)


def test_validate_row_is_the_line_seen_in_an_editor_despite_blank_lines_and_multiline_cells(tmp_path):
    # line 1 header, 2-3 one record with a quoted two-line note, 4 blank (pandas skips it),
    # 5 a good row, 6 the bad label
    csv = _write(tmp_path / "lines.csv", HEADER
                 + "train/patient1/study1/view1_frontal.jpg,F,1,Frontal,AP,1.0,,\"first\nsecond\"\n"
                 + "\n"
                 + "train/patient2/study1/view1_frontal.jpg,F,1,Frontal,AP,1.0,,\n"
                 + "train/patient3/study1/view1_frontal.jpg,F,1,Frontal,AP,yes,,\n")
    df = read_csv(csv)
    assert len(df) == 3
    with pytest.raises(CSVFormatError) as info:
        validate(df, str(csv))
    assert info.value.row == 6 and info.value.column == "Cardiomegaly"
    assert csv_line_number(csv, 0) == 2 and csv_line_number(csv, 1) == 5
    # without a readable file, the plain count (header = row 1) is used
    assert csv_line_number(None, 2) == csv_row_number(2) == 4
    assert csv_line_number(tmp_path / "nope.csv", 0) == 2


def test_validate_accepts_extra_columns_and_all_label_spellings(tmp_path):
    rows = [f"train/patient{i}/study1/view1_frontal.jpg,F,1,Frontal,AP,{v},{w},extra"
            for i, (v, w) in enumerate([("1.0", ""), ("1", "-1"), ("-1.0", "0"), ("0.0", " 1.0 ")])]
    csv = _write(tmp_path / "ok.csv", HEADER + "\n".join(rows) + "\n")
    df = read_csv(csv)
    validate(df, str(csv))
    numbers = numeric_labels(df)
    assert numbers["Cardiomegaly"].tolist() == [1.0, 1.0, -1.0, 0.0]
    assert numbers["Edema"].isna().tolist() == [True, False, False, False]


def test_csv_format_error_message_without_location():
    assert str(CSVFormatError("bad")) == "bad"
    assert str(CSVFormatError("bad", file="a.csv", row=3, column="Edema")) == "a.csv, row 3, column 'Edema': bad"


def test_observations_are_the_fourteen_chexpert_columns():
    assert len(OBSERVATIONS) == 14 and OBSERVATIONS[0] == "No Finding" and OBSERVATIONS[-1] == "Support Devices"
    assert label_columns(pd.DataFrame(columns=["Path", "Edema", "No Finding", "Other"])) == ["No Finding", "Edema"]


def test_numeric_labels_blank_and_nan_text_are_missing_and_dtype_is_float():
    df = pd.DataFrame({"Path": ["a", "b", "c"], "Edema": ["", "NaN", ""], "Fracture": ["1", "0", "-1"]}, dtype=str)
    numbers = numeric_labels(df)
    assert numbers["Edema"].isna().all()
    assert numbers["Fracture"].tolist() == [1.0, 0.0, -1.0]
    assert all(str(dtype) == "float64" for dtype in numeric_labels(df.iloc[:0]).dtypes)
