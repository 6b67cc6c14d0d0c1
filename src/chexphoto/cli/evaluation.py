"""Sub-commands for the evaluation area: ``evaluate``, ``compare``, ``report`` (no torch needed)."""

from __future__ import annotations

import json
import sys

from chexphoto.cli.common import CommandError

LEVEL_HELP = "score per image (Path) or per study (max over a study's views, as the CheXpert competition)"
TASKS_HELP = "'competition' (the 5 competition tasks), 'all' (14 observations) or comma-separated names"


def _common_options(p, *, allow_missing: bool = True) -> None:
    p.add_argument("--level", choices=("image", "study"), default="image", help=LEVEL_HELP)
    p.add_argument("--tasks", default="competition", help=TASKS_HELP)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap replicates for the 95%% CIs (patients resampled; 0: no CIs; default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    if allow_missing:
        p.add_argument("--allow-missing", action="store_true",
                       help="score only the labelled images/studies that have a prediction (default: error)")


def register(sub) -> None:
    """Add this area's sub-commands to the chexphoto parser."""
    p = sub.add_parser(
        "evaluate", help="AUROC per task with patient-bootstrap confidence intervals",
        description="AUROC per task and the mean over the 5 CheXpert competition tasks, each with a "
                    "95% CI from a bootstrap over patients. Predictions are matched to labels by "
                    "patient/study/view read from the paths.")
    p.add_argument("--labels", required=True, metavar="CSV", help="CheXpert-format label CSV")
    p.add_argument("--predictions", required=True, metavar="PRED.csv",
                   help="predictions: a Path (image) or Study column and one probability column per task")
    _common_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "compare", help="paired bootstrap difference in AUROC between conditions",
        description="Paired difference in AUROC of each condition against the first (reference) on the "
                    "images/studies all conditions have, with a paired patient-bootstrap 95% CI and a "
                    "two-sided bootstrap p-value.")
    p.add_argument("--labels", required=True, metavar="CSV", help="CheXpert-format label CSV")
    p.add_argument("--predictions", required=True, action="append", metavar="NAME=PRED.csv",
                   help="a condition's predictions; give it two or more times (the first is the reference)")
    _common_options(p, allow_missing=False)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "report", help="self-contained HTML report with plots",
        description="Write REPORT_DIR/index.html with PNG plots: AUROC per task per condition with CIs, "
                    "paired differences, and AUROC against severity from a benchmark directory.")
    p.add_argument("--labels", metavar="CSV", help="CheXpert-format label CSV (needed with --predictions)")
    p.add_argument("--predictions", action="append", default=[], metavar="NAME=PRED.csv",
                   help="a condition's predictions (repeatable; the first is the reference)")
    p.add_argument("--benchmark", metavar="DIR", help="a directory written by 'chexphoto benchmark'")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="where to write index.html and plots")
    _common_options(p)
    p.set_defaults(func=_report)


def parse_named(values: list[str]) -> dict[str, str]:
    """``NAME=PATH`` pairs (a bare ``PATH`` is named after its file stem), in order."""
    from pathlib import Path

    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).stem, value
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise CommandError(f"--predictions {value!r}: expected NAME=PRED.csv")
        if name in named:
            raise CommandError(f"--predictions: condition name {name!r} given twice")
        named[name] = path
    return named


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(ci) -> str:
    return "–" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _p(p) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _results_table(result: dict, title: str):
    from rich.table import Table

    notes = any("note" in e for e in [*result["tasks"].values(), result["mean"]])
    table = Table(title=title)
    for name, justify in [("Task", "left"), ("AUROC", "right"), ("95% CI", "right"), ("n", "right"),
                          ("pos.", "right"), ("uncertain", "right")] + ([("note", "left")] if notes else []):
        table.add_column(name, justify=justify, no_wrap=name != "note", min_width=12 if name == "note" else None,
                         overflow="fold")
    for task, e in result["tasks"].items():
        table.add_row(task, _fmt(e["auroc"]), _ci(e["ci"]), str(e["n"]), str(e["positives"]),
                      str(e["excluded_uncertain"]), *([e.get("note", "")] if notes else []))
    m = result["mean"]
    table.add_section()
    table.add_row("[bold]Mean (5 tasks)[/bold]", f"[bold]{_fmt(m['auroc'])}[/bold]", _ci(m["ci"]),
                  "", "", "", *([m.get("note", "")] if notes else []))
    table.caption = "uncertain: labels -1, left out of that task's score; CI: 95% patient bootstrap"
    return table


def _evaluate(args) -> int:
    from chexphoto.evaluation.metrics import evaluate, plural_unit

    result = evaluate(args.labels, args.predictions, level=args.level, tasks=args.tasks,
                      bootstrap=args.bootstrap, seed=args.seed, allow_missing=args.allow_missing, progress=True)
    _warn(result["warnings"])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console

    c = result["counts"]
    b = result["bootstrap"]
    Console().print(_results_table(
        result, f"{result['level']}-level AUROC: {c['scored']} {plural_unit(result['level'])}, {c['patients']} patients, "
                f"{b['replicates']} patient-bootstrap replicates (seed {b['seed']})"))
    return 0


def _compare(args) -> int:
    from chexphoto.evaluation.compare import compare

    named = parse_named(args.predictions)
    if len(named) < 2:
        raise CommandError("compare needs at least two --predictions NAME=PRED.csv")
    result = compare(args.labels, named, level=args.level, tasks=args.tasks, bootstrap=args.bootstrap,
                     seed=args.seed, progress=True)
    _warn(result["warnings"])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = result["conditions"]
    table = Table(title=f"{result['level']}-level AUROC on the {result['common']['keys']} {result['level']}s "
                        f"({result['common']['patients']} patients) every condition has",
                  caption="difference: condition - reference; 95% CI and two-sided p from a paired "
                          f"patient bootstrap (p >= 2/(B+1) with B = {result['bootstrap']['replicates']} "
                          "replicates)")
    table.add_column("Task", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for d in result["differences"]:
        label = f"{d['condition']} − {d['reference']}"
        table.add_column(label, justify="right", no_wrap=True)
        table.add_column("95% CI", justify="right", no_wrap=True)
        table.add_column("p", justify="right", no_wrap=True)
    tasks = list(result["results"][names[0]]["tasks"])
    for task in [*tasks, None]:
        if task is None:
            table.add_section()
        cells = [_fmt((result["results"][n]["tasks"][task] if task else result["results"][n]["mean"])["auroc"])
                 for n in names]
        for d in result["differences"]:
            e = d["tasks"][task] if task else d["mean"]
            cells += ["n/a" if e["difference"] is None else f"{e['difference']:+.3f}", _ci(e["ci"]),
                      _p(e["p_value"])]
        table.add_row(task or "[bold]Mean (5 tasks)[/bold]", *cells)
    console.print(table)
    return 0


def _report(args) -> int:
    from chexphoto.evaluation.report import build_report

    named = parse_named(args.predictions)
    if not named and not args.benchmark:
        raise CommandError("report needs --predictions NAME=PRED.csv and/or --benchmark DIR")
    if named and not args.labels:
        raise CommandError("--predictions need --labels CSV")
    index = build_report(args.labels, named, args.out, benchmark_dir=args.benchmark, level=args.level,
                         bootstrap=args.bootstrap, seed=args.seed, tasks=args.tasks,
                         allow_missing=args.allow_missing, progress=True)
    print(index)
    return 0
