"""A render job: everything a worker needs for one row, and nothing heavy.

Kept in its own module (no pandas import) so that worker processes, which unpickle jobs, start
fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chexphoto.imageio import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to render one row (picklable, no pixels)."""

    index: int  # 0-based position of the row in the CSV
    row: int  # row number as in the file (header = 1)
    source: str  # the CSV's Path, as written
    source_file: str  # absolute path of the source image (inside --data-root)
    rng_key: str  # normalised relative source path: the per-image part of the random key
    split: str
    output: str  # label CSV Path of the output (relative to the parent of OUT_DIR)
    output_file: str  # absolute path of the output image (inside OUT_DIR)
    chain: tuple  # ((name, level), ...)
    seed: int
    fmt: str = "jpg"
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: for --resume: the previous record (``manifest.compact_record``); the job is skipped when
    #: the source and the output file still match it
    expect: dict | None = field(default=None, compare=False)
