"""Sub-commands for compiling natural photos into a labelled dataset."""

from __future__ import annotations

import sys

#: problems printed on the terminal before pointing to the report for the rest
MAX_PRINTED_PROBLEMS = 40


def register(sub) -> None:
    """Add this area's sub-commands to the ``chexphoto`` parser."""
    p = sub.add_parser(
        "compile",
        help="check exported phone photos against CSV rows and compile them into a labelled dataset",
        description=(
            "Assign each exported photo to its CSV row - by its CheXpeditor file name "
            "(seq__nonce__path parts), or with --match-by-time by its EXIF capture time against the "
            "controller's manual-capture log - check the 1-to-1 correspondence and that every photo is a "
            "complete JPEG, and copy the proven photos to OUT/<split>/natural/<name>/<patient>/<study>/"
            "<view>.jpg with OUT/<split>/natural/<name>.csv (input columns and labels, Path rewritten). "
            "Every problem is printed and written to <name>.report.json; rows to shoot again go to "
            "<name>/recapture.csv. Exit status 1 (and nothing compiled) if there is any problem, unless "
            "--allow-missing."
        ),
    )
    p.add_argument("--csv", required=True, help="the CheXpert-format CSV the capture ran on")
    p.add_argument("--rows", required=True, metavar="START:END",
                   help="0-based data rows that were captured, END exclusive (as given to `chexphoto capture`)")
    p.add_argument("--export", required=True, metavar="DIR", help="flat folder of the exported photos")
    p.add_argument("--out", required=True, metavar="DATASET_DIR", help="dataset folder, e.g. MyPhotos")
    p.add_argument("--name", required=True, help="name of this natural set, e.g. iphone")
    p.add_argument("--split", choices=("train", "valid", "test"), help="train / valid / test (default: from the CSV paths)")
    p.add_argument("--allow-missing", action="store_true",
                   help="compile the proven rows even if others have problems (exit 0; report still written)")
    p.add_argument("--match-by-time", metavar="LOG", action="append",
                   help="assign photos (any file names) by EXIF capture time using the capture log of "
                        "`chexphoto capture --camera manual` (repeat for several sessions, e.g. a recapture)")
    p.add_argument("--clock-offset", type=float, default=0.0, metavar="S",
                   help="seconds to ADD to the phone's clock to get the computer's (e.g. 2.5 if the phone "
                        "is 2.5 s behind); with --match-by-time")
    p.add_argument("--guard", type=float, default=None, metavar="S",
                   help="photos this close to a change of row are not assigned (default 0.25); with "
                        "--match-by-time")
    p.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
    p.set_defaults(func=_compile)


def _compile(args) -> int:
    from chexphoto.capture.compile import DEFAULT_GUARD_S, compile_export
    from chexphoto.cli.common import CommandError

    if args.match_by_time is None and (args.clock_offset != 0.0 or args.guard is not None):
        raise CommandError("--clock-offset and --guard only apply with --match-by-time")
    result = compile_export(
        args.csv, args.rows, args.export, args.out, args.name, split=args.split,
        allow_missing=args.allow_missing, match_log=args.match_by_time, clock_offset=args.clock_offset,
        guard=DEFAULT_GUARD_S if args.guard is None else args.guard, progress=not args.quiet,
    )
    start, end = result.rows
    total = end - start
    if result.problems:
        print(f"{len(result.problems)} problem(s):")
        for problem in result.problems[:MAX_PRINTED_PROBLEMS]:
            print("  " + problem.describe())
        if len(result.problems) > MAX_PRINTED_PROBLEMS:
            print(f"  ... and {len(result.problems) - MAX_PRINTED_PROBLEMS} more in the report")
    if result.dataset_csv is not None:
        print(f"compiled {len(result.compiled_rows)} of {total} rows ({result.written} photos written) -> "
              f"{result.dataset_csv}")
    else:
        print(f"nothing compiled: {len(result.proven_rows)} of {total} rows are proven; fix the problems "
              "above (or use --allow-missing to compile the proven rows)", file=sys.stderr)
    if result.recapture_csv is not None:
        from chexphoto.capture.compile import contiguous_ranges

        ranges = contiguous_ranges(result.recapture_rows)
        print(f"rows to shoot again ({len(result.recapture_rows)}): {result.recapture_csv}")
        shown = ", ".join(ranges[:10]) + (", ..." if len(ranges) > 10 else "")
        print(f"  shoot them with `chexphoto capture --csv {args.csv} --rows R ...` for R = {shown} "
              "(photos keep their row numbers), then compile again")
    print(f"report: {result.report_path}")
    return result.exit_code
