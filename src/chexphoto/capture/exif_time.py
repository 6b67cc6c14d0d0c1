"""When a photo was taken, from its EXIF tags, and the controller's log of what was on screen.

Phones record the capture time as ``DateTimeOriginal`` (``YYYY:MM:DD HH:MM:SS``, local time, no
zone) with ``SubSecTimeOriginal`` (fraction digits) and, on recent phones, ``OffsetTimeOriginal``
(``+01:00``). A time without an offset is *naive*: the caller decides which UTC offset it is in.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from PIL import Image

EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003
TAG_OFFSET_TIME_ORIGINAL = 0x9011
TAG_SUBSEC_TIME_ORIGINAL = 0x9291

LOG_COLUMNS = ("row", "path", "shown_at", "hidden_at")

_DATETIME_RE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$")
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


class ExifTimeError(ValueError):
    """A photo without a usable capture time."""


class LogFormatError(ValueError):
    """A manual-capture log that cannot be read."""


@dataclass(frozen=True)
class CaptureTime:
    """A photo's capture time; ``when`` is naive (local, zone unknown) when ``has_offset`` is False."""

    when: datetime
    has_offset: bool

    def resolve(self, offset: timedelta) -> datetime:
        """An aware time, reading a naive one in ``offset``."""
        if self.has_offset:
            return self.when
        return self.when.replace(tzinfo=timezone(offset))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).replace("\x00", "").strip()


def parse_exif_time(datetime_original: object, subsec: object = None, offset: object = None) -> CaptureTime:
    """Build a :class:`CaptureTime` from the three tag values (strings or bytes)."""
    match = _DATETIME_RE.match(_text(datetime_original))
    if not match:
        raise ExifTimeError(f"unreadable DateTimeOriginal {datetime_original!r}")
    try:
        when = datetime(*(int(g) for g in match.groups()))
    except ValueError as exc:
        raise ExifTimeError(f"invalid DateTimeOriginal {datetime_original!r}: {exc}") from None
    if subsec is not None:
        digits = _text(subsec)
        if digits:
            if not digits.isdigit():
                raise ExifTimeError(f"unreadable SubSecTimeOriginal {subsec!r}")
            when += timedelta(microseconds=round(int(digits[:6].ljust(6, "0"))))
    if offset is not None and _text(offset):
        text = _text(offset)
        if text.upper() == "Z":
            return CaptureTime(when.replace(tzinfo=UTC), True)
        m = _OFFSET_RE.match(text)
        if not m:
            raise ExifTimeError(f"unreadable OffsetTimeOriginal {offset!r}")
        sign = -1 if m.group(1) == "-" else 1
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        if delta >= timedelta(hours=24):
            raise ExifTimeError(f"invalid OffsetTimeOriginal {offset!r}")
        return CaptureTime(when.replace(tzinfo=timezone(sign * delta)), True)
    return CaptureTime(when, False)


def read_capture_time(source: bytes | str | os.PathLike) -> CaptureTime:
    """Capture time from an image's EXIF (encoded bytes or a file, of which only the header is
    read); :class:`ExifTimeError` when it has none."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            exif = im.getexif()
            sub_ifd = exif.get_ifd(EXIF_IFD)
    except Exception as exc:  # Pillow raises many kinds for broken files
        raise ExifTimeError(f"cannot read EXIF: {exc}") from None
    original = sub_ifd.get(TAG_DATETIME_ORIGINAL)
    if original is None:
        raise ExifTimeError("no EXIF DateTimeOriginal (capture time)")
    return parse_exif_time(original, sub_ifd.get(TAG_SUBSEC_TIME_ORIGINAL), sub_ifd.get(TAG_OFFSET_TIME_ORIGINAL))


@dataclass(frozen=True)
class ShownInterval:
    """One log line: CSV row ``row`` (path ``path``) was on screen from ``shown_at`` to ``hidden_at``."""

    line: int  # line number in the log file (header = 1)
    row: int
    path: str
    shown_at: datetime
    hidden_at: datetime
    source: str = ""  # the log file

    @property
    def where(self) -> str:
        return f"{os.path.basename(self.source)} line {self.line}" if self.source else f"log line {self.line}"


def _parse_aware(text: str, what: str, line: int, file: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LogFormatError(f"{file}: line {line}: {what} {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise LogFormatError(f"{file}: line {line}: {what} {text!r} has no UTC offset")
    return value


def read_show_log(path: str) -> tuple[list[ShownInterval], list[str]]:
    """Read the controller's ``row,path,shown_at,hidden_at`` log.

    Returns the usable intervals and a list of warnings for lines that cannot be used (e.g. a
    row still on screen when the controller stopped has no ``hidden_at``); a wrong header or an
    unreadable file raises :class:`LogFormatError`.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise LogFormatError(f"capture log not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LogFormatError(f"cannot read capture log {path}: {exc}") from None
    if not rows or tuple(c.strip() for c in rows[0]) != LOG_COLUMNS:
        raise LogFormatError(f"{path}: not a capture log (expected the header {','.join(LOG_COLUMNS)})")
    intervals, warnings = [], []
    for number, cells in enumerate(rows[1:], start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(LOG_COLUMNS):
            warnings.append(f"line {number}: expected {len(LOG_COLUMNS)} fields, got {len(cells)}")
            continue
        row_text, row_path, shown, hidden = cells
        if not row_text.strip().isdigit():
            warnings.append(f"line {number}: row {row_text!r} is not a row index")
            continue
        if not hidden.strip():
            warnings.append(f"line {number}: row {row_text.strip()} has no hidden_at (controller stopped?)")
            continue
        try:
            shown_at = _parse_aware(shown, "shown_at", number, path)
            hidden_at = _parse_aware(hidden, "hidden_at", number, path)
        except LogFormatError as exc:
            warnings.append(str(exc).split(": ", 1)[1])
            continue
        if hidden_at < shown_at:
            warnings.append(f"line {number}: hidden_at is before shown_at")
            continue
        intervals.append(ShownInterval(number, int(row_text), row_path, shown_at, hidden_at, path))
    return intervals, warnings
