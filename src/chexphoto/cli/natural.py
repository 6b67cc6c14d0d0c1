"""Sub-commands for compiling natural photos into a labelled dataset."""

from __future__ import annotations


def register(sub) -> None:
    """Add this area's sub-commands to the ``chexphoto`` parser."""
