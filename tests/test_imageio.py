"""Reading every input kind into uint8, and atomic, deterministic writing."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from chexphoto.fsutil import PathEscapeError, atomic_write_bytes, check_relative, resolve_inside
from chexphoto.imageio import ImageReadError, decode_image, encode_image, read_image, write_image


def _write_dicom(path, pixels: np.ndarray, photometric: str, window: tuple[float, float] | None = None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_real_radiograph_monochrome1_is_inverted(rg1_path, rg1_image):
    assert rg1_image.shape == (1955, 1841) and rg1_image.dtype == np.uint8
    ds = pydicom.dcmread(rg1_path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array.astype(np.float64)
    # MONOCHROME1: high stored values are dark, so after reading, brightness falls as raw rises
    corr = np.corrcoef(raw[::16, ::16].ravel(), rg1_image[::16, ::16].ravel())[0, 1]
    assert corr < -0.5
    assert rg1_image.min() == 0 and rg1_image.max() == 255


def test_dicom_window_and_monochrome2(tmp_path):
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (8, 1))  # 8 x 256
    _write_dicom(tmp_path / "m2.dcm", ramp, "MONOCHROME2", window=(2048, 1024))
    img = read_image(tmp_path / "m2.dcm")
    assert img.dtype == np.uint8 and img.shape == ramp.shape
    # below the window -> black, above -> white, increasing in between
    assert img[0, 0] == 0 and img[0, -1] == 255
    assert np.all(np.diff(img[0].astype(int)) >= 0)
    inside = (ramp[0] > 1600) & (ramp[0] < 2500)
    assert len(np.unique(img[0, inside])) > 20
    _write_dicom(tmp_path / "m1.dcm", ramp, "MONOCHROME1", window=(2048, 1024))
    assert np.array_equal(read_image(tmp_path / "m1.dcm"), 255 - img)


def test_png_8_and_16_bit_and_jpeg(tmp_path):
    grad16 = np.tile(np.linspace(1000, 33000, 200).astype(np.uint16), (50, 1))
    cv2.imwrite(str(tmp_path / "a16.png"), grad16)
    img16 = read_image(tmp_path / "a16.png")
    assert img16.dtype == np.uint8 and img16[0, 0] == 0 and img16[0, -1] == 255
    grad8 = (np.arange(200, dtype=np.uint8)[None, :] * np.ones((50, 1), np.uint8)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a8.png"), grad8)
    assert np.array_equal(read_image(tmp_path / "a8.png"), grad8)
    cv2.imwrite(str(tmp_path / "g.jpg"), grad8)
    jpg = read_image(tmp_path / "g.jpg")
    assert jpg.ndim == 2 and np.abs(jpg.astype(int) - grad8).max() <= 3


def test_grey_saved_as_colour_reads_grey_but_colour_stays_colour(tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey3.png"), cv2.merge([grey, grey, grey]))
    assert read_image(tmp_path / "grey3.png").ndim == 2
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    back = read_image(tmp_path / "red.png")
    assert back.shape == (40, 60, 3) and back[0, 0, 0] == 200 and back[0, 0, 2] == 0


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image" * 10)
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "junk.jpg")
    good = encode_image(np.full((64, 64), 128, np.uint8), "jpg")
    (tmp_path / "trunc.jpg").write_bytes(good[:40])
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "trunc.jpg")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(ImageReadError, match="too large"):
        decode_image(_png_header_only(100_000, 100_000), "bomb.png")
    with pytest.raises(ImageReadError, match="too large"):
        decode_image(encode_image(np.zeros((100, 100), np.uint8), "png"), "x.png", max_pixels=5000)


def test_encode_is_deterministic_and_write_is_atomic(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (80, 90), dtype=np.uint8)
    assert encode_image(img, "jpg") == encode_image(img.copy(), "jpg")
    data = write_image(tmp_path / "sub" / "x.png", img)
    assert (tmp_path / "sub" / "x.png").read_bytes() == data
    assert np.array_equal(read_image(tmp_path / "sub" / "x.png"), img)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temp files left
    with pytest.raises(ValueError):
        encode_image(img, "gif")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("bad", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "", "a\x00b", "..\\x"])
def test_paths_that_escape_are_refused(tmp_path, bad):
    with pytest.raises(PathEscapeError):
        resolve_inside(tmp_path, bad)


def test_symlink_escape_refused_and_good_paths_resolve(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError):
        resolve_inside(root, "link/x.jpg")
    assert resolve_inside(root, "a/./b.jpg") == (root / "a" / "b.jpg").resolve()
    assert str(check_relative("a\\b\\c.jpg")) == "a/b/c.jpg"


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_bytes(tmp_path / "perm.bin", b"x")
    assert (tmp_path / "perm.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_of_a_name_at_the_file_system_limit(tmp_path):
    name = "a" * 251 + ".jpg"  # 255 bytes: the longest name a file system takes
    atomic_write_bytes(tmp_path / name, b"photo")
    assert (tmp_path / name).read_bytes() == b"photo"
    assert [p.name for p in tmp_path.iterdir()] == [name]
