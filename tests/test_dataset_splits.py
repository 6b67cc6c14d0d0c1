"""check-splits: patient-disjoint splits pass, shared patients are listed with their files."""

from __future__ import annotations

import pytest

from chexphoto.cli import main
from chexphoto.dataset import find_shared_patients, load_csv


def _write(path, rows: list[str], prefix: str = "CheXpert-v1.0-small/train"):
    path.write_text("Path,Cardiomegaly\n" + "".join(f"{prefix}/{r},1.0\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def splits(tmp_path):
    train = _write(tmp_path / "train.csv", ["patient00001/study1/view1_frontal.jpg",
                                            "patient00001/study2/view1_frontal.jpg",
                                            "patient00002/study1/view1_frontal.jpg",
                                            "patient00003/study1/view1_frontal.jpg"])
    valid = _write(tmp_path / "valid.csv", ["patient64541/study1/view1_frontal.jpg",
                                            "patient64542/study1/view1_frontal.jpg"], "CheXpert-v1.0-small/valid")
    # a CheXphoto CSV: other folders before the patient, same patient ids
    photos = _write(tmp_path / "photos.csv", ["patient00003/study1/view1_frontal.jpg",
                                              "patient64542/study1/view1_frontal.jpg",
                                              "patient70000/study1/view1_frontal.jpg"],
                    "CheXphoto-v1.0/train/natural/nokia10k")
    return train, valid, photos


def test_disjoint_splits_exit_0(splits, capsys):
    train, valid, _ = splits
    assert main(["check-splits", str(train), str(valid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: no patient appears in more than one of the 2 CSVs")
    assert f"{train}: 3 patients" in out and f"{valid}: 2 patients" in out


def test_shared_patients_are_listed_with_their_files_and_exit_1(splits, capsys):
    train, valid, photos = splits
    assert main(["check-splits", str(train), str(valid), str(photos)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL: 2 patients appear in more than one CSV")
    assert f"  patient00003: {train}, {photos}\n" in out
    assert f"  patient64542: {valid}, {photos}\n" in out
    assert f"{train} & {photos}: 1 patients" in out and f"{valid} & {photos}: 1 patients" in out
    assert "patient00001" not in out and "patient70000" not in out


def test_library_result(splits):
    train, valid, photos = splits
    result = find_shared_patients([load_csv(train), valid, photos])
    assert not result.disjoint
    assert result.shared == {"patient00003": (str(train), str(photos)), "patient64542": (str(valid), str(photos))}
    assert result.patients_per_file == (3, 2, 3)
    assert find_shared_patients([train, valid]).disjoint


def test_a_patient_in_three_files(splits, tmp_path):
    train, valid, photos = splits
    extra = _write(tmp_path / "extra.csv", ["patient00003/study9/view1_frontal.jpg"])
    result = find_shared_patients([train, valid, photos, extra])
    assert result.shared["patient00003"] == (str(train), str(photos), str(extra))
    assert result.pair_counts()[(str(train), str(extra))] == 1


def test_needs_two_distinct_csvs(splits, capsys):
    train, _, _ = splits
    assert main(["check-splits", str(train)]) == 2
    assert "at least two CSVs" in capsys.readouterr().err
    assert main(["check-splits", str(train), str(train.parent / "." / train.name)]) == 2
    assert "given twice" in capsys.readouterr().err


def test_missing_file_is_exit_2(splits, tmp_path, capsys):
    train, _, _ = splits
    assert main(["check-splits", str(train), str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
