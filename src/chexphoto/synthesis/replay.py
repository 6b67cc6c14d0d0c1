"""Re-render images from manifest records and check that the bytes are the same.

``chexphoto replay`` takes a manifest file (all its lines, or the ones picked with ``--row``)
or one manifest line given as a JSON string. Each record's source is read under ``--data-root``,
its SHA-256 compared with ``source_sha256``, the recorded params applied (no random draws) and
the encoded output's SHA-256 compared with ``output_sha256``. With ``--out DIR`` the re-rendered
image is also written to ``DIR/<output>`` (the record's ``output`` path, which starts with the
original ``--out`` folder name).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chexphoto.fsutil import PathEscapeError, atomic_write_bytes, resolve_inside
from chexphoto.imageio import DEFAULT_MAX_PIXELS, ImageReadError
from chexphoto.synthesis.manifest import parse_lines, read_manifest, sha256_bytes
from chexphoto.synthesis.render import read_source, replay_record


@dataclass
class ReplayResult:
    record: dict
    ok: bool
    reason: str = ""
    output_sha256: str | None = None
    written: str | None = None


def load_records(manifest_or_line: str, rows: Iterable[int] | None = None) -> list[dict]:
    """Records from a manifest file path or from one JSON manifest line; ``rows`` filters by the
    records' ``row`` (CSV row number)."""
    text = manifest_or_line.strip()
    if text.startswith("{"):
        records = list(parse_lines([text]))
    elif os.path.isfile(manifest_or_line):
        records = read_manifest(manifest_or_line)
    else:
        raise FileNotFoundError(f"{manifest_or_line!r} is neither a manifest file nor a JSON manifest line")
    if rows:
        wanted = set(rows)
        records = [r for r in records if r.get("row") in wanted]
        missing = wanted - {r.get("row") for r in records}
        if missing:
            raise ValueError(f"no manifest record for row(s) {', '.join(map(str, sorted(missing)))}")
    return records


def replay_one(record: dict, data_root: str | os.PathLike, out_dir: str | os.PathLike | None = None,
               *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ReplayResult:
    """Re-render one record; ``ok`` when the source and the output bytes match the record."""
    try:
        source_file = resolve_inside(data_root, record["source"])
        data = read_source(str(source_file))
    except (PathEscapeError, ImageReadError) as exc:
        return ReplayResult(record, False, f"source {record['source']!r}: {exc}")
    if sha256_bytes(data) != record.get("source_sha256"):
        return ReplayResult(record, False, "source image differs from the one recorded (sha256 mismatch)")
    try:
        encoded, _ = replay_record(record, data, max_pixels=max_pixels)
    except Exception as exc:  # report and go on with the other records
        return ReplayResult(record, False, f"re-rendering failed: {type(exc).__name__}: {exc}")
    digest = sha256_bytes(encoded)
    written = None
    if out_dir is not None:
        try:
            target = resolve_inside(out_dir, record["output"])
        except PathEscapeError as exc:
            return ReplayResult(record, False, f"output path refused: {exc}", digest)
        atomic_write_bytes(target, encoded)
        written = str(target)
    if digest != record.get("output_sha256"):
        return ReplayResult(record, False, "re-rendered output differs (sha256 mismatch)", digest, written)
    return ReplayResult(record, True, "", digest, written)


def replay(records: list[dict], data_root: str | os.PathLike, out_dir: str | os.PathLike | None = None,
           *, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None) -> list[ReplayResult]:
    """Replay every record (serially, with a progress bar)."""
    from chexphoto.progress import make_progress

    results = []
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    with make_progress("images", disable=None if progress is None else not progress) as bar:
        task = bar.add_task("replay", total=len(records))
        for record in records:
            results.append(replay_one(record, data_root, out_dir, max_pixels=max_pixels))
            bar.advance(task)
    return results


def describe(result: ReplayResult) -> str:
    """One line for the terminal."""
    status = "ok" if result.ok else "MISMATCH"
    tail = f" ({result.reason})" if result.reason else ""
    return f"{status}  row {result.record.get('row')}  {result.record.get('output')}{tail}"


__all__ = ["ReplayResult", "describe", "load_records", "replay", "replay_one"]
