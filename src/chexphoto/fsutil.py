"""Filesystem helpers every writer in the package uses: atomic writes and confined paths.

Atomic writes go to a temporary file in the destination folder and are moved into place with
``os.replace``, so a reader (or a rerun after a crash) sees either the old file or the complete
new one, never a torn file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; datasets are shared, so written files get the
# mode an ordinary open() would give them. Read once: os.umask is process-wide and not thread-safe.
_FILE_MODE = 0o666 & ~_current_umask()


class PathEscapeError(ValueError):
    """A relative path that would leave the folder it must stay in (``..``, absolute, drive)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def check_relative(relpath: str) -> PurePosixPath:
    """Return ``relpath`` as a clean relative POSIX path, or raise :class:`PathEscapeError`.

    Backslashes are treated as separators (CSV files written on Windows); absolute paths, drive
    letters, ``..`` components, NUL and empty paths are refused.
    """
    if not isinstance(relpath, str) or not relpath.strip():
        raise PathEscapeError("empty path")
    if "\x00" in relpath:
        raise PathEscapeError("path contains a NUL byte")
    text = relpath.strip().replace("\\", "/")
    if text.startswith("/") or PureWindowsPath(relpath.strip()).drive:
        raise PathEscapeError(f"absolute path not allowed: {relpath!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathEscapeError(f"path escapes its root with '..': {relpath!r}")
    if not parts:
        raise PathEscapeError(f"empty path: {relpath!r}")
    return PurePosixPath(*parts)


def resolve_inside(root: str | os.PathLike, relpath: str) -> Path:
    """Resolve ``relpath`` under ``root`` and make sure the result (symlinks followed) stays inside."""
    rel = check_relative(relpath)
    root_resolved = Path(root).resolve()
    candidate = (root_resolved / Path(*rel.parts)).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise PathEscapeError(f"path resolves outside {root}: {relpath!r}")
    return candidate
