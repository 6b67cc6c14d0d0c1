"""Wrong inputs anywhere on the command line give one clean `error:` line and exit 2."""

from __future__ import annotations

import pytest

from chexphoto.cli import main

ROW = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_folder_given_where_a_file_is_expected(tmp_path, capsys):
    code, err = _run(capsys, ["stats", str(tmp_path)])
    assert code == 2
    assert err.strip() == f"chexphoto stats: error: Is a directory: {tmp_path}"


def test_repeated_column_is_refused(tmp_path, capsys):
    csv = tmp_path / "dup.csv"
    csv.write_text(f"Path,Cardiomegaly,Cardiomegaly\n{ROW},1,0\n")
    code, err = _run(capsys, ["stats", str(csv)])
    assert code == 2
    assert "row 1, column 'Cardiomegaly'" in err and "more than once" in err
    assert "Traceback" not in err


def test_bad_port_and_export_for_the_camera(tmp_path, capsys):
    code, err = _run(capsys, ["camera", "--port", "99999", "--export", str(tmp_path / "e"), "--start-seq", "0",
                              "--source", f"virtual:{tmp_path / 'f.png'}"])
    assert code == 2 and "between 0 and 65535" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = _run(capsys, ["camera", "--port", "0", "--export", str(afile), "--start-seq", "0",
                              "--source", f"virtual:{tmp_path / 'f.png'}"])
    assert code == 2 and "not a folder" in err


def test_preview_tile_size_is_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["preview", str(tmp_path / "x.png"), "--out", str(tmp_path / "s.png"), "--tile", "0"])
    assert stop.value.code == 2
    assert "tile size" in capsys.readouterr().err


def test_corrupt_image_reason_is_reproducible(tmp_path):
    from chexphoto.imageio import ImageReadError, read_image

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all" * 4)
    messages = set()
    for _ in range(2):
        with pytest.raises(ImageReadError) as err:
            read_image(bad)
        messages.add(str(err.value))
    assert len(messages) == 1 and "0x" not in messages.pop()


@pytest.mark.parametrize("command", ["synthesize", "compile"])
def test_invalid_label_values_are_refused_before_anything_is_written(tmp_path, capsys, command):
    csv = tmp_path / "bad.csv"
    csv.write_text(f"Path,Cardiomegaly\n{ROW},2.0\n")
    out = tmp_path / "out"
    if command == "synthesize":
        argv = ["synthesize", "--csv", str(csv), "--data-root", str(tmp_path), "--out", str(out),
                "--preset", "digital", "--workers", "1"]
    else:
        (tmp_path / "export").mkdir()
        argv = ["compile", "--csv", str(csv), "--rows", "0:1", "--export", str(tmp_path / "export"),
                "--out", str(out), "--name", "x"]
    code, err = _run(capsys, argv)
    assert code == 2
    assert "row 2, column 'Cardiomegaly'" in err and "'2.0'" in err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_symlinked_set_folder_cannot_carry_label_files_out_of_out_dir(tmp_path, capsys, rg1_small):
    import cv2

    root = tmp_path / "root"
    image = root / "CheXpert-v1.0-small/valid/patient1/study1/view1_frontal.jpg"
    image.parent.mkdir(parents=True)
    cv2.imwrite(str(image), rg1_small)
    csv = tmp_path / "valid.csv"
    csv.write_text("Path,Cardiomegaly\nCheXpert-v1.0-small/valid/patient1/study1/view1_frontal.jpg,1.0\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "valid").mkdir(parents=True)
    (out / "valid" / "synthetic").symlink_to(outside, target_is_directory=True)
    code, err = _run(capsys, ["synthesize", "--csv", str(csv), "--data-root", str(root), "--out", str(out),
                              "--preset", "digital", "--workers", "1"])
    assert code == 2 and "outside --out" in err
    assert list(outside.iterdir()) == []
