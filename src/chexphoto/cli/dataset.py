"""Sub-commands for the dataset area: ``sample``, ``stats``, ``check-splits``."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
    p = sub.add_parser(
        "sample",
        help="write all images of N patients chosen at random from a CheXpert-format CSV",
        description="Choose N patients uniformly at random (deterministic for --seed) and write all of "
                    "their rows, in the original order and with every column and value unchanged.",
    )
    p.add_argument("--csv", required=True, help="source CSV (CheXpert format)")
    p.add_argument("--patients", type=int, required=True, metavar="N", help="number of patients to choose")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed, same patients)")
    p.add_argument("--out", required=True, help="CSV to write (atomically)")
    p.add_argument("--exclude", action="append", default=[], metavar="OTHER.csv",
                   help="leave out patients present in this CSV (repeatable)")
    p.set_defaults(func=run_sample)

    p = sub.add_parser(
        "stats",
        help="the paper's Table 3 (patients, studies, images) and Table 1 (labels) of CSVs",
        description="For each CSV: patients, studies and images (Table 3) and, per observation, "
                    "positive / uncertain / negative counts and percentages, blanks counted as "
                    "negative (Table 1).",
    )
    p.add_argument("csv", nargs="+", help="CheXpert-format CSV(s)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", dest="form", action="store_const", const="json",
                      help="one JSON object per CSV (a list when several)")
    form.add_argument("--markdown", dest="form", action="store_const", const="markdown",
                      help="Markdown tables")
    form.add_argument("--csv", dest="form", action="store_const", const="csv",
                      help="one tidy CSV holding both tables")
    p.set_defaults(func=run_stats, form="rich")

    p = sub.add_parser(
        "check-splits",
        help="check that no patient appears in two of the CSVs (exit 1 if one does)",
        description="Exit 0 when the CSVs are patient-disjoint; otherwise exit 1 and list each shared "
                    "patient with the files it appears in.",
    )
    p.add_argument("csv", nargs="+", metavar="CSV", help="two or more CheXpert-format CSVs")
    p.set_defaults(func=run_check_splits)


def run_sample(args: argparse.Namespace) -> int:
    from chexphoto.dataset import sample_patients

    result = sample_patients(args.csv, args.patients, args.seed, args.out, exclude=args.exclude)
    excluded = f", {result.excluded:,} excluded" if args.exclude else ""
    print(f"sampled {len(result.patients):,} of {result.available:,} patients (seed {result.seed}{excluded}): "
          f"{result.images:,} images, {result.studies:,} studies -> {result.out}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from chexphoto.dataset import compute_stats, load_csv
    from chexphoto.dataset import stats as tables

    stats = [compute_stats(load_csv(path), name=path) for path in args.csv]
    if args.form == "json":
        print(tables.to_json(stats))
    elif args.form == "markdown":
        print(tables.to_markdown(stats), end="")
    elif args.form == "csv":
        print(tables.to_csv(stats), end="")
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:  # piped: don't squeeze the tables into 80 columns
            console = Console(width=120)
        for renderable in tables.to_rich(stats):
            console.print(renderable)
    return 0


def run_check_splits(args: argparse.Namespace) -> int:
    from chexphoto.dataset import find_shared_patients

    result = find_shared_patients(args.csv)
    print(result.report(), end="")
    return 0 if result.disjoint else 1
