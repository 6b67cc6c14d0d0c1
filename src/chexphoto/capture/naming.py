"""Photo file names of the CheXpeditor protocol: ``{seq}__{nonce}__{part}__{part}...``.

The original Android app saves each photo under the name the computer sent, built from the
sequence number, a nonce (Android caches photos by name) and the components of the CSV ``Path``
joined with ``__``, e.g. ``17__42__CheXpert-v1.0-small__valid__patient64541__study1__view1_frontal.jpg``.
Labels are later assigned from these names, so both directions live here and are strict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chexphoto.csvschema import path_parts

SEPARATOR = "__"
MAX_FILENAME_BYTES = 255  # what common file systems accept for one name
PHOTO_EXTENSIONS = (".jpg", ".jpeg")

_SEQ_RE = re.compile(r"^(0|[1-9][0-9]{0,17})$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")


class FilenameError(ValueError):
    """A name that is not a valid CheXpeditor photo name (or could not be made safely)."""


@dataclass(frozen=True)
class PhotoName:
    seq: int
    nonce: str
    csv_path: str  # the CSV ``Path`` it claims, POSIX form

    @property
    def filename(self) -> str:
        return make_filename(self.seq, self.nonce, self.csv_path)


def check_component(part: str) -> None:
    if not part or part in (".", "..") or _FORBIDDEN.search(part) or SEPARATOR in part:
        raise FilenameError(f"path component {part!r} cannot be carried in a photo name")


def make_filename(seq: int, nonce: int | str, csv_path: str) -> str:
    """Name under which the camera saves the photo of CSV row ``csv_path`` sent as ``seq``."""
    if isinstance(seq, bool) or int(seq) < 0:
        raise FilenameError(f"sequence number must be a non-negative integer, got {seq!r}")
    nonce = str(nonce)
    if not _NONCE_RE.match(nonce):
        raise FilenameError(f"nonce must be 1-32 letters or digits, got {nonce!r}")
    parts = path_parts(csv_path)
    if not parts:
        raise FilenameError("empty CSV path")
    for part in parts:
        check_component(part)
    name = SEPARATOR.join([str(int(seq)), nonce, *parts])
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES - len(".jpg"):
        raise FilenameError(f"photo name would be longer than {MAX_FILENAME_BYTES} bytes")
    return name


def parse_filename(name: str) -> PhotoName:
    """Parse a photo name (an extra ``.jpg`` the camera added after the path's own is allowed)."""
    if _FORBIDDEN.search(name):
        raise FilenameError(f"unsafe photo name {name!r}")
    fields = name.split(SEPARATOR)
    if len(fields) < 3:
        raise FilenameError(f"not a CheXpeditor photo name (need seq__nonce__path): {name!r}")
    seq_text, nonce, parts = fields[0], fields[1], fields[2:]
    if not _SEQ_RE.match(seq_text):
        raise FilenameError(f"bad sequence number {seq_text!r} in {name!r}")
    if not _NONCE_RE.match(nonce):
        raise FilenameError(f"bad nonce {nonce!r} in {name!r}")
    for part in parts:
        check_component(part)
    return PhotoName(int(seq_text), nonce, "/".join(parts))


def strip_photo_extension(filename: str, csv_path_suffix: str) -> str:
    """Drop a ``.jpg`` the camera appended when the CSV path had another extension."""
    lower = filename.lower()
    for ext in PHOTO_EXTENSIONS:
        if lower.endswith(ext) and not csv_path_suffix.lower().endswith(ext):
            return filename[: -len(ext)]
    return filename
