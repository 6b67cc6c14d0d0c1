"""Sub-commands for the synthesis area: synthesize, replay, transforms, preview, demo."""

from __future__ import annotations

import argparse
import sys

from chexphoto.cli.common import CommandError

SPLITS = ("train", "valid", "test")


def _tile_size(text: str) -> int:
    value = int(text)
    if not 32 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"tile size must be between 32 and 4096 pixels, got {value}")
    return value


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
    p = sub.add_parser(
        "synthesize",
        help="apply synthetic photographic transformations to the images of a CheXpert CSV",
        description=(
            "Build a synthetic set: OUT_DIR/<split>/synthetic/<name>/<patient>/<study>/<view>.<ext>, "
            "with <name>.csv (the input's labels), <name>.manifest.jsonl (exact params, sha256) and "
            "<name>.errors.csv (rows left out) beside it. Same command and seed give byte-identical "
            "images with any number of workers, locally or on Dask."
        ),
    )
    p.add_argument("--csv", required=True, help="CheXpert-format CSV (Path + labels)")
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder the CSV's paths are relative to")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output dataset folder (e.g. CheXphoto-v1.0)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", choices=("digital", "photographic"), help="one of the paper's two sets")
    which.add_argument("--transform", metavar="A,B,C", help="comma-separated chain of transforms (needs --level)")
    p.add_argument("--level", type=int, choices=(1, 2, 3, 4), help="severity level for --transform")
    p.add_argument("--name", help="dataset name (default: the preset, else the chain joined by '-' + _L<level>)")
    p.add_argument("--split", choices=SPLITS, help="put every row in this split (default: from each path)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--format", dest="fmt", choices=("jpg", "png"), default="jpg", help="output format (jpg)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (default 80 million)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run / verify a finished one")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some rows failed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of this name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synthesize)

    p = sub.add_parser(
        "replay",
        help="re-render images from a manifest and verify their sha256",
        description=(
            "Re-render images from their manifest records (recorded params, no random draws) and check "
            "the source and output sha256. MANIFEST_LINE_OR_FILE is a <name>.manifest.jsonl file or one "
            "of its lines as a JSON string. Exit status 1 if any image differs."
        ),
    )
    p.add_argument("manifest", metavar="MANIFEST_LINE_OR_FILE")
    p.add_argument("--data-root", default=".", metavar="DIR", help="folder the sources are relative to (.)")
    p.add_argument("--out", metavar="DIR",
                   help="also write the re-rendered images to DIR/<output path> (default: verify only)")
    p.add_argument("--row", type=int, action="append", metavar="N",
                   help="only the record of CSV row N (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, print mismatches only")
    p.set_defaults(func=_replay)

    p = sub.add_parser("transforms", help="list the transforms and their parameters per level")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_transforms)

    p = sub.add_parser("preview", help="render the transforms x levels contact sheet of an image")
    p.add_argument("image", metavar="IMAGE", help="a radiograph (JPEG, PNG, DICOM)")
    p.add_argument("--out", required=True, metavar="SHEET.png", help="where to write the sheet (.png or .jpg)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transform", metavar="A,B,C", help="only these transforms (default: all)")
    p.add_argument("--tile", type=_tile_size, default=256, help="tile size in pixels (256)")
    p.set_defaults(func=_preview)

    p = sub.add_parser("demo", help="run everything on the radiograph shipped with pydicom-data")
    p.add_argument("--out", default="chexphoto-demo", metavar="DIR", help="output folder (./chexphoto-demo)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: up to 2)")
    p.set_defaults(func=_demo)


