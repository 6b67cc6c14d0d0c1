"""Render one job: read, sample, apply, encode, write atomically; return a small record.

The random state of an image comes only from ``derive_rng(seed, chain spec, source key)``, so
the result does not depend on which worker renders it, in which order, or on which machine.
Params are JSON round-tripped *before* they are applied, so the manifest holds exactly the
numbers that made the pixels and ``chexphoto replay`` reproduces the bytes.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from chexphoto.fsutil import atomic_write_bytes
from chexphoto.imageio import ImageReadError, decode_image, encode_image
from chexphoto.seeding import derive_rng
from chexphoto.synthesis.job import Job
from chexphoto.synthesis.manifest import expand_record, roundtrip, sha256_bytes, sha256_file
from chexphoto.transforms import Chain, apply_recorded, names

_chains: dict[tuple, Chain] = {}

# Register every transform family at import, so a fork server that preloads this module hands
# its workers a complete registry (no per-worker imports).
names()


def _chain(spec: tuple) -> Chain:
    chain = _chains.get(spec)
    if chain is None:
        chain = _chains[spec] = Chain(spec)
    return chain


def init_worker() -> None:
    """Per-process setup: one OpenCV thread (parallelism comes from the pool)."""
    import cv2

    cv2.setNumThreads(1)


#: Folders this process has already created or seen (no mkdir per image).
_known_folders: set[str] = set()


def write_output(path: str, data: bytes) -> None:
    """Write an output image atomically, creating its folder only once per process.

    No fsync: a crash loses at most the images still in the page cache, and ``--resume``
    re-checks every output's hash.
    """
    folder = os.path.dirname(path)
    if folder not in _known_folders:
        os.makedirs(folder, exist_ok=True)
        _known_folders.add(folder)
    try:
        atomic_write_bytes(path, data, make_parents=False)
    except FileNotFoundError:  # the folder was removed since: create it again
        _known_folders.discard(folder)
        atomic_write_bytes(path, data)


def rng_for(seed: int, chain_spec: Sequence, source_key: str) -> np.random.Generator:
    """The random stream of one image: ``derive_rng(seed, [[name, level], ...], source_key)``."""
    return derive_rng(int(seed), [[str(n), int(lv)] for n, lv in chain_spec], str(source_key))


def read_source(path: str) -> bytes:
    """The source file's bytes; :class:`ImageReadError` with a clear reason on failure."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image file") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None


def render_image(image: np.ndarray, seed: int, chain_spec: Sequence, source_key: str) -> tuple[np.ndarray, list]:
    """Sample the chain for this image and apply it; returns (pixels, recorded chain)."""
    chain = _chain(tuple((str(n), int(lv)) for n, lv in chain_spec))
    height, width = image.shape[:2]
    recorded = roundtrip(chain.sample(rng_for(seed, chain_spec, source_key), height, width))
    out = chain.apply(image, recorded)
    return out, recorded


def _output_intact(job: Job) -> bool:
    """The previous record names this row's output path and source path, and the file on disk
    still has the recorded sha256."""
    prev = job.expect
    if prev is None or prev.get("output") != job.output or prev.get("source") != job.source:
        return False
    try:
        return sha256_file(job.output_file) == prev.get("output_sha256")
    except OSError:
        return False


def _unchanged(job: Job, source_sha: str) -> bool:
    """--resume: the previous record still describes this row and its output file is intact.

    The source path must match too, not only its bytes: it is part of the image's random key, so
    the same file under another path renders differently."""
    prev = job.expect
    if prev is None or prev.get("source_sha256") != source_sha or prev.get("output") != job.output:
        return False
    if prev.get("source") != job.source:
        return False
    try:
        return sha256_file(job.output_file) == prev.get("output_sha256")
    except OSError:
        return False


def _store(path: str, encoded: bytes, source: bytes | None) -> tuple[str | None, str]:
    """Write the output, then hash it (and the source, when not hashed yet): the I/O and hashing
    half of a job, which :func:`render_chunk` runs on a background thread (both release the GIL)
    while the next image is decoded and rendered."""
    write_output(path, encoded)
    return (None if source is None else sha256_bytes(source)), sha256_bytes(encoded)


#: The single I/O thread of this process, and (per calling thread: Dask runs several chunks in
#: one process) whether :func:`render_chunk` is running, so jobs hand their writes to it.
_io_thread: ThreadPoolExecutor | None = None
_io_lock = threading.Lock()
_state = threading.local()


