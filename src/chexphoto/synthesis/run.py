"""Run a synthesis: plan, check what is already there, render in parallel, finalise atomically.

Engines: in-process (``workers=1``), a local process pool (``concurrent.futures`` with the
``forkserver`` start method on Linux, ``spawn`` elsewhere), or a Dask distributed cluster
(``scheduler="tcp://host:port"``). All three run the same :func:`render_chunk` on the same jobs,
so outputs are byte-identical. Work goes out in chunks; only small records come back.

Crash safety: each finished record is appended to ``<name>.manifest.jsonl.partial``; the label
CSV, manifest and errors CSV are written atomically at the end, in input row order, and only
then is the journal removed. ``resume=True`` reads the manifest and the journal and skips rows
whose source and output still match their record.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from chexphoto.csvschema import read_csv, validate
from chexphoto.fsutil import atomic_write_text
from chexphoto.imageio import DEFAULT_MAX_PIXELS
from chexphoto.synthesis.manifest import Journal, compact_record, read_manifest, record_line
from chexphoto.synthesis.plan import (
    Job,
    Plan,
    RowError,
    Target,
    check_name,
    default_name,
    plan_jobs,
    preset_for,
)
from chexphoto.synthesis.render import init_worker, render_chunk
from chexphoto.transforms import Chain


class DatasetExistsError(ValueError):
    """The target already holds a dataset and neither --resume nor --overwrite allows reuse."""


@dataclass
class SplitOutput:
    """What was written for one split."""

    target: Target
    written: int = 0
    skipped: int = 0
    failed: int = 0
    #: skipped on --resume although the source could not be read (output kept as recorded)
    unverified: int = 0


@dataclass
class SynthesisResult:
    name: str
    written: int
    skipped: int
    failed: int
    seconds: float
    outputs: list[SplitOutput] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.written + self.skipped + self.failed

    def summary(self) -> str:
        rate = (self.written + self.skipped) / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.name}: {self.written} written, {self.skipped} skipped, {self.failed} failed "
                f"in {self.seconds:.1f} s ({rate:.1f} images/s)")


# ---------------------------------------------------------------------------------------------
# what is at the target already


def _records_of(target: Target) -> tuple[list[dict], bool]:
    """Previous records (manifest, then journal entries on top) and whether a journal exists."""
    records: dict[str, dict] = {}
    if target.manifest.exists():
        for rec in read_manifest(target.manifest, lenient=True):
            records[rec["output"]] = rec
    journal = target.journal.exists()
    if journal:
        for rec in read_manifest(target.journal, lenient=True):
            records[rec["output"]] = rec
    return list(records.values()), journal


def _has_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    for _dirpath, _dirs, files in os.walk(folder):
        if any(not f.startswith(".") for f in files):
            return True
    return False


def _difference(records: list[dict], jobs: list[Job]) -> str | None:
    """Why the previous records are not this command's dataset, or None if they are."""
    if not jobs:
        return None
    probe = jobs[0]
    spec = [[n, lv] for n, lv in probe.chain]
    outputs = {job.output for job in jobs}
    for rec in records:
        rec_spec = [[s.get("name"), s.get("level")] for s in rec.get("chain", [])]
        if rec_spec != spec:
            return f"it was made with chain {rec_spec}, this command uses {spec}"
        if rec.get("seed") != probe.seed:
            return f"it was made with seed {rec.get('seed')}, this command uses {probe.seed}"
        if rec.get("format") != probe.fmt or rec.get("quality") != probe.quality:
            return (f"it was written as {rec.get('format')} quality {rec.get('quality')}, "
                    f"this command writes {probe.fmt} quality {probe.quality}")
        if rec.get("output") not in outputs:
            return f"it holds {rec.get('source')!r}, which is not in this CSV"
    return None


