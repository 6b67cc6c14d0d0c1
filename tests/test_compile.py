"""`chexphoto compile` by CheXpeditor file names: layout, labels, every fault, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chexphoto.capture.compile import check_photo, compile_export
from chexphoto.capture.naming import make_filename
from chexphoto.cli import main
from chexphoto.csvschema import OBSERVATIONS, read_csv
from chexphoto.imageio import decode_image, encode_image

N_ROWS = 6
LABEL_CYCLE = ("1.0", "", "0.0", "-1.0", "1", "")


def csv_path_of(i: int, ext: str = "jpg") -> str:
    return f"CheXpert-v1.0-small/valid/patient{64541 + i}/study1/view1_frontal.{ext}"


def make_csv(tmp_path: Path, n: int = N_ROWS, ext: str = "jpg") -> Path:
    records = []
    for i in range(n):
        record = {"Path": csv_path_of(i, ext), "Sex": "Female" if i % 2 else "Male", "Age": str(40 + i),
                  "Frontal/Lateral": "Frontal", "AP/PA": "AP"}
        for j, obs in enumerate(OBSERVATIONS):
            record[obs] = LABEL_CYCLE[(i + j) % len(LABEL_CYCLE)]
        records.append(record)
    path = tmp_path / "valid.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def photo_bytes(i: int) -> bytes:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return encode_image(img, "jpg", quality=90)


def saved_name(seq: int, nonce: int, csv_path: str) -> str:
    """The name the camera server saves under (adds .jpg unless the name has a JPEG extension)."""
    name = make_filename(seq, nonce, csv_path)
    return name if name.lower().endswith((".jpg", ".jpeg")) else name + ".jpg"


def make_export(tmp_path: Path, rows=range(N_ROWS), ext: str = "jpg") -> Path:
    export = tmp_path / "export"
    export.mkdir(exist_ok=True)
    for i in rows:
        (export / saved_name(i, 1000 + i, csv_path_of(i, ext))).write_bytes(photo_bytes(i))
    (export / ".camera-state.json").write_text("{}")  # server state: ignored
    return export


def run(tmp_path, export, *extra, rows=f"0:{N_ROWS}", csv=None, out=None) -> int:
    csv = csv or tmp_path / "valid.csv"
    out = out or tmp_path / "MyPhotos"
    return main(["compile", "--csv", str(csv), "--rows", rows, "--export", str(export), "--out", str(out),
                 "--name", "iphone", "--quiet", *extra])


def natural(tmp_path) -> Path:
    return tmp_path / "MyPhotos" / "valid" / "natural"


def report(tmp_path) -> dict:
    return json.loads((natural(tmp_path) / "iphone.report.json").read_text())


def kinds(tmp_path) -> list[tuple[str, int | None]]:
    return [(p["kind"], p["row"]) for p in report(tmp_path)["problems"]]


def test_happy_path_layout_labels_and_byte_identical_copies(tmp_path, capsys):
    csv = make_csv(tmp_path)
    export = make_export(tmp_path)
    assert run(tmp_path, export) == 0
    out_csv = natural(tmp_path) / "iphone.csv"
    got = read_csv(out_csv)
    src = read_csv(csv)
    assert list(got.columns) == list(src.columns)
    # labels and metadata carried as text, byte for byte, in CSV order
    pd.testing.assert_frame_equal(got.drop(columns="Path"), src.drop(columns="Path"))
    assert got["Path"].tolist() == [
        f"MyPhotos/valid/natural/iphone/patient{64541 + i}/study1/view1_frontal.jpg" for i in range(N_ROWS)]
    for i, rel in enumerate(got["Path"]):
        assert (tmp_path / rel).read_bytes() == photo_bytes(i)
    rep = report(tmp_path)
    assert rep["problems"] == [] and rep["compiled"] == N_ROWS and rep["exit_code"] == 0
    assert not (natural(tmp_path) / "iphone" / "recapture.csv").exists()
    assert "compiled 6 of 6 rows" in capsys.readouterr().out

    # rerun: idempotent, nothing rewritten, same outputs
    before = {p: p.read_bytes() for p in (tmp_path / "MyPhotos").rglob("*") if p.is_file()}
    result = compile_export(csv, "0:6", export, tmp_path / "MyPhotos", "iphone")
    assert result.exit_code == 0 and result.written == 0
    after = {p: p.read_bytes() for p in (tmp_path / "MyPhotos").rglob("*") if p.is_file()}
    assert before == after


def test_sub_range_and_png_csv_paths_with_appended_jpg(tmp_path):
    make_csv(tmp_path, ext="png")
    export = make_export(tmp_path, rows=range(2, 5), ext="png")
    assert all(p.name.endswith(".png.jpg") for p in export.iterdir() if not p.name.startswith("."))
    assert run(tmp_path, export, rows="2:5") == 0
    got = read_csv(natural(tmp_path) / "iphone.csv")
    assert got["Path"].tolist() == [
        f"MyPhotos/valid/natural/iphone/patient{64541 + i}/study1/view1_frontal.jpg" for i in (2, 3, 4)]
    assert got["Age"].tolist() == ["42", "43", "44"]


def _assert_failed_without_output(tmp_path, expected_recapture: list[int]):
    nat = natural(tmp_path)
    assert not (nat / "iphone.csv").exists()
    # no photo was compiled: the set's folder holds at most the list of rows to shoot again
    assert sorted(p.name for p in (nat / "iphone").rglob("*") if p.is_file()) in ([], ["recapture.csv"])
    recapture = nat / "iphone" / "recapture.csv"
    if expected_recapture:
        rows = read_csv(recapture)
        src = read_csv(tmp_path / "valid.csv")
        pd.testing.assert_frame_equal(rows.reset_index(drop=True),
                                      src.iloc[expected_recapture].reset_index(drop=True))
    else:
        assert not recapture.exists()


def test_missing_row(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path, rows=[0, 1, 3, 4, 5])
    assert run(tmp_path, export) == 1
    assert kinds(tmp_path) == [("missing", 2)]
    _assert_failed_without_output(tmp_path, [2])


def test_duplicate_photos_for_one_row(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    (export / saved_name(3, 77, csv_path_of(3))).write_bytes(photo_bytes(3))  # byte-identical resend
    assert run(tmp_path, export) == 1
    problems = report(tmp_path)["problems"]
    assert [(p["kind"], p["row"]) for p in problems] == [("duplicate", 3)]
    assert len(problems[0]["files"]) == 2 and "byte-identical" in problems[0]["message"]
    _assert_failed_without_output(tmp_path, [3])


def test_embedded_path_disagrees_with_csv_row(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path, rows=[0, 1, 2, 3, 5])
    # seq 4 but the path of row 5: the photo cannot be proven to show row 4
    (export / saved_name(4, 9, csv_path_of(5))).write_bytes(photo_bytes(5))
    assert run(tmp_path, export) == 1
    assert kinds(tmp_path) == [("path_mismatch", 4)]
    _assert_failed_without_output(tmp_path, [4])


def test_seq_outside_range_and_stray_files(tmp_path):
    make_csv(tmp_path, n=8)
    export = make_export(tmp_path, rows=range(0, 7))
    (export / "notes.txt").write_text("hello")
    (export / "IMG_0001.JPG").write_bytes(photo_bytes(0))
    (export / "subdir").mkdir()
    assert run(tmp_path, export) == 1  # rows 0:6, photo of row 6 is outside
    found = sorted(kinds(tmp_path), key=str)
    assert found == sorted([("out_of_range", None), ("stray", None), ("stray", None), ("unparsable", None)], key=str)
    files = {p["kind"]: p["files"] for p in report(tmp_path)["problems"]}
    assert files["unparsable"] == ["IMG_0001.JPG"]
    _assert_failed_without_output(tmp_path, [])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "png"])
def test_corrupt_photo_is_reported_not_compiled(tmp_path, damage):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    victim = export / saved_name(1, 1001, csv_path_of(1))
    data = victim.read_bytes()
    victim.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\xff\xd8\xff" + b"x" * 300,
                        "png": encode_image(np.zeros((8, 8), np.uint8), "png")}[damage])
    assert run(tmp_path, export) == 1
    assert kinds(tmp_path) == [("corrupt", 1)]
    _assert_failed_without_output(tmp_path, [1])


def test_check_photo():
    assert check_photo(photo_bytes(0)) is None
    assert check_photo(photo_bytes(0)[:-200]) is not None
    assert check_photo(b"") == "empty file"


def test_allow_missing_compiles_only_proven_rows(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path, rows=[0, 2, 3, 5])
    (export / saved_name(3, 5, csv_path_of(3))).write_bytes(photo_bytes(33))  # duplicate for row 3
    (export / saved_name(4, 5, csv_path_of(0))).write_bytes(photo_bytes(0))  # row 4: wrong path
    assert run(tmp_path, export, "--allow-missing") == 0
    got = read_csv(natural(tmp_path) / "iphone.csv")
    assert [p.split("/")[4] for p in got["Path"]] == ["patient64541", "patient64543", "patient64546"]
    assert sorted(kinds(tmp_path)) == [("duplicate", 3), ("missing", 1), ("path_mismatch", 4)]
    assert report(tmp_path)["recapture_ranges"] == ["1:2", "3:5"]
    rows = read_csv(natural(tmp_path) / "iphone" / "recapture.csv")
    assert rows["Path"].tolist() == [csv_path_of(i) for i in (1, 3, 4)]
    assert sorted(p.parent.parent.name for p in (natural(tmp_path) / "iphone").rglob("*.jpg")) == [
        "patient64541", "patient64543", "patient64546"]

    # the missing rows are shot again (new nonces) and the duplicate/wrong files removed: clean rerun
    (export / saved_name(3, 5, csv_path_of(3))).unlink()
    (export / saved_name(4, 5, csv_path_of(0))).unlink()
    for i in (1, 4):
        (export / saved_name(i, 2000 + i, csv_path_of(i))).write_bytes(photo_bytes(i))
    assert run(tmp_path, export) == 0
    assert len(read_csv(natural(tmp_path) / "iphone.csv")) == N_ROWS
    assert not (natural(tmp_path) / "iphone" / "recapture.csv").exists()


def test_hostile_names_write_nothing_outside(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    hostile = ["5__1__..__..__..__evil.jpg", "5__1__CheXpert-v1.0-small__valid__..__x.jpg", "0__1__ .jpg",
               "-1__1__a__b.jpg", "5__1__..\\..\\x.jpg", "5__1__\x01bad.jpg"]
    for name in hostile:
        (export / name).write_bytes(photo_bytes(9))
    # a link named like row 2's photo, pointing outside the export: not followed, reported
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(photo_bytes(2))
    link_name = saved_name(2, 1002, csv_path_of(2))
    (export / link_name).unlink()
    (export / link_name).symlink_to(outside)
    hostile.append(link_name)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert run(tmp_path, export) == 1
    problems = report(tmp_path)["problems"]
    # every hostile file is reported; " .jpg" parses (seq 0) and so makes row 0 a duplicate
    assert {f for p in problems for f in p["files"]} >= set(hostile)
    assert sorted((p["kind"], p["row"]) for p in problems if p["row"] is not None) == [
        ("duplicate", 0), ("missing", 2)]
    assert all(p["kind"] in ("unparsable", "stray") for p in problems if p["row"] is None)
    assert run(tmp_path, export, "--allow-missing") == 0
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    created = set(after) - set(before)
    dataset = tmp_path / "MyPhotos"
    assert created and all(Path(p) == dataset or dataset in Path(p).parents for p in created)
    assert len(read_csv(natural(tmp_path) / "iphone.csv")) == 4  # rows 1, 3, 4, 5


def test_hostile_names_rejected(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    for bad in ("../escape", "a/b", ".hidden", ".."):
        with pytest.raises(ValueError):
            compile_export(tmp_path / "valid.csv", "0:6", export, tmp_path / "MyPhotos", bad)
        with pytest.raises(ValueError):
            compile_export(tmp_path / "valid.csv", "0:6", export, tmp_path / "MyPhotos", "ok", split=bad)
    assert not (tmp_path / "MyPhotos").exists()
    assert run(tmp_path, export, rows="0:99") == 2  # CLI: clean error, exit 2
    assert main(["compile", "--csv", str(tmp_path / "valid.csv"), "--rows", "0:6", "--export", str(export),
                 "--out", str(tmp_path / "o"), "--name", "../up"]) == 2


def test_bad_csv_path_is_reported(tmp_path):
    csv = make_csv(tmp_path)
    df = read_csv(csv)
    df.loc[2, "Path"] = "CheXpert-v1.0-small/valid/not-a-patient/view.jpg"
    df.to_csv(csv, index=False)
    export = make_export(tmp_path, rows=[0, 1, 3, 4, 5])
    assert run(tmp_path, export) == 1
    assert kinds(tmp_path) == [("bad_csv_row", 2)]
    assert run(tmp_path, export, "--allow-missing") == 0
    assert len(read_csv(natural(tmp_path) / "iphone.csv")) == 5


def test_split_from_path_or_option(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    assert run(tmp_path, export, "--split", "test") == 0
    got = read_csv(tmp_path / "MyPhotos" / "test" / "natural" / "iphone.csv")
    assert got["Path"][0].startswith("MyPhotos/test/natural/iphone/patient64541/")


def test_decoded_copy_is_the_photo(tmp_path):
    make_csv(tmp_path)
    export = make_export(tmp_path)
    assert run(tmp_path, export) == 0
    img = decode_image((tmp_path / read_csv(natural(tmp_path) / "iphone.csv")["Path"][0]).read_bytes())
    assert img.shape == (24, 32, 3)
