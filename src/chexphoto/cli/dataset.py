"""Sub-commands for the dataset area."""

from __future__ import annotations


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