def prepare_targets(plan: Plan, *, resume: bool, overwrite: bool) -> dict[str, dict[str, dict]]:
    """Check every split's target before anything is written.

    Returns, per split, the previous records usable for ``resume`` (keyed by output path).
    Raises :class:`DatasetExistsError` when the target holds another dataset (unless
    ``overwrite``) or this same dataset without ``resume``. With ``overwrite`` the old label
    CSV, manifest, errors and journal are removed here; old images are replaced as rows are
    rendered and any left over are pruned at the end.
    """
    previous: dict[str, dict[str, dict]] = {}
    problems = []
    for split, target in plan.targets.items():
        jobs = [j for j in plan.jobs if j.split == split]
        records, journal = _records_of(target)
        exists = bool(records) or journal or target.csv.exists() or target.manifest.exists() \
            or _has_files(target.images)
        previous[split] = {}
        if not exists or overwrite:
            continue
        where = target.folder / target.name
        if not records and not journal:  # an empty journal: a run of ours stopped before any record
            problems.append(f"{where} already holds files that no manifest describes")
            continue
        why = _difference(records, jobs)
        if why is not None:
            problems.append(f"{where} holds a different dataset: {why}")
            continue
        if not resume:
            state = "an interrupted run of this same command" if journal else "this same dataset"
            problems.append(f"{where} already holds {state} ({len(records)} images)")
            continue
        # compact form (the raw line instead of nested dicts: ~5x less memory on large sets)
        previous[split] = {rec["output"]: compact_record(rec) for rec in records}
    if problems:
        hint = ("pass --overwrite to replace it" if any("different" in p or "no manifest" in p for p in problems)
                else "pass --resume to finish or verify it, or --overwrite to rebuild it")
        raise DatasetExistsError("; ".join(problems) + f"; {hint}")
    if overwrite:
        for target in plan.targets.values():
            for path in (target.journal, target.manifest, target.csv, target.errors):
                path.unlink(missing_ok=True)
    return previous


# ---------------------------------------------------------------------------------------------
# engines


