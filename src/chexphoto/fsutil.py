"""Filesystem helpers every writer in the package uses: atomic writes and confined paths.

Atomic writes go to a temporary file in the destination folder and are moved into place with
``os.replace``, so a reader (or a rerun after a crash) sees either the old file or the complete
new one, never a torn file.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path, PurePosixPath, PureWindowsPath


class PathEscapeError(ValueError):
    """A relative path that would leave the folder it must stay in (``..``, absolute, drive)."""


#: Temporary names are this process's id and a counter: unique across threads (``next`` on a
#: count is atomic), forked workers (new pid) and stale files of a dead process (``O_EXCL``).
_temp_counter = itertools.count()
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False,
                       make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename).

    The file gets the mode an ordinary ``open()`` gives (0o666 less the umask), so datasets on
    shared storage stay readable. ``make_parents=False`` skips the ``mkdir`` for callers that
    already made the folder (it raises ``FileNotFoundError`` if the folder is gone).
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if make_parents and folder:
        os.makedirs(folder, exist_ok=True)
    # the temporary name must fit the file system's 255-byte limit even when ``name`` nearly does
    stem = name.encode("utf-8")[:200].decode("utf-8", "ignore")
    while True:
        tmp = os.path.join(folder, f".{stem}.{os.getpid()}-{next(_temp_counter)}.tmp")
        try:
            fd = os.open(tmp, _OPEN_FLAGS, 0o666)
            break
        except FileExistsError:  # left by a killed process that had the same id: next name
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
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
