"""The ``chexphoto`` command: one sub-command per task, each a thin wrapper over the library.

Each area registers its sub-commands from its own module (``cli/synthesis.py`` ...), and every
handler imports its library code lazily so ``chexphoto --help`` is fast and torch stays optional.
A handler returns the exit status. Expected failures (bad CSV, bad image, bad arguments) are
printed as one clear ``error:`` line; set ``CHEXPHOTO_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from chexphoto import __version__
from chexphoto.cli import capture, dataset, evaluation, learning, natural, synthesis
from chexphoto.cli.common import CommandError

AREAS = (synthesis, dataset, capture, natural, evaluation, learning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chexphoto",
        description="Make, collect, curate and benchmark photographs of chest x-rays.",
    )
    parser.add_argument("--version", action="version", version=f"chexphoto {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for area in AREAS:
        area.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error. Point stdout at devnull
        # so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("CHEXPHOTO_DEBUG"):
            raise
        from chexphoto.csvschema import CSVFormatError, PathParseError
        from chexphoto.fsutil import PathEscapeError
        from chexphoto.imageio import ImageReadError

        expected = (CommandError, CSVFormatError, PathParseError, PathEscapeError, ImageReadError,
                    OSError, KeyError, ValueError)
        if not isinstance(exc, expected):
            raise
        if isinstance(exc, KeyError) and exc.args:
            message = exc.args[0]
        elif isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
            # e.g. a folder given where a file is expected: "Is a directory: 'stats/'"
            message = f"{exc.strerror}: {exc.filename}"
        else:
            message = exc
        print(f"chexphoto {args.command}: error: {message}", file=sys.stderr)
        return getattr(exc, "code", 2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
