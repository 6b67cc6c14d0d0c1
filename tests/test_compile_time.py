"""`chexphoto compile --match-by-time`: photos from any phone assigned by EXIF capture time."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from chexphoto.capture.exif_time import (
    ExifTimeError,
    LogFormatError,
    parse_exif_time,
    read_capture_time,
    read_show_log,
)
from chexphoto.cli import main
from chexphoto.csvschema import OBSERVATIONS, read_csv

LOCAL = timezone(timedelta(hours=2))  # the computer's zone in the log
T0 = datetime(2026, 3, 14, 9, 30, 0, 0, tzinfo=LOCAL)
SHOW_S, GAP_S = 3.0, 1.0  # each row on screen for 3 s, 1 s of black between rows
N_ROWS = 5


def csv_path_of(i: int) -> str:
    return f"CheXpert-v1.0-small/valid/patient{64541 + i}/study1/view1_frontal.jpg"


def shown(i: int) -> datetime:
    return T0 + timedelta(seconds=i * (SHOW_S + GAP_S))


def hidden(i: int) -> datetime:
    return shown(i) + timedelta(seconds=SHOW_S)


def mid(i: int) -> datetime:
    return shown(i) + timedelta(seconds=SHOW_S / 2)


def make_csv(tmp_path: Path) -> Path:
    records = []
    for i in range(N_ROWS):
        record = {"Path": csv_path_of(i), "Sex": "Male", "Age": str(50 + i), "Frontal/Lateral": "Frontal",
                  "AP/PA": "PA"}
        record.update({obs: ("1.0", "", "-1.0", "0.0")[(i + j) % 4] for j, obs in enumerate(OBSERVATIONS)})
        records.append(record)
    path = tmp_path / "valid.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def make_log(tmp_path: Path, rows=range(N_ROWS), extra_lines=()) -> Path:
    path = tmp_path / "capture-log.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "path", "shown_at", "hidden_at"])
        for i in rows:
            writer.writerow([i, csv_path_of(i), shown(i).isoformat(timespec="microseconds"),
                             hidden(i).isoformat(timespec="microseconds")])
        for line in extra_lines:
            writer.writerow(line)
    return path


def exif_photo(when: datetime | None, *, offset: str | None = None, seed: int = 0, subsec: bool = True) -> bytes:
    """A phone-like JPEG with DateTimeOriginal (+ SubSecTimeOriginal, OffsetTimeOriginal) in EXIF."""
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    if when is not None:
        sub_ifd = exif.get_ifd(0x8769)
        sub_ifd[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
        if subsec:
            sub_ifd[0x9291] = f"{when.microsecond // 1000:03d}"
        if offset is not None:
            sub_ifd[0x9011] = offset
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


def naive_local(when: datetime) -> datetime:
    """What a phone without zone tags writes: the local wall-clock time."""
    return when.astimezone(LOCAL).replace(tzinfo=None)


def compile_args(tmp_path, export, log, *extra, rows=f"0:{N_ROWS}"):
    return ["compile", "--csv", str(tmp_path / "valid.csv"), "--rows", rows, "--export", str(export),
            "--out", str(tmp_path / "Manual"), "--name", "pixel", "--match-by-time", str(log), "--quiet", *extra]


def report(tmp_path) -> dict:
    return json.loads((tmp_path / "Manual" / "valid" / "natural" / "pixel.report.json").read_text())


def problems(tmp_path) -> list[tuple[str, int | None, tuple[str, ...]]]:
    return sorted(((p["kind"], p["row"], tuple(p["files"])) for p in report(tmp_path)["problems"]), key=str)


def test_exif_time_roundtrip_with_pillow():
    naive = read_capture_time(exif_photo(datetime(2026, 3, 14, 9, 30, 1, 250000)))
    assert not naive.has_offset and naive.when == datetime(2026, 3, 14, 9, 30, 1, 250000)
    aware = read_capture_time(exif_photo(datetime(2026, 3, 14, 8, 30, 1, 250000), offset="+01:00"))
    assert aware.has_offset and aware.when == datetime(2026, 3, 14, 9, 30, 1, 250000, tzinfo=LOCAL)
    with pytest.raises(ExifTimeError):
        read_capture_time(exif_photo(None))
    assert parse_exif_time(b"2026:03:14 09:30:01\x00", b"5", "-05:30").when.utcoffset() == timedelta(hours=-5.5)
    assert parse_exif_time("2026:03:14 09:30:01", "123456789").when.microsecond == 123456
    for bad in ("2026-03-14", "2026:13:14 09:30:01", ""):
        with pytest.raises(ExifTimeError):
            parse_exif_time(bad)


def test_photos_assigned_by_time_with_any_names(tmp_path):
    make_csv(tmp_path)
    log = make_log(tmp_path)
    export = tmp_path / "DCIM"
    export.mkdir()
    photos = {}
    for i in range(N_ROWS):
        name = f"IMG_{1000 + i}.JPG"
        when = mid(i) + timedelta(milliseconds=137 * i)
        # two rows written by a phone that records its zone (in another offset), the rest naive
        data = (exif_photo(when.astimezone(timezone(timedelta(hours=1))), offset="+01:00", seed=i) if i % 2
                else exif_photo(naive_local(when), seed=i))
        (export / name).write_bytes(data)
        photos[i] = data
    assert main(compile_args(tmp_path, export, log)) == 0
    table = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")
    src = read_csv(tmp_path / "valid.csv")
    pd.testing.assert_frame_equal(table.drop(columns="Path"), src.drop(columns="Path"))
    for i, rel in enumerate(table["Path"]):
        assert rel == f"Manual/valid/natural/pixel/patient{64541 + i}/study1/view1_frontal.jpg"
        assert (tmp_path / rel).read_bytes() == photos[i]  # byte-identical, EXIF kept
    assert report(tmp_path)["match"] == "time"


def test_several_logs_first_session_and_recapture(tmp_path):
    make_csv(tmp_path)
    first = make_log(tmp_path, rows=[0, 1, 2, 4])  # row 3 was skipped, shot later in a second session
    second = tmp_path / "recapture-log.csv"
    first.rename(tmp_path / "first-log.csv")
    make_log(tmp_path, rows=[3]).rename(second)
    export = tmp_path / "DCIM"
    export.mkdir()
    for i in range(N_ROWS):
        (export / f"IMG_{i}.jpg").write_bytes(exif_photo(naive_local(mid(i)), seed=i))
    assert main(compile_args(tmp_path, export, tmp_path / "first-log.csv")) == 1
    assert problems(tmp_path) == [("between_frames", None, ("IMG_3.jpg",)), ("missing", 3, ())]
    args = compile_args(tmp_path, export, tmp_path / "first-log.csv") + ["--match-by-time", str(second)]
    assert main(args) == 0
    assert len(read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")) == N_ROWS


def test_clock_offset(tmp_path):
    make_csv(tmp_path)
    log = make_log(tmp_path)
    export = tmp_path / "DCIM"
    export.mkdir()
    behind = timedelta(seconds=2.0)  # the phone's clock is 2 s behind the computer's
    for i in range(N_ROWS):
        (export / f"PXL_{i}.jpg").write_bytes(exif_photo(naive_local(mid(i) - behind), seed=i))
    # without the correction every photo falls 0.5 s before its row's middle minus 2 s: 0.5 s after
    # the previous row was hidden (between frames) - nothing is mislabelled, everything is reported
    assert main(compile_args(tmp_path, export, log)) == 1
    assert {kind for kind, _, _ in problems(tmp_path)} == {"between_frames", "outside_log", "missing"}
    assert main(compile_args(tmp_path, export, log, "--clock-offset", "2")) == 0
    table = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")
    assert len(table) == N_ROWS
    for i, rel in enumerate(table["Path"]):
        assert (tmp_path / rel).read_bytes() == (export / f"PXL_{i}.jpg").read_bytes()


def test_between_frames_guard_zone_no_exif_duplicates_outside(tmp_path):
    make_csv(tmp_path)
    log = make_log(tmp_path)
    export = tmp_path / "DCIM"
    export.mkdir()
    files = {
        "a_row0.jpg": mid(0),
        "b_between.jpg": hidden(1) + timedelta(seconds=GAP_S / 2),  # black screen between rows 1 and 2
        "c_guard.jpg": shown(2) + timedelta(seconds=0.1),  # just as row 2 appeared
        "d_row2.jpg": mid(2),
        "e_row3.jpg": mid(3),
        "f_row3_again.jpg": mid(3) + timedelta(seconds=0.5),  # two photos of row 3
        "g_before.jpg": shown(0) - timedelta(seconds=30),
        "h_row4.jpg": mid(4),
    }
    for k, (name, when) in enumerate(files.items()):
        (export / name).write_bytes(exif_photo(naive_local(when), seed=k))
    (export / "i_noexif.jpg").write_bytes(exif_photo(None))
    (export / "movie.mov").write_bytes(b"\x00" * 10)
    assert main(compile_args(tmp_path, export, log)) == 1
    assert problems(tmp_path) == sorted([
        ("missing", 1, ()),
        ("duplicate", 3, ("e_row3.jpg", "f_row3_again.jpg")),
        ("between_frames", None, ("b_between.jpg",)),
        ("guard_zone", None, ("c_guard.jpg",)),
        ("outside_log", None, ("g_before.jpg",)),
        ("no_capture_time", None, ("i_noexif.jpg",)),
        ("stray", None, ("movie.mov",)),
    ], key=str)
    assert not (tmp_path / "Manual" / "valid" / "natural" / "pixel.csv").exists()
    recapture = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel" / "recapture.csv")
    assert recapture["Path"].tolist() == [csv_path_of(1), csv_path_of(3)]

    assert main(compile_args(tmp_path, export, log, "--allow-missing")) == 0
    table = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")
    assert [p.split("/")[4] for p in table["Path"]] == ["patient64541", "patient64543", "patient64545"]
    assert (tmp_path / table["Path"][1]).read_bytes() == (export / "d_row2.jpg").read_bytes()


def test_log_rows_outside_range_and_wrong_log(tmp_path):
    make_csv(tmp_path)
    log = make_log(tmp_path)
    export = tmp_path / "DCIM"
    export.mkdir()
    for i in range(N_ROWS):
        (export / f"IMG_{i}.jpg").write_bytes(exif_photo(naive_local(mid(i)), seed=i))
    assert main(compile_args(tmp_path, export, log, rows="1:4")) == 1
    assert problems(tmp_path) == [("out_of_range", None, ("IMG_0.jpg",)), ("out_of_range", None, ("IMG_4.jpg",))]

    # a log of another CSV (paths differ) proves nothing
    other = tmp_path / "other-log.csv"
    text = log.read_text().replace("patient64543", "patient99999")
    other.write_text(text)
    assert main(compile_args(tmp_path, export, other)) == 1
    kinds = {(kind, row) for kind, row, _ in problems(tmp_path)}
    assert ("log_mismatch", 2) in kinds and ("missing", 2) not in kinds
    assert main(compile_args(tmp_path, export, other, "--allow-missing")) == 0
    table = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")
    assert "patient64543" not in " ".join(table["Path"])


def test_log_reading(tmp_path):
    log = make_log(tmp_path, extra_lines=[[5, csv_path_of(5), shown(5).isoformat(), ""],
                                          ["x", "p", "a", "b"], [6, "p", "2026-03-14T09:30:00", "2026-03-14T09:31:00"]])
    intervals, warnings = read_show_log(str(log))
    assert [iv.row for iv in intervals] == list(range(N_ROWS))
    assert len(warnings) == 3 and "hidden_at" in warnings[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LogFormatError):
        read_show_log(str(bad))
    make_csv(tmp_path)
    (tmp_path / "DCIM").mkdir()
    assert main(compile_args(tmp_path, tmp_path / "DCIM", bad)) == 2  # clean error
    assert main(["compile", "--csv", str(tmp_path / "valid.csv"), "--rows", "0:5", "--export",
                 str(tmp_path / "DCIM"), "--out", str(tmp_path / "x"), "--name", "n", "--clock-offset", "1"]) == 2


def test_overlapping_log_lines_and_guard_option(tmp_path):
    make_csv(tmp_path)
    # row 1's line claims to start while row 0 was still on screen: photos in the overlap fit both
    log = make_log(tmp_path, rows=[0, 2, 3, 4], extra_lines=[
        [1, csv_path_of(1), (hidden(0) - timedelta(seconds=1.5)).isoformat(), hidden(1).isoformat()]])
    export = tmp_path / "DCIM"
    export.mkdir()
    (export / "overlap.jpg").write_bytes(exif_photo(naive_local(hidden(0) - timedelta(seconds=0.75))))
    (export / "edge.jpg").write_bytes(exif_photo(naive_local(shown(2) + timedelta(seconds=0.4)), seed=2))
    assert main(compile_args(tmp_path, export, log, "--allow-missing")) == 0
    found = {(kind, files) for kind, _, files in problems(tmp_path)}
    assert ("ambiguous_time", ("overlap.jpg",)) in found
    table = read_csv(tmp_path / "Manual" / "valid" / "natural" / "pixel.csv")
    assert [p.split("/")[4] for p in table["Path"]] == ["patient64543"]  # edge.jpg: 0.4 s > 0.25 s guard
    # a wider guard refuses the photo taken 0.4 s after row 2 appeared
    assert main(compile_args(tmp_path, export, log, "--guard", "0.5")) == 1
    assert ("guard_zone", ("edge.jpg",)) in {(kind, files) for kind, _, files in problems(tmp_path)}