def _synthesize(args: argparse.Namespace) -> int:
    from chexphoto.imageio import DEFAULT_MAX_PIXELS
    from chexphoto.synthesis.plan import default_name
    from chexphoto.synthesis.run import DatasetExistsError, print_summary, synthesize
    from chexphoto.transforms import Chain, preset

    if args.preset:
        if args.level is not None:
            raise CommandError("--level goes with --transform (a preset has its own levels)")
        chain = preset(args.preset)
    else:
        if args.level is None:
            raise CommandError("--transform needs --level (1-4)")
        chain = Chain.from_names(args.transform, args.level)
        if not chain.steps:
            raise CommandError("--transform names no transform")
    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be at least 1")
    try:
        result = synthesize(
            args.csv, args.data_root, args.out, chain,
            name=args.name or default_name(chain, args.preset),
            split=args.split, seed=args.seed, workers=args.workers, scheduler=args.scheduler,
            fmt=args.fmt, quality=args.quality, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
            resume=args.resume, overwrite=args.overwrite, progress=False if args.quiet else None,
        )
    except DatasetExistsError as exc:
        raise CommandError(str(exc)) from None
    print_summary(result)
    for err in result.errors[:10]:
        print(f"  row {err.row}: {err.path}: {err.reason}", file=sys.stderr)
    if len(result.errors) > 10:
        print(f"  ... and {len(result.errors) - 10} more", file=sys.stderr)
    if result.failed and not args.allow_errors:
        print(f"{result.failed} row(s) failed (pass --allow-errors to accept)", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    from chexphoto.synthesis.replay import describe, load_records, replay

    records = load_records(args.manifest, args.row)
    results = replay(records, args.data_root, args.out, progress=False if args.quiet else None)
    bad = [r for r in results if not r.ok]
    for res in results:
        if not res.ok or not args.quiet:
            print(describe(res))
    print(f"{len(results) - len(bad)} of {len(results)} images reproduced byte for byte"
          + (f"; written under {args.out}" if args.out else ""))
    return 1 if bad else 0


def _transforms(args: argparse.Namespace) -> int:
    import json

    from chexphoto.synthesis.manifest import to_json
    from chexphoto.transforms import LEVELS, PRESETS, get, names

    table = []
    for name in names():
        t = get(name)
        table.append({"name": name, "family": t.family, "summary": t.summary,
                      "levels": {str(lv): json.loads(to_json(t.level_table(lv))) for lv in LEVELS}})
    if args.json:
        print(json.dumps({"transforms": table, "presets": PRESETS}, indent=2))
        return 0
    for entry in table:
        print(f"{entry['name']}  [{entry['family']}]  {entry['summary']}")
        for lv, params in entry["levels"].items():
            if params:
                text = ", ".join(f"{k}={v}" for k, v in params.items())
                print(f"    level {lv}: {text}")
    print()
    for preset_name, steps in PRESETS.items():
        print(f"preset {preset_name}: " + " -> ".join(f"{n} (level {lv})" for n, lv in steps))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from chexphoto.imageio import read_image
    from chexphoto.synthesis.contact_sheet import write_contact_sheet

    if not args.out.lower().endswith((".png", ".jpg", ".jpeg")):
        raise CommandError("--out must end in .png or .jpg")
    transforms = [t.strip() for t in args.transform.split(",") if t.strip()] if args.transform else None
    if transforms:
        from chexphoto.transforms import get

        for name in transforms:
            get(name)
    sheet = write_contact_sheet(args.out, read_image(args.image), transforms=transforms, seed=args.seed,
                                tile=args.tile)
    print(f"contact sheet {sheet.shape[1]}x{sheet.shape[0]} written to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from chexphoto.synthesis.demo import run_demo

    result = run_demo(args.out, workers=args.workers)
    print(f"demo written to {result.out}/")
    print(f"  source data root   {result.data_root / 'CheXpert-v1.0-small'} (from pydicom-data RG1_UNCR.dcm)")
    print(f"  input CSV          {result.csv}")
    print(f"  contact sheet      {result.sheet}")
    for ds in result.datasets:
        for out in ds.outputs:
            print(f"  {ds.name:<18} {out.written + out.skipped} images in {out.target.images}")
            print(f"  {'':<18} labels {out.target.csv}")
            print(f"  {'':<18} manifest {out.target.manifest}")
    print("replay check:  chexphoto replay "
          f"{result.datasets[-1].outputs[0].target.manifest} --data-root {result.data_root}")
    return 0
