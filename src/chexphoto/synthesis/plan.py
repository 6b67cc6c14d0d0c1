"""From CSV rows to render jobs: where each image comes from, where it goes, how it is keyed.

Layout of a synthetic set named ``NAME`` under ``--out OUT_DIR`` (one per split)::

    OUT_DIR/<split>/synthetic/NAME/<patient>/<study>/<view>.<ext>   images
    OUT_DIR/<split>/synthetic/NAME.csv                              labels (input columns)
    OUT_DIR/<split>/synthetic/NAME.manifest.jsonl                   one record per image
    OUT_DIR/<split>/synthetic/NAME.errors.csv                       rows left out, and why

A job is small (paths and numbers only) so it can be sent to a worker process or a Dask worker;
the worker returns a small record, never pixels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chexphoto.csvschema import SPLITS, PathParseError, csv_row_number, parse_path, split_from_path
from chexphoto.fsutil import PathEscapeError, check_relative, resolve_inside
from chexphoto.imageio import DEFAULT_MAX_PIXELS
from chexphoto.synthesis.job import Job
from chexphoto.transforms import PRESETS, Chain

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def default_name(chain: Chain, preset_name: str | None = None) -> str:
    """``--name`` default: the preset's name, else the chain joined with ``-`` plus ``_L{level}``.

    With mixed levels (library use only) each level is listed: ``blur-tilt_L1-3``.
    """
    if preset_name:
        return preset_name
    levels = [s.level for s in chain.steps]
    level_text = str(levels[0]) if len(set(levels)) == 1 else "-".join(map(str, levels))
    return "-".join(s.name for s in chain.steps) + f"_L{level_text}"


def check_name(name: str) -> str:
    """A dataset name must be one safe folder/file name component."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(
            f"invalid --name {name!r}: use letters, digits, '.', '_', '+' or '-' "
            "(one folder name, not starting with a dot)"
        )
    return name


def preset_for(chain: Chain) -> str | None:
    """The preset name whose chain equals ``chain``, if any."""
    spec = [(s.name, s.level) for s in chain.steps]
    for preset_name, steps in PRESETS.items():
        if [(str(n), int(lv)) for n, lv in steps] == spec:
            return preset_name
    return None


@dataclass(frozen=True)
class Target:
    """Files of one synthetic set in one split."""

    out_dir: Path  # absolute OUT_DIR
    split: str
    name: str
    #: OUT_DIR's folder name as given (a symlinked OUT_DIR keeps its own name in the label CSV)
    label_root: str | None = None

    def __post_init__(self) -> None:
        # the label CSV, manifest and errors CSV live here: a symlinked split/synthetic folder
        # must not carry them out of OUT_DIR (images are checked one by one as well)
        root = Path(self.out_dir).resolve()
        folder = self.folder.resolve()
        if folder != root and root not in folder.parents:
            raise PathEscapeError(f"{self.folder} leads outside --out {self.out_dir} (symlink?); refusing to write there")

    @property
    def folder(self) -> Path:
        return self.out_dir / self.split / "synthetic"

    @property
    def images(self) -> Path:
        return self.folder / self.name

    @property
    def csv(self) -> Path:
        return self.folder / f"{self.name}.csv"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.name}.manifest.jsonl"

    @property
    def journal(self) -> Path:
        return self.folder / f"{self.name}.manifest.jsonl.partial"

    @property
    def errors(self) -> Path:
        return self.folder / f"{self.name}.errors.csv"

    def rel_prefix(self) -> str:
        """Start of the label CSV's paths: OUT_DIR's folder name, split, synthetic, name."""
        return f"{self.label_root or self.out_dir.name}/{self.split}/synthetic/{self.name}"


@dataclass(frozen=True)
class RowError:
    """A row left out of the dataset."""

    index: int
    row: int
    path: str
    reason: str
    split: str


@dataclass
class Plan:
    jobs: list[Job]
    errors: list[RowError]
    targets: dict[str, Target]  # split -> target, in order of first appearance