def render_job(job: Job) -> dict:
    """Render ``job``; returns ``{"status": "written"|"skipped", "record": {...}}`` or
    ``{"status": "failed", "reason": ...}``. Never raises for a bad input image.

    Inside :func:`render_chunk` the write is handed to the I/O thread and the result carries the
    pending write under ``"_pending"``; :func:`render_chunk` completes it before returning."""
    base = {"index": job.index, "row": job.row, "split": job.split, "source": job.source}
    pending = None
    try:
        try:
            data = read_source(job.source_file)
        except ImageReadError as exc:
            # --resume with a source that cannot be read now (a wrong or unmounted --data-root):
            # an intact output the manifest vouches for is kept, never deleted for it
            if _output_intact(job):
                record = expand_record(job.expect)
                record["row"] = job.row
                return {**base, "status": "skipped", "record": record, "unverified": str(exc)}
            raise
        source_sha = None
        if job.expect is not None:
            source_sha = sha256_bytes(data)
            if _unchanged(job, source_sha):
                record = expand_record(job.expect)
                record["row"] = job.row
                return {**base, "status": "skipped", "record": record}
        image = decode_image(data, job.source_file, max_pixels=job.max_pixels)
        out, recorded = render_image(image, job.seed, job.chain, job.rng_key)
        del image
        encoded = encode_image(out, job.fmt, quality=job.quality)
        height, width = out.shape[:2]
        del out
        source = data if source_sha is None else None
        del data
        if getattr(_state, "deferring", False) and _io_thread is not None:
            pending = _io_thread.submit(_store, job.output_file, encoded, source)
            output_sha = None
        else:
            hashed, output_sha = _store(job.output_file, encoded, source)
            source_sha = source_sha or hashed
    except ImageReadError as exc:
        return {**base, "status": "failed", "reason": str(exc)}
    except MemoryError:
        return {**base, "status": "failed", "reason": "out of memory while rendering this image"}
    except Exception as exc:  # a bug or an unexpected input must not stop the run
        return {**base, "status": "failed", "reason": _failure_reason(exc)}
    record = {
        "row": job.row,
        "source": job.source,
        "source_sha256": source_sha,
        "seed": job.seed,
        "chain": recorded,
        "format": job.fmt,
        "quality": job.quality,
        "output": job.output,
        "output_sha256": output_sha,
        "height": int(height),
        "width": int(width),
    }
    result = {**base, "status": "written", "record": record}
    if pending is not None:
        result["_pending"] = pending
    return result


def _failure_reason(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _complete(result: dict) -> dict:
    """Wait for a result's background write; a failed write makes the row failed."""
    pending = result.pop("_pending", None)
    if pending is None:
        return result
    try:
        source_sha, output_sha = pending.result()
    except Exception as exc:
        base = {key: result[key] for key in ("index", "row", "split", "source")}
        return {**base, "status": "failed", "reason": _failure_reason(exc)}
    record = result["record"]
    record["source_sha256"] = record["source_sha256"] or source_sha
    record["output_sha256"] = output_sha
    return result


def render_chunk(jobs: Sequence[Job]) -> list[dict]:
    """Render several jobs in one worker call (fewer round trips); small results only.

    Each image's write and hashes run on one background thread while the next image is
    decoded, rendered and encoded (at most two writes in flight, so memory stays bounded); every
    write has finished, and failed writes are reported as failed rows, before this returns, so
    a record only ever describes a file that is on disk."""
    global _io_thread
    init_worker()
    with _io_lock:
        if _io_thread is None:
            _io_thread = ThreadPoolExecutor(1, thread_name_prefix="chexphoto-write")
    results: list[dict] = []
    _state.deferring = True
    try:
        for job in jobs:
            results.append(render_job(job))
            if len(results) > 1:
                results[-2] = _complete(results[-2])  # the previous write had this render's time
    finally:
        _state.deferring = False
        results = [_complete(result) for result in results]
    return results


def replay_record(record: dict, source_bytes: bytes, *, max_pixels: int | None = None) -> tuple[bytes, np.ndarray]:
    """Re-render a manifest record from its source bytes and recorded params: (encoded, pixels)."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    image = decode_image(source_bytes, record["source"], **kwargs)
    out = apply_recorded(image, record["chain"])
    return encode_image(out, record.get("format", "jpg"), quality=int(record.get("quality", 95))), out
