"""Pieces shared by the sub-command modules."""

from __future__ import annotations


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