class _InsideResolver:
    """:func:`chexphoto.fsutil.resolve_inside` for many paths under one root, with each folder
    resolved once: a file that is not a symlink resolves to its resolved folder plus its name,
    so a row costs one ``lstat`` instead of one per path component (the plan is serial work in
    the parent, before any worker starts). Symlinked files take the full check."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[tuple[str, ...], Path | PathEscapeError] = {}

    def __call__(self, rel: PurePosixPath) -> Path:
        parts = rel.parts
        folder_key = parts[:-1]
        folder = self._folders.get(folder_key)
        if folder is None:
            try:
                folder = resolve_inside(self.root, "/".join(folder_key)) if folder_key else self.root.resolve()
            except PathEscapeError as exc:
                folder = exc
            self._folders[folder_key] = folder
        if isinstance(folder, PathEscapeError):
            raise PathEscapeError(f"path resolves outside {self.root}: {str(rel)!r}")
        candidate = folder / parts[-1]
        if os.path.islink(candidate):
            return resolve_inside(self.root, str(rel))
        return candidate


def plan_jobs(
    paths: list[str],
    *,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    chain: Chain,
    name: str,
    seed: int = 0,
    split: str | None = None,
    fmt: str = "jpg",
    quality: int = 95,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Plan:
    """Turn the CSV's ``Path`` values into jobs, and rows that cannot be rendered into errors.

    A row's split is ``split`` when given, else the one named in its path. A row whose path has
    no split (so it cannot be placed) is reported under the first split found in the file.
    Rows are refused when the path escapes ``data_root`` (``..``, absolute, a symlink leading
    out), has no patient/study/view, or maps to the same output as an earlier row.
    """
    check_name(name)
    if split is not None and split not in SPLITS:
        raise ValueError(f"invalid split {split!r}; choose one of {', '.join(SPLITS)}")
    fmt = fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ("jpg", "png"):
        raise ValueError(f"unsupported output format {fmt!r}; choose jpg or png")
    label_root = Path(os.path.abspath(out_dir)).name  # before symlinks are resolved
    out_dir = Path(out_dir).resolve()
    data_root = Path(data_root)
    source_resolver, output_resolver = _InsideResolver(data_root), _InsideResolver(out_dir)
    spec = tuple((s.name, s.level) for s in chain.steps)

    row_splits = [split or split_from_path(p) for p in paths]
    fallback = next((s for s in row_splits if s), None)
    targets: dict[str, Target] = {}
    if split is not None:
        targets[split] = Target(out_dir, split, name, label_root)

    jobs: list[Job] = []
    errors: list[RowError] = []
    seen_outputs: dict[str, int] = {}
    for index, (path, row_split) in enumerate(zip(paths, row_splits, strict=True)):
        row = csv_row_number(index)
        place = row_split or fallback
        if place is not None and place not in targets:
            targets[place] = Target(out_dir, place, name, label_root)

        def fail(reason: str, place=place, index=index, row=row, path=path) -> None:
            errors.append(RowError(index, row, path, reason, place or ""))

        try:
            rel = check_relative(path)
            key = parse_path(path)
        except (PathEscapeError, PathParseError) as exc:
            fail(str(exc))
            continue
        if row_split is None:
            fail(f"no train/valid/test folder in path {path!r}; pass --split")
            continue
        try:
            source_file = source_resolver(rel)
        except PathEscapeError as exc:
            fail(str(exc))
            continue
        target = targets[row_split]
        output = f"{target.rel_prefix()}/{key.patient}/{key.study}/{key.view}.{fmt}"
        try:
            output_file = output_resolver(check_relative(output.split("/", 1)[1]))
        except PathEscapeError as exc:  # e.g. a symlinked folder inside OUT_DIR leading out
            fail(f"output would be written outside --out: {exc}")
            continue
        if output_file == source_file:
            fail("output would overwrite its own source image")
            continue
        if output in seen_outputs:
            fail(f"same patient/study/view as row {seen_outputs[output]} (output {output})")
            continue
        seen_outputs[output] = row
        jobs.append(Job(
            index=index, row=row, source=path, source_file=str(source_file), rng_key=str(rel),
            split=row_split, output=output, output_file=str(output_file), chain=spec, seed=int(seed),
            fmt=fmt, quality=int(quality), max_pixels=int(max_pixels),
        ))
    if errors and any(not e.split for e in errors):
        raise ValueError("no row names a train/valid/test split in its path; pass --split")
    return Plan(jobs, errors, targets)
