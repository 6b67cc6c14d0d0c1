"""One progress-bar style for every long run (Rich, on stderr; quiet when not a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Task as _Task,
)
from rich.text import Text


class RateColumn(TextColumn):
    """Items per second (or per minute, for slow work like photographing)."""

    def __init__(self, unit: str = "images", per: str = "s"):
        super().__init__("")
        self.unit, self.per = unit, per

    def render(self, task: _Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"- {self.unit}/{self.per}", style="progress.data.speed")
        if self.per == "min":
            speed *= 60
        return Text(f"{speed:.1f} {self.unit}/{self.per}", style="progress.data.speed")


def make_progress(unit: str = "images", per: str = "s", *, disable: bool | None = None) -> Progress:
    """A Rich ``Progress`` with bar, done/total, rate, elapsed and remaining time."""
    console = Console(file=sys.stderr)
    if disable is None:
        disable = not console.is_terminal
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit, per),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )
