"""The synthesis commands through ``chexphoto.cli.main``: bad inputs, options, replay,
transforms, preview, and the demo as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chexphoto.cli import main
from chexphoto.csvschema import read_csv
from chexphoto.imageio import read_image, write_image
from chexphoto.synthesis.manifest import read_manifest
from chexphoto.transforms import names
from test_synthesis import OUT_NAME, PREFIX, make_data_root, tree_bytes


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def read_errors(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def snapshot(folder: Path, exclude: Path) -> dict[str, tuple]:
    """Every path under ``folder`` outside ``exclude`` (files with size and mtime)."""
    found = {}
    for dirpath, dirs, files in os.walk(folder):
        if Path(dirpath) == exclude or exclude in Path(dirpath).parents:
            continue
        for name in dirs + files:
            path = Path(dirpath) / name
            if path == exclude:
                continue
            st = path.lstat()
            # a folder's own mtime changes when OUT_DIR is created in it; its listing is compared
            found[str(path.relative_to(folder))] = ("dir",) if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture()
def data_root(tmp_path, rg1_small, rg1_path):
    root = tmp_path / "data"
    root.mkdir()
    return root, make_data_root(root, rg1_small, rg1_path)


def synth(root: Path, csv: Path, out: Path, *extra: str) -> int:
    return main(["synthesize", "--csv", str(csv), "--data-root", str(root), "--out", str(out), "--quiet",
                 *extra])


def test_every_bad_input_is_reported_and_the_run_goes_on(tmp_path, data_root, rg1_small, capsys):
    root, csv = data_root
    base = root / PREFIX / "valid"
    (base / "patient00011/study1").mkdir(parents=True)
    (base / "patient00011/study1/view1_frontal.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    (base / "patient00012/study1").mkdir(parents=True)
    (base / "patient00012/study1/view1_frontal.png").write_bytes(png_bomb())
    (base / "patient00016/study1").mkdir(parents=True)
    (base / "patient00016/study1/view1_frontal.jpg").write_bytes(b"")
    outside = tmp_path / "outside/valid/patient00014/study1/view1_frontal.jpg"
    write_image(outside, rg1_small)  # a real image, but not under --data-root
    (base / "patient00015/study1").mkdir(parents=True)
    (base / "patient00015/study1/view1_frontal.jpg").symlink_to(outside)
    bad_rows = [
        f"{PREFIX}/valid/patient00010/study1/view1_frontal.jpg",  # missing
        f"{PREFIX}/valid/patient00011/study1/view1_frontal.jpg",  # corrupt bytes
        f"{PREFIX}/valid/patient00012/study1/view1_frontal.png",  # decompression bomb
        f"{PREFIX}/valid/../../outside/valid/patient00014/study1/view1_frontal.jpg",  # '..'
        str(outside),  # absolute
        f"{PREFIX}/valid/patient00015/study1/view1_frontal.jpg",  # symlink leading out
        f"{PREFIX}/valid/patient00016/notastudy/view1_frontal.jpg",  # no patient/study/view
        f"{PREFIX}/valid/patient00016/study1/view1_frontal.jpg",  # empty file
        f"{PREFIX}/valid/patient00001/study1/view1_frontal.jpg",  # same output as row 2
    ]
    lines = csv.read_text().splitlines()
    good = lines[1:]
    body = [good[0], good[1], *(f"{p},Male,50,Frontal,AP,1.0,,,," for p in bad_rows), *good[2:]]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join([lines[0], *body]) + "\n")
    out = tmp_path / "work" / OUT_NAME
    out.parent.mkdir()
    before = snapshot(tmp_path, out)

    assert synth(root, bad_csv, out, "--transform", "identity", "--level", "1") == 1
    captured = capsys.readouterr()
    assert "9 failed" in captured.out and "--allow-errors" in captured.err
    errors = read_errors(out / "valid/synthetic/identity_L1.errors.csv")
    assert list(errors.columns) == ["row", "path", "reason"]
    assert errors["row"].tolist() == [str(n) for n in range(4, 13)]
    assert errors["path"].tolist() == bad_rows
    reasons = errors["reason"].tolist()
    for reason, expected in zip(reasons, ["not found", "corrupt", "too large", "'..'", "absolute",
                                          "outside", "patient/study/view", "empty", "same patient/study/view"],
                                strict=True):
        assert expected in reason, reasons
    labels = read_csv(out / "valid/synthetic/identity_L1.csv")
    assert len(labels) == 3 and len(read_csv(out / "train/synthetic/identity_L1.csv")) == 3
    assert read_errors(out / "train/synthetic/identity_L1.errors.csv").empty
    assert snapshot(tmp_path, out) == before  # nothing written outside OUT_DIR
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".partial")]

    # the same run accepted with --allow-errors (after --overwrite); the failures are still listed
    assert synth(root, bad_csv, out, "--transform", "identity", "--level", "1", "--overwrite",
                 "--allow-errors") == 0
    assert len(read_errors(out / "valid/synthetic/identity_L1.errors.csv")) == 9
    assert snapshot(tmp_path, out) == before
    # a pixel limit of our own choosing
    assert synth(root, csv, tmp_path / "small" / OUT_NAME, "--transform", "identity", "--level", "1",
                 "--max-pixels", "100000") == 1
    reasons = read_errors(tmp_path / "small" / OUT_NAME / "valid/synthetic/identity_L1.errors.csv")["reason"]
    assert reasons.str.contains("too large").all()


def test_synthesize_options_and_refusals(tmp_path, data_root, capsys):
    root, csv = data_root
    out = tmp_path / OUT_NAME
    assert synth(root, csv, out, "--transform", "identity") == 2
    assert "needs --level" in capsys.readouterr().err
    assert synth(root, csv, out, "--transform", "sepia", "--level", "1") == 2
    assert "unknown transform 'sepia'" in capsys.readouterr().err
    assert synth(root, csv, out, "--preset", "digital", "--level", "2") == 2
    assert synth(root, csv, out, "--preset", "digital", "--name", "../x") == 2
    assert "invalid --name" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: exactly one of --preset / --transform
        synth(root, csv, out, "--preset", "digital", "--transform", "blur", "--level", "1")
    assert not out.exists()

    assert synth(root, csv, out, "--preset", "digital", "--workers", "2", "--seed", "3") == 0
    text = capsys.readouterr().out
    assert "digital: 6 written, 0 skipped, 0 failed" in text and "images/s" in text
    assert synth(root, csv, out, "--preset", "digital", "--seed", "3") == 2
    assert "--resume" in capsys.readouterr().err
    assert synth(root, csv, out, "--preset", "digital", "--seed", "4") == 2
    assert "different dataset" in capsys.readouterr().err
    assert synth(root, csv, out, "--preset", "digital", "--seed", "3", "--resume") == 0
    assert "0 written, 6 skipped" in capsys.readouterr().out
    assert synth(root, csv, out, "--transform", "identity", "--level", "2", "--format", "png") == 0
    assert (out / "valid/synthetic/identity_L2/patient00001/study1/view1_frontal.png").is_file()
    # a --transform chain is named by the chain, even when it equals a preset's
    assert synth(root, csv, out, "--transform", "random_digital", "--level", "1", "--seed", "3") == 0
    assert (out / "valid/synthetic/random_digital_L1.csv").is_file()
    assert synth(root, csv, out, "--transform", "blur,motion", "--level", "3", "--name", "shaky") == 0
    assert (out / "train/synthetic/shaky.manifest.jsonl").is_file()


def test_replay_command(tmp_path, data_root, capsys):
    root, csv = data_root
    out = tmp_path / OUT_NAME
    assert synth(root, csv, out, "--preset", "photographic", "--workers", "1") == 0
    manifest = out / "train/synthetic/photographic.manifest.jsonl"
    capsys.readouterr()
    assert main(["replay", str(manifest), "--data-root", str(root), "--quiet"]) == 0
    assert "3 of 3 images reproduced byte for byte" in capsys.readouterr().out

    line = manifest.read_text().splitlines()[2]
    again = tmp_path / "again"
    assert main(["replay", line, "--data-root", str(root), "--out", str(again), "--quiet"]) == 0
    record = json.loads(line)
    assert (again / record["output"]).read_bytes() == (out.parent / record["output"]).read_bytes()
    assert main(["replay", str(manifest), "--data-root", str(root), "--row", str(record["row"])]) == 0
    assert "1 of 1" in capsys.readouterr().out

    tampered = dict(record, output_sha256="f" * 64)
    assert main(["replay", json.dumps(tampered), "--data-root", str(root), "--quiet"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2


def test_transforms_command_lists_every_transform_and_level(capsys):
    assert main(["transforms"]) == 0
    text = capsys.readouterr().out
    for name in names():
        assert name in text
    assert "preset photographic: glare_matte (level 1) -> moire (level 1) -> tilt (level 1)" in text
    assert main(["transforms", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed["transforms"]] == names()
    assert all(set(t["levels"]) == {"1", "2", "3", "4"} for t in listed["transforms"])


def test_preview_writes_the_contact_sheet(tmp_path, rg1_small, capsys):
    from chexphoto.synthesis.contact_sheet import GAP, HEADER_HEIGHT, LABEL_WIDTH

    image = tmp_path / "xray.png"
    write_image(image, rg1_small)
    sheet_path = tmp_path / "sheet.png"
    assert main(["preview", str(image), "--out", str(sheet_path), "--tile", "96"]) == 0
    sheet = read_image(sheet_path)
    rows = len([n for n in names() if n != "identity"])
    assert sheet.shape[:2] == (HEADER_HEIGHT + rows * (96 + GAP) + GAP, LABEL_WIDTH + 5 * (96 + GAP) + GAP)
    # the original column is the same in every row; the level columns differ from it
    first = sheet[HEADER_HEIGHT:HEADER_HEIGHT + 96, LABEL_WIDTH + GAP:LABEL_WIDTH + GAP + 96]
    level4 = sheet[HEADER_HEIGHT:HEADER_HEIGHT + 96, LABEL_WIDTH + GAP + 4 * (96 + GAP):][:, :96]
    assert first.std() > 10 and not np.array_equal(first, level4)
    again = tmp_path / "again.png"
    assert main(["preview", str(image), "--out", str(again), "--tile", "96"]) == 0
    assert again.read_bytes() == sheet_path.read_bytes()  # reproducible
    assert main(["preview", str(image), "--out", str(tmp_path / "x.gif")]) == 2


def test_demo_runs_as_a_command(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exe = Path(sys.executable).with_name("chexphoto")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "chexphoto"]
    done = subprocess.run([*command, "demo", "--out", str(out), "--workers", "2"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "contact sheet" in done.stdout and str(out) in done.stdout
    assert read_image(out / "transforms.png").shape[0] > 1000
    source = read_csv(out / "CheXpert-v1.0-small/valid.csv")
    for preset_name in ("digital", "photographic"):
        labels = read_csv(out / f"CheXphoto-v1.0/valid/synthetic/{preset_name}.csv")
        assert len(labels) == len(source) >= 3
        assert labels.drop(columns="Path").equals(source.drop(columns="Path"))
        manifest = out / f"CheXphoto-v1.0/valid/synthetic/{preset_name}.manifest.jsonl"
        assert main(["replay", str(manifest), "--data-root", str(out), "--quiet"]) == 0
    images = tree_bytes(out / "CheXphoto-v1.0")
    assert len([k for k in images if k.endswith(".jpg")]) == 2 * len(source)


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, rg1_image):
    """SIGKILL the command mid-run (no chance to clean up), then --resume: only the missing images
    are rendered and the result is byte-identical to an uninterrupted run."""
    import cv2

    root = tmp_path / "data"
    image = cv2.resize(rg1_image, (600, 640), interpolation=cv2.INTER_AREA)
    rows = ["Path,Sex,Age,Frontal/Lateral,AP/PA,Edema"]
    for i in range(60):
        rel = f"{PREFIX}/valid/patient{20000 + i}/study1/view1_frontal.jpg"
        write_image(root / rel, np.ascontiguousarray(np.roll(image, 7 * i, axis=1)))
        rows.append(f"{rel},Male,{20 + i},Frontal,AP,{i % 3 - 1}.0")
    csv = tmp_path / "valid.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "killed" / OUT_NAME
    journal = out / "valid/synthetic/photographic.manifest.jsonl.partial"
    exe = Path(sys.executable).with_name("chexphoto")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "chexphoto"]
    proc = subprocess.Popen([*command, "synthesize", "--csv", str(csv), "--data-root", str(root), "--out", str(out),
                             "--preset", "photographic", "--workers", "1", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= 10:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    if killed:  # the run was cut: journal, no label CSV or manifest yet
        assert journal.exists() and not (out / "valid/synthetic/photographic.csv").exists()
        done_before = len(read_manifest(journal, lenient=True))
        assert 10 <= done_before < 60
    assert synth(root, csv, out, "--preset", "photographic", "--resume", "--workers", "2") == 0
    reference = tmp_path / "reference" / OUT_NAME
    assert synth(root, csv, reference, "--preset", "photographic", "--workers", "2") == 0
    assert tree_bytes(out) == tree_bytes(reference)
    assert not journal.exists()
    assert killed, "the run finished before it could be killed; the resume above proved nothing new"
