"""Patient-level sampling: determinism, whole patients, exclusions, order and bytes kept."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter

import pytest

from chexphoto.cli import main
from chexphoto.csvschema import read_csv
from chexphoto.dataset import choose_patients, load_csv, sample_patients

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly", "Edema", "Note"]
NOTES = ["plain", "with, comma", 'with "quotes"', " leading space", "ünïcode", "", "1.0", "007"]


def _make_rows(patients: int = 40, seed: int = 5) -> list[list[str]]:
    """Rows of ``patients`` patients with 1-4 studies of 1-2 views, interleaved (not sorted)."""
    rng = random.Random(seed)
    rows = []
    for p in range(1, patients + 1):
        for s in range(1, rng.randint(1, 4) + 1):
            for v in range(1, rng.randint(1, 2) + 1):
                rows.append([f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/view{v}_"
                             f"{'frontal' if v == 1 else 'lateral'}.jpg",
                             rng.choice(["Male", "Female"]), str(rng.randint(18, 90)),
                             "Frontal" if v == 1 else "Lateral", "AP" if v == 1 else "",
                             rng.choice(["1.0", ""]), rng.choice(["1.0", "1", "-1.0", "0.0", ""]),
                             rng.choice(["1", "0", "-1", ""]), rng.choice(NOTES)])
    rng.shuffle(rows)
    return rows


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([HEADER, *rows])
    return buffer.getvalue()


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(_csv_text(_make_rows()), encoding="utf-8")
    return path


def _patient(row_path: str) -> str:
    return row_path.split("/")[2]


def test_sample_writes_every_image_of_each_chosen_patient_in_original_order_byte_for_byte(source, tmp_path):
    out = tmp_path / "sample.csv"
    result = sample_patients(source, 10, seed=3, out=out)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    chosen = set(result.patients)
    assert len(chosen) == 10 and result.available == 40 and result.excluded == 0
    expected = [lines[0]] + [line for line in lines[1:] if _patient(line) in chosen]
    # every row of the chosen patients, nothing else, in file order, each line exactly as in the input
    assert out.read_text(encoding="utf-8") == "".join(expected)
    assert result.images == len(expected) - 1
    assert result.studies == len({tuple(line.split("/")[2:4]) for line in expected[1:]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.csv", "train.csv"]  # no temp files left


def test_sample_keeps_values_that_need_quoting_or_span_lines(tmp_path):
    rows = _make_rows(patients=6)
    rows[0][-1] = "two\nlines"
    rows[1][-1] = "  "
    source = tmp_path / "odd.csv"
    source.write_text(_csv_text(rows), encoding="utf-8")
    out = tmp_path / "out.csv"
    sample_patients(source, 6, seed=0, out=out)
    assert read_csv(out).equals(read_csv(source))


def test_same_seed_same_sample_and_different_seeds_differ(source, tmp_path):
    outs = []
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        sample_patients(source, 10, seed=seed, out=tmp_path / f"{name}.csv")
        outs.append((tmp_path / f"{name}.csv").read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    assert set(choose_patients(map(str, range(40)), 10, 1)) != set(choose_patients(map(str, range(40)), 10, 2))


def test_choice_ignores_row_order_and_grows_nested(source, tmp_path):
    shuffled = tmp_path / "shuffled.csv"
    rows = _make_rows()
    random.Random(99).shuffle(rows)
    shuffled.write_text(_csv_text(rows), encoding="utf-8")
    a = sample_patients(source, 12, seed=4, out=tmp_path / "a.csv")
    b = sample_patients(shuffled, 12, seed=4, out=tmp_path / "b.csv")
    assert a.patients == b.patients
    bigger = sample_patients(source, 20, seed=4, out=tmp_path / "c.csv")
    assert set(a.patients) < set(bigger.patients)


def test_choice_is_uniform():
    ids = [f"patient{i:05d}" for i in range(10)]
    counts = Counter(p for seed in range(3000) for p in choose_patients(ids, 3, seed))
    # each patient is chosen with probability 3/10: 900 of 3000 draws, sd ~25
    assert all(abs(counts[p] - 900) < 125 for p in ids), counts


def test_several_excludes_and_cli_exclude(source, tmp_path, capsys):
    valid, test = tmp_path / "valid.csv", tmp_path / "test.csv"
    valid.write_text(_csv_text([r for r in _make_rows() if _patient(r[0]) in {"patient00001", "patient00002"}]),
                     encoding="utf-8")
    test.write_text(_csv_text([r for r in _make_rows() if _patient(r[0]) == "patient00040"]), encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["sample", "--csv", str(source), "--patients", "37", "--seed", "9", "--out", str(out),
                 "--exclude", str(valid), "--exclude", str(test)]) == 0
    assert "sampled 37 of 37 patients (seed 9, 3 excluded)" in capsys.readouterr().out
    out_patients = {_patient(p) for p in read_csv(out)["Path"]}
    assert len(out_patients) == 37
    assert not out_patients & {"patient00001", "patient00002", "patient00040"}


def test_exclude_and_refuse_too_many(source, tmp_path, capsys):
    other = tmp_path / "valid.csv"
    gone = {"patient00001", "patient00002", "patient00003", "patient00040"}
    other.write_text(_csv_text([r for r in _make_rows() if _patient(r[0]) in gone]), encoding="utf-8")
    out = tmp_path / "out.csv"
    result = sample_patients(source, 36, seed=0, out=out, exclude=[other])
    assert (result.available, result.excluded) == (36, 4)
    out_patients = {_patient(p) for p in read_csv(out)["Path"]}
    assert len(out_patients) == 36 and not out_patients & gone
    # one more than available: refused, nothing written
    out2 = tmp_path / "out2.csv"
    assert main(["sample", "--csv", str(source), "--patients", "37", "--seed", "0", "--out", str(out2),
                 "--exclude", str(other)]) == 2
    err = capsys.readouterr().err
    assert "asked for 37 patients but only 36 are available" in err and "4 excluded" in err
    assert not out2.exists()
    assert main(["sample", "--csv", str(source), "--patients", "41", "--seed", "0", "--out", str(out2)]) == 2
    assert "only 40 are available" in capsys.readouterr().err
    assert main(["sample", "--csv", str(source), "--patients", "0", "--seed", "0", "--out", str(out2)]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert not out2.exists()


def test_cli_sample_in_process(source, tmp_path, capsys):
    out = tmp_path / "sub" / "sample.csv"
    assert main(["sample", "--csv", str(source), "--patients", "5", "--seed", "11", "--out", str(out)]) == 0
    message = capsys.readouterr().out
    assert message.startswith("sampled 5 of 40 patients (seed 11):") and str(out) in message
    table = load_csv(out)
    assert table.count_patients() == 5
    assert list(table.frame.columns) == HEADER
    # the same as the library call
    sample_patients(source, 5, 11, tmp_path / "lib.csv")
    assert out.read_bytes() == (tmp_path / "lib.csv").read_bytes()


def test_refuses_to_overwrite_an_input(source, tmp_path, capsys):
    before = source.read_bytes()
    assert main(["sample", "--csv", str(source), "--patients", "1", "--seed", "0", "--out", str(source)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert source.read_bytes() == before