def _chunks(jobs: list[Job], size: int, workers: int = 1) -> list[list[Job]]:
    """Chunks of at most ``size`` jobs that shrink towards the end (guided scheduling): once
    fewer than ``2 * workers * size`` jobs remain, each chunk takes half a worker's fair share,
    down to single images, so the workers finish within about one image of each other instead
    of one worker rendering a last full chunk while the others wait."""
    chunks = []
    start, total = 0, len(jobs)
    while start < total:
        step = max(1, min(size, (total - start) // (2 * workers)))
        chunks.append(jobs[start:start + step])
        start += step
    return chunks


def chunk_size(n_jobs: int, workers: int) -> int:
    """Chunks big enough to amortise the round trip (a job is a few hundred bytes, a result a
    manifest record), small enough that every worker gets several and they finish together."""
    return max(1, min(16, n_jobs // max(1, workers * 8)))


def _run_inline(jobs: list[Job], size: int) -> Iterator[list[dict]]:
    init_worker()
    for chunk in _chunks(jobs, size):
        yield render_chunk(chunk)


def _pool_context():
    """``forkserver`` where available (no fork of a threaded parent), else ``spawn``.

    The fork server imports the render module (OpenCV, NumPy, every transform) once, so each
    worker it forks starts with them loaded instead of importing them again. (Workers still
    re-import the parent's ``__main__`` module, as with ``spawn``: keep scripts' top-level
    imports light.)
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", "chexphoto.synthesis.render"])
        return ctx
    return multiprocessing.get_context("spawn")


def _crashed(chunk: list[Job], reason: str) -> list[dict]:
    return [{"index": j.index, "row": j.row, "split": j.split, "source": j.source, "status": "failed",
             "reason": reason} for j in chunk]


def _run_pool(jobs: list[Job], size: int, workers: int) -> Iterator[list[dict]]:
    """A local process pool with a bounded number of chunks in flight.

    If a worker process dies (killed, out of memory, a crash in native code), the chunks that
    were in flight are retried one image at a time in a new pool; an image that kills a worker
    on its own is reported as failed and the run goes on. A dying worker fails *every* future in
    flight, so a single image that was in flight then is only a suspect: it is retried alone
    (nothing else in flight), and reported as failed only if it breaks the pool again.
    """
    queue: deque[list[Job]] = deque(_chunks(jobs, size, workers))
    max_in_flight = workers * 3
    suspects: set[int] = set()  # indices of single images that were in flight when a worker died

    def alone(chunk: list[Job]) -> bool:
        return len(chunk) == 1 and chunk[0].index in suspects
    while queue:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=init_worker)
        in_flight: dict = {}
        broken: list[list[Job]] = []
        try:
            while queue or in_flight:
                while queue and len(in_flight) < max_in_flight and not broken:
                    if in_flight and (alone(queue[0]) or any(alone(c) for c in in_flight.values())):
                        break  # a suspect runs with nothing else in flight
                    chunk = queue.popleft()
                    in_flight[pool.submit(render_chunk, chunk)] = chunk
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    chunk = in_flight.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken.append(chunk)
                if broken:
                    # the pool is unusable: collect what is still in flight and start again
                    for future, chunk in in_flight.items():
                        try:
                            yield future.result()
                        except BrokenProcessPool:
                            broken.append(chunk)
                    in_flight.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for chunk in reversed(broken):
            if alone(chunk):  # it ran alone: this image broke the pool
                yield _crashed(chunk, "the worker process died while rendering this image")
            else:
                if len(chunk) == 1:
                    suspects.add(chunk[0].index)
                queue.extendleft([job] for job in reversed(chunk))


def connect_dask(scheduler: str):
    """A ``dask.distributed.Client`` for ``scheduler``; ``ValueError`` with a clear message if the
    scheduler cannot be reached (checked before anything is written)."""
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ValueError("--scheduler needs dask[distributed] installed") from exc
    try:
        return Client(scheduler, set_as_default=False, timeout="20s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from None


def _run_dask(jobs: list[Job], size: int, client) -> Iterator[list[dict]]:
    """The same chunks on a Dask distributed cluster (workers must see the same file paths)."""
    from dask.distributed import as_completed

    chunks = _chunks(jobs, size, max(1, sum(client.nthreads().values())))
    futures = client.map(render_chunk, chunks, pure=False)
    by_key = {f.key: chunk for f, chunk in zip(futures, chunks, strict=True)}
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as exc:  # a lost worker or a cluster-side error: report, go on
                result = _crashed(by_key[future.key], f"Dask task failed: {type(exc).__name__}: {exc}")
            yield result
            future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def run_jobs(jobs: list[Job], *, workers: int = 1, client=None,
             on_chunk: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Render ``jobs`` with the chosen engine (a Dask ``client``, else ``workers`` local
    processes, in-process for 1); ``on_chunk`` sees each chunk's results as they arrive (in
    completion order). Returns all results."""
    results: list[dict] = []
    if not jobs:
        return results
    if client is not None:
        n_workers = max(1, sum(client.nthreads().values()))
        engine: Iterable[list[dict]] = _run_dask(jobs, chunk_size(len(jobs), n_workers), client)
    elif workers <= 1 or len(jobs) == 1:
        engine = _run_inline(jobs, chunk_size(len(jobs), 1))
    else:
        workers = min(workers, len(jobs))
        engine = _run_pool(jobs, chunk_size(len(jobs), workers), workers)
    for chunk_results in engine:
        results.extend(chunk_results)
        if on_chunk is not None:
            on_chunk(chunk_results)
    return results


# ---------------------------------------------------------------------------------------------
# finalising


def _prune(target: Target, keep: set[str]) -> None:
    """Remove files in the set's image folder that no row of the final manifest wrote
    (images of rows that failed or left the CSV, temp files of killed writes)."""
    images = target.images
    if not images.is_dir() or images.is_symlink():
        return
    out_dir = target.out_dir.resolve()
    if out_dir not in images.resolve().parents:
        return  # never touch anything outside OUT_DIR
    for dirpath, _dirs, files in os.walk(images, topdown=False):
        for filename in files:
            path = os.path.join(dirpath, filename)
            if os.path.realpath(path) not in keep:
                os.unlink(path)
        if dirpath != str(target.images) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def finalise(target: Target, df: pd.DataFrame, done: list[tuple[int, str, str]], errors: list[RowError],
             jobs_by_index: dict[int, Job]) -> None:
    """Write the manifest, label CSV and errors CSV atomically (input row order), prune stale
    images, then remove the journal. ``done`` holds ``(row, output, manifest line)`` per image."""
    done = sorted(done)
    atomic_write_text(target.manifest, "".join(line + "\n" for _, _, line in done))
    rows = [row - 2 for row, _, _ in done]
    labels = df.iloc[rows].copy()
    labels["Path"] = [output for _, output, _ in done]
    atomic_write_text(target.csv, _csv_text(labels))
    errors = sorted(errors, key=lambda e: e.row)
    err_frame = pd.DataFrame({"row": [e.row for e in errors], "path": [e.path for e in errors],
                              "reason": [e.reason for e in errors]}, columns=["row", "path", "reason"])
    atomic_write_text(target.errors, _csv_text(err_frame))
    keep = {jobs_by_index[index].output_file for index in rows}
    _prune(target, keep)
    target.journal.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the command


def synthesize(
    csv: str | os.PathLike,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    chain: Chain,
    *,
    name: str | None = None,
    split: str | None = None,
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    fmt: str = "jpg",
    quality: int = 95,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> SynthesisResult:
    """Build the synthetic set ``name`` from the CSV's rows (see the module and :mod:`.plan`).

    ``name`` defaults to the preset's name when ``chain`` is a preset's chain, else
    :func:`~chexphoto.synthesis.plan.default_name` (the CLI names ``--transform`` chains by the
    chain even when they equal a preset). ``workers`` defaults to ``os.cpu_count()``;
    ``scheduler`` (``tcp://host:port``) runs the jobs on Dask instead. ``progress=None`` shows
    the bar only on a terminal. Bad rows are reported in ``<name>.errors.csv`` and in the
    result; they never stop the run. Raises :class:`DatasetExistsError` (see
    :func:`prepare_targets`) before writing anything when the target is taken.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite cannot be combined")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    if not Path(data_root).is_dir():
        raise FileNotFoundError(f"--data-root {data_root} is not a folder")
    name = check_name(name or default_name(chain, preset_for(chain)))
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    started = time.perf_counter()
    df = read_csv(csv)
    validate(df, str(csv), require_keys=False)  # labels are copied as they are: refuse invalid ones up front
    if df.empty and split is None:
        raise ValueError(f"{csv} has no rows (pass --split to write an empty set)")
    plan = plan_jobs(df["Path"].tolist(), data_root=data_root, out_dir=out_dir, chain=chain, name=name,
                     seed=seed, split=split, fmt=fmt, quality=quality, max_pixels=max_pixels)
    client = connect_dask(scheduler) if scheduler else None  # fail before anything is written
    try:
        previous = prepare_targets(plan, resume=resume, overwrite=overwrite)
    except BaseException:
        if client is not None:
            client.close()
        raise
    jobs = [replace(job, expect=previous.get(job.split, {}).get(job.output)) for job in plan.jobs]
    jobs_by_index = {job.index: job for job in jobs}
    journals = {split_: Journal(target.journal) for split_, target in plan.targets.items()}
    outputs = {split_: SplitOutput(target) for split_, target in plan.targets.items()}
    done: dict[str, list[tuple[int, str, str]]] = {split_: [] for split_ in plan.targets}
    errors = list(plan.errors)
    for err in errors:
        outputs[err.split].failed += 1

    from chexphoto.progress import make_progress

    bar = make_progress("images", disable=None if progress is None else not progress)

    def on_chunk(results: list[dict]) -> None:
        written: dict[str, list[str]] = {}
        for res in results:
            out = outputs[res["split"]]
            if res["status"] == "failed":
                out.failed += 1
                errors.append(RowError(res["index"], res["row"], res["source"], res["reason"], res["split"]))
                continue
            line = record_line(res["record"])
            if res["status"] == "written":
                out.written += 1
                written.setdefault(res["split"], []).append(line)
            else:
                out.skipped += 1
                out.unverified += "unverified" in res
            done[res["split"]].append((res["row"], res["record"]["output"], line))
        for split_, lines in written.items():
            journals[split_].append_lines(lines)
        bar.advance(task, len(results))

    try:
        for journal in journals.values():
            journal.open()  # before any image is written (see Journal.open)
        with bar:
            task = bar.add_task(f"synthesize {name}", total=len(jobs))
            run_jobs(jobs, workers=workers, client=client, on_chunk=on_chunk)
    finally:
        for journal in journals.values():
            journal.close()
        if client is not None:
            client.close()
    for split_, target in plan.targets.items():
        finalise(target, df, done[split_], [e for e in errors if e.split == split_], jobs_by_index)
    seconds = time.perf_counter() - started
    return SynthesisResult(
        name=name,
        written=sum(o.written for o in outputs.values()),
        skipped=sum(o.skipped for o in outputs.values()),
        failed=sum(o.failed for o in outputs.values()),
        seconds=seconds,
        outputs=list(outputs.values()),
        errors=sorted(errors, key=lambda e: e.row),
    )


def print_summary(result: SynthesisResult, file=None) -> None:
    """The end-of-run summary: counts, time, and where each split's files are."""
    file = file or sys.stdout
    print(result.summary(), file=file)
    for out in result.outputs:
        t = out.target
        print(f"  {t.split}: {out.written + out.skipped} images in {t.images}", file=file)
        print(f"         labels {t.csv}", file=file)
        print(f"         manifest {t.manifest}", file=file)
        if out.failed:
            print(f"         {out.failed} rows left out, see {t.errors}", file=file)
        if out.unverified:
            print(f"         {out.unverified} outputs kept as the manifest records them although their source "
                  "could not be read now (check --data-root)", file=file)
