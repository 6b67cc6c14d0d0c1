"""Read x-rays of any common format into 8-bit arrays, and encode/write them back.

Conventions used across the package:

* a grey image is a 2-D ``uint8`` array (H, W); a colour photograph is ``uint8`` (H, W, 3) in
  **RGB** order (OpenCV's BGR is converted at this boundary only);
* x-rays are processed as single-channel 8-bit; a 3-channel file whose channels are identical
  (a grey JPEG saved as colour) is read as grey, so only real colour photographs stay colour;
* DICOM: modality LUT, then VOI LUT or window (first one when several are stored), then
  MONOCHROME1 inverted so that bone is bright, then scaled to 0..255 over the output range;
* 16-bit PNG/TIFF: scaled to 0..255 by the image's own min..max (a 12- or 15-bit detector image
  stored in 16 bits would otherwise look black);
* the pixel count is checked from the header before any decoding (decompression bombs).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from chexphoto.fsutil import atomic_write_bytes

#: Default limit on width*height; CheXpert originals are ~3000x3000 and phone photos ~16 MP.
DEFAULT_MAX_PIXELS = 80_000_000

Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit before decoding, with a clear message

cv2.setNumThreads(1)  # one image per worker process; parallelism comes from the pool


class ImageReadError(ValueError):
    """The file is missing, unreadable, corrupt, of an unknown format, or too large."""


def _is_dicom(data: bytes, path: str) -> bool:
    return data[128:132] == b"DICM" or path.lower().endswith((".dcm", ".dicom"))


def _to_uint8_range(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    arr = arr.astype(np.float64, copy=False)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = (arr - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _decode_dicom(data: bytes, path: str, max_pixels: int) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # pydicom raises many kinds
        raise ImageReadError(f"not a readable DICOM file: {exc}") from exc
    if rows * cols > max_pixels:
        raise ImageReadError(f"image too large: {cols}x{rows} pixels exceeds the limit of {max_pixels}")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(f"DICOM pixel data cannot be decoded: {exc}") from exc
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and ds.get("SamplesPerPixel", 1) > 1:
        # a colour secondary capture: keep it as a photograph
        rgb = pixels[..., :3]
        if rgb.dtype != np.uint8:
            rgb = _to_uint8_range(rgb, float(rgb.min()), float(rgb.max()))
        return np.ascontiguousarray(rgb)
    if pixels.ndim == 3:  # multi-frame: the first frame
        pixels = pixels[0]
    arr = apply_modality_lut(pixels, ds)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        arr = apply_voi_lut(arr, ds, index=0)
    arr = np.asarray(arr, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    out = _to_uint8_range(arr, lo, hi)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out


def _header_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except UnidentifiedImageError:
        # Pillow's message names an in-memory object address: keep reasons reproducible
        raise ImageReadError("unrecognised or corrupt image (not JPEG, PNG, TIFF, BMP or DICOM)") from None
    except Exception as exc:
        raise ImageReadError(f"unrecognised or corrupt image: {type(exc).__name__}: {exc}") from exc


def decode_image(data: bytes, path: str = "", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG 8/16-bit, TIFF, BMP, DICOM) to ``uint8``."""
    if not data:
        raise ImageReadError("empty file")
    if _is_dicom(data, path):
        return _decode_dicom(data, path, max_pixels)
    width, height = _header_size(data)
    if width * height > max_pixels:
        raise ImageReadError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}")
    buf = np.frombuffer(data, dtype=np.uint8)
    # ANYDEPTH keeps 16-bit data; ANYCOLOR keeps grey files grey; EXIF orientation is applied.
    img = cv2.imdecode(buf, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise ImageReadError("corrupt image data (decoder failed)")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
        if img.shape[2] == 1:
            img = img[..., 0]
    if img.dtype != np.uint8:
        img = _to_uint8_range(img, float(img.min()), float(img.max()))
    if img.ndim == 3:
        b, g, r = img[..., 0], img[..., 1], img[..., 2]
        if np.array_equal(b, g) and np.array_equal(g, r):
            return np.ascontiguousarray(b)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into ``uint8`` (see module docstring); :class:`ImageReadError` on failure."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise ImageReadError(f"file not found: {path}") from exc
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_image(data, path, max_pixels=max_pixels)


FORMATS = ("jpg", "png")


def encode_image(img: np.ndarray, fmt: str = "jpg", *, quality: int = 95) -> bytes:
    """Encode a ``uint8`` grey or RGB image as JPEG (``quality``) or PNG; deterministic bytes."""
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode("." + fmt, img, params)
    if not ok:
        raise ValueError("image encoding failed")
    return buf.tobytes()


def write_image(path: str | os.PathLike, img: np.ndarray, *, quality: int = 95) -> bytes:
    """Encode by the file's extension and write atomically; returns the bytes written."""
    fmt = Path(path).suffix.lstrip(".") or "jpg"
    data = encode_image(img, fmt, quality=quality)
    atomic_write_bytes(path, data)
    return data
