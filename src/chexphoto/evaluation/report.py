"""A self-contained HTML report: AUROC per task per condition, differences, robustness curves.

``build_report`` writes into ``REPORT_DIR``:

* ``index.html`` -- headline numbers, tables and the figures below; inline CSS, no scripts, no
  external assets: it references only the PNG files written beside it.
* ``auroc_by_task.png`` -- AUROC per task (and the mean) per condition with 95% CI bars.
* ``differences.png`` -- (two or more conditions) AUROC difference to the reference condition per
  task with paired-bootstrap 95% CIs.
* ``robustness_severity.png`` / ``robustness_drop.png`` -- (with a benchmark directory) mean AUROC
  against severity level per transformation with the clean AUROC for reference, and the drop from
  clean as a transformation x level heat map.
* ``report.json`` -- the numbers behind the page.

Figures are drawn with Matplotlib's Agg canvas directly (no pyplot, no global backend change), so
building a report works headless and in threads. Same inputs and seed give the same files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from chexphoto.evaluation.metrics import CI_LEVEL, PathOrFrame, plural_unit
from chexphoto.fsutil import atomic_write_bytes, atomic_write_text

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
DPI = 110


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _embedded_png(out_dir: Path, name: str, alt: str) -> str:
    """The PNG embedded in the page (so index.html alone is the whole report, e.g. as an e-mail
    attachment) and linked to the file written beside it."""
    data = base64.b64encode((Path(out_dir) / name).read_bytes()).decode("ascii")
    return (f'<a href="{html.escape(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(alt)}"></a>')


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    # No "Software"/date metadata: identical inputs give identical bytes.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _defined(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _err(value, ci) -> tuple[float, float]:
    """Error-bar half lengths (below, above); zero when the CI is unknown."""
    if not _defined(value) or not ci or not all(_defined(c) for c in ci):
        return 0.0, 0.0
    return max(value - ci[0], 0.0), max(ci[1] - value, 0.0)


def plot_auroc_by_task(results: Mapping[str, Mapping], path: Path) -> str:
    """Grouped bars: AUROC per task and the mean, one bar per condition, with CI bars."""
    names = list(results)
    tasks = list(next(iter(results.values()))["tasks"])
    columns = [*tasks, "Mean (5 tasks)"]
    fig = _figure(max(6.5, 1.25 * len(columns) * max(1, len(names)) ** 0.5 + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        entries = [results[name]["tasks"][t] for t in tasks] + [results[name]["mean"]]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(columns))]
        ys = [e["auroc"] if _defined(e["auroc"]) else 0.0 for e in entries]
        errs = [_err(e["auroc"], e.get("ci")) for e in entries]
        ax.bar(xs, ys, width=width * 0.92, color=COLORS[i % len(COLORS)], label=name,
               yerr=[[e[0] for e in errs], [e[1] for e in errs]], capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "#222222"})
        for x, e in zip(xs, entries, strict=True):
            if not _defined(e["auroc"]):
                ax.text(x, 0.52, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=20 if len(columns) <= 8 else 45, ha="right")
    lows = [c[0] for r in results.values() for e in [*r["tasks"].values(), r["mean"]]
            for c in [e.get("ci") or [None]] if _defined(c[0])]
    lows += [e["auroc"] for r in results.values() for e in [*r["tasks"].values(), r["mean"]] if _defined(e["auroc"])]
    ax.set_ylim(min([0.5, *lows]) - (0.02 if min([0.5, *lows]) < 0.5 else 0.0), 1.0)
    ax.set_ylabel("AUROC")
    ax.axvline(len(tasks) - 0.5, color="#999999", lw=0.8, ls=":")
    ax.set_title(f"AUROC per task with {CI_LEVEL:.0%} patient-bootstrap CI")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="condition",
              title_fontsize=8)
    return _save(fig, path)


def plot_differences(differences: list[Mapping], path: Path) -> str:
    """Forest plot: AUROC difference to the reference per task (and mean) with CI."""
    tasks = list(differences[0]["tasks"])
    rows = [*tasks, "Mean (5 tasks)"]
    fig = _figure(6.5, 0.45 * len(rows) * max(1, len(differences)) ** 0.5 + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    step = 0.6 / max(1, len(differences))
    for i, diff in enumerate(differences):
        entries = [diff["tasks"][t] for t in tasks] + [diff["mean"]]
        for j, e in enumerate(entries):
            y = len(rows) - 1 - j + 0.3 - step * (i + 0.5)
            if not _defined(e["difference"]):
                continue
            lo, hi = _err(e["difference"], e.get("ci"))
            ax.errorbar(e["difference"], y, xerr=[[lo], [hi]], fmt="o", color=COLORS[(i + 1) % len(COLORS)],
                        capsize=3, label=f"{diff['condition']} - {diff['reference']}" if j == 0 else None)
    ax.axvline(0, color="#444444", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows[::-1])
    ax.set_xlabel("AUROC difference (condition - reference)")
    ax.set_title(f"Paired difference with {CI_LEVEL:.0%} bootstrap CI")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_severity(table: Mapping, path: Path) -> str:
    """Small multiples: mean AUROC against severity level per transformation (CI band), with the
    clean AUROC as a dashed line, and a last panel with the mean over transformations."""
    transforms = list(table["transforms"])
    panels = [*transforms, "mean over transformations"]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(3.0 * ncols, 2.4 * nrows + 0.4)
    clean = table["clean"]
    values = [r["auroc"] for r in table["rows"] if _defined(r["auroc"])] + \
        [c for r in table["rows"] for c in r["ci"] if _defined(c)] + \
        ([clean["auroc"]] if _defined(clean["auroc"]) else [])
    lo = min(values + [0.5]) - 0.02
    hi = min(1.0, max(values + [0.9]) + 0.02)
    axes = []
    for k, name in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1, sharey=axes[0] if axes else None)
        axes.append(ax)
        if name in transforms:
            rows = sorted((r for r in table["rows"] if r["transform"] == name), key=lambda r: r["level"])
            color = COLORS[0]
        else:
            rows = table["by_level"]
            color = COLORS[1]
        pts = [(r["level"], r["auroc"], r.get("ci", [None, None])) for r in rows if _defined(r["auroc"])]
        if _defined(clean["auroc"]):
            ax.axhline(clean["auroc"], color="#555555", ls="--", lw=1, label="clean")
            if all(_defined(c) for c in clean["ci"]):
                ax.axhspan(clean["ci"][0], clean["ci"][1], color="#999999", alpha=0.15, lw=0)
        if pts:
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], "o-", color=color, lw=1.6, ms=4)
            band = [p for p in pts if all(_defined(c) for c in p[2])]
            if band:
                ax.fill_between([p[0] for p in band], [p[2][0] for p in band], [p[2][1] for p in band],
                                color=color, alpha=0.18, lw=0)
        ax.set_title(name, fontsize=9, fontweight="bold" if name not in transforms else "normal")
        ax.set_xticks(table["levels"])
        ax.set_ylim(lo, hi)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if k % ncols == 0:
            ax.set_ylabel("mean AUROC", fontsize=8)
        if k >= len(panels) - ncols:
            ax.set_xlabel("severity level", fontsize=8)
    fig.suptitle("Mean AUROC against severity (dashed: clean, band: 95% CI)", fontsize=10)
    return _save(fig, path)


def plot_drop_heatmap(table: Mapping, path: Path) -> str:
    """Heat map of the drop from clean (transformation x level), annotated."""
    import numpy as np

    transforms = list(table["transforms"])
    levels = list(table["levels"])
    cells = {(r["transform"], r["level"]): r["drop"] for r in table["rows"]}
    grid = np.full((len(transforms) + 1, len(levels)), np.nan)
    for i, t in enumerate(transforms):
        for j, lv in enumerate(levels):
            v = cells.get((t, lv))
            grid[i, j] = v if _defined(v) else np.nan
    for j, agg in enumerate(table["by_level"]):
        grid[-1, j] = agg["drop"] if _defined(agg["drop"]) else np.nan
    finite = grid[np.isfinite(grid)]
    vmax = max(0.01, float(np.abs(finite).max())) if finite.size else 0.01
    fig = _figure(1.1 * len(levels) + 3.2, 0.38 * (len(transforms) + 1) + 1.3)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            text = "n/a" if not np.isfinite(v) else f"{v:+.3f}"
            dark = np.isfinite(v) and abs(v) > 0.6 * vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                    fontweight="bold" if i == grid.shape[0] - 1 else "normal")
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels([f"level {lv}" for lv in levels])
    ax.set_yticks(range(len(transforms) + 1))
    ax.set_yticklabels([*transforms, "mean"])
    ax.axhline(len(transforms) - 0.5, color="black", lw=1)
    ax.set_title("Drop in mean AUROC from clean (red: worse)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
.headline{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.7em 1em;min-width:12em;background:#fafafa}
.card .v{font-size:1.7em;font-weight:600} .card .l{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right} th{background:#f2f2f2}
td.name,th.name{text-align:left}
.neg{color:#b00020} .pos{color:#1a7f37} .na{color:#999}
.warn{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9em}
"""


def _f(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _defined(x) else "n/a"


def _ci(ci) -> str:
    if not ci or not all(_defined(c) for c in ci):
        return "&ndash;"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _p(p) -> str:
    if not _defined(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else "&lt;0.001"


def _signed(x) -> str:
    if not _defined(x):
        return '<span class="na">n/a</span>'
    cls = "neg" if x < 0 else "pos" if x > 0 else ""
    return f'<span class="{cls}">{x:+.3f}</span>'


def _results_table(results: Mapping[str, Mapping]) -> str:
    names = list(results)
    tasks = list(next(iter(results.values()))["tasks"])
    head = "".join(f'<th colspan="2">{html.escape(n)}</th>' for n in names)
    sub = "".join("<th>AUROC</th><th>95% CI</th>" for _ in names)
    lines = [f'<table><tr><th class="name" rowspan="2">Task</th>{head}<th rowspan="2">n</th>'
             f'<th rowspan="2">positives</th><th rowspan="2">uncertain (excluded)</th></tr><tr>{sub}</tr>']
    first = results[names[0]]
    for t in tasks:
        cells = "".join(f"<td>{_f(results[n]['tasks'][t]['auroc'])}</td><td>{_ci(results[n]['tasks'][t]['ci'])}</td>"
                        for n in names)
        e = first["tasks"][t]
        lines.append(f'<tr><td class="name">{html.escape(t)}</td>{cells}<td>{e["n"]}</td><td>{e["positives"]}</td>'
                     f'<td>{e["excluded_uncertain"]}</td></tr>')
    cells = "".join(f"<td><b>{_f(results[n]['mean']['auroc'])}</b></td><td>{_ci(results[n]['mean']['ci'])}</td>"
                    for n in names)
    lines.append(f'<tr><td class="name"><b>Mean (5 competition tasks)</b></td>{cells}<td></td><td></td><td></td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _differences_table(differences: list[Mapping]) -> str:
    tasks = list(differences[0]["tasks"])
    head = "".join(f'<th colspan="3">{html.escape(d["condition"])} &minus; {html.escape(d["reference"])}</th>'
                   for d in differences)
    sub = "".join("<th>difference</th><th>95% CI</th><th>p</th>" for _ in differences)
    lines = [f'<table><tr><th class="name" rowspan="2">Task</th>{head}</tr><tr>{sub}</tr>']
    for label, pick in [(t, lambda d, t=t: d["tasks"][t]) for t in tasks] + [
            ("<b>Mean (5 competition tasks)</b>", lambda d: d["mean"])]:
        cells = "".join(f"<td>{_signed(pick(d)['difference'])}</td><td>{_ci(pick(d)['ci'])}</td>"
                        f"<td>{_p(pick(d)['p_value'])}</td>" for d in differences)
        name = label if label.startswith("<b>") else html.escape(label)
        lines.append(f'<tr><td class="name">{name}</td>{cells}</tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _robustness_table(table: Mapping) -> str:
    levels = list(table["levels"])
    cells = {(r["transform"], r["level"]): r for r in table["rows"]}
    head = "".join(f"<th>level {lv}</th>" for lv in levels)
    lines = [f'<table><tr><th class="name">Transformation</th>{head}<th>mean over levels</th>'
             f'<th>change from clean</th></tr>',
             f'<tr><td class="name"><i>clean</i></td><td colspan="{len(levels)}" style="text-align:center">'
             f'{_f(table["clean"]["auroc"])} {_ci(table["clean"]["ci"])}</td><td></td><td></td></tr>']
    for agg in table["by_transform"]:
        t = agg["transform"]
        row = "".join(
            f'<td title="95% CI {_ci(cells[(t, lv)]["ci"])}">{_f(cells[(t, lv)]["auroc"])}</td>'
            if (t, lv) in cells else "<td>&ndash;</td>" for lv in levels)
        lines.append(f'<tr><td class="name">{html.escape(t)}</td>{row}<td>{_f(agg["auroc"])}</td>'
                     f'<td>{_signed(None if agg["drop"] is None else -agg["drop"])}</td></tr>')
    row = "".join(f"<td><b>{_f(a['auroc'])}</b></td>" for a in table["by_level"])
    ov = table["overall"]
    lines.append(f'<tr><td class="name"><b>mean over transformations</b></td>{row}<td><b>{_f(ov["auroc"])}</b></td>'
                 f'<td>{_signed(None if ov["drop"] is None else -ov["drop"])}</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _card(value: str, label: str) -> str:
    return f'<div class="card"><div class="v">{value}</div><div class="l">{label}</div></div>'


def build_report(labels: PathOrFrame | None, predictions: Mapping[str, PathOrFrame] | None,
                 out_dir: str | os.PathLike, *, benchmark_dir: str | os.PathLike | None = None,
                 level: str = "image", bootstrap: int = 1000, seed: int = 0, tasks="competition",
                 allow_missing: bool = False, progress: bool = False) -> Path:
    """Write the HTML report (and its PNGs) into ``out_dir``; returns the path of ``index.html``.

    ``predictions`` maps a condition name to a predictions CSV path or DataFrame. One condition is
    evaluated like ``chexphoto evaluate``; two or more are compared on their common keys like
    ``chexphoto compare`` (the first is the reference). ``benchmark_dir`` (a directory written by
    ``chexphoto benchmark``) adds the robustness figures and table. At least one of the two is
    needed.
    """
    from chexphoto.evaluation import robustness
    from chexphoto.evaluation.compare import compare
    from chexphoto.evaluation.metrics import evaluate

    predictions = dict(predictions or {})
    if not predictions and benchmark_dir is None:
        raise ValueError("nothing to report: give predictions (NAME=PRED.csv) and/or a benchmark directory")
    if predictions and labels is None:
        raise ValueError("predictions need a labels CSV")
    table = robustness.load(benchmark_dir) if benchmark_dir is not None else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    data: dict = {"level": level}
    results, differences, warnings = {}, [], []
    if len(predictions) == 1:
        (name, pred), = predictions.items()
        results = {name: evaluate(labels, pred, level=level, tasks=tasks, bootstrap=bootstrap, seed=seed,
                                  allow_missing=allow_missing, progress=progress)}
        warnings = list(results[name]["warnings"])
        data["evaluation"] = results
    elif predictions:
        comparison = compare(labels, predictions, level=level, tasks=tasks, bootstrap=bootstrap, seed=seed,
                             progress=progress)
        results, differences, warnings = comparison["results"], comparison["differences"], comparison["warnings"]
        data["comparison"] = comparison
    if table is not None:
        data["robustness"] = table

    body, cards, figures = [], [], []
    if results:
        for name, r in results.items():
            cards.append(_card(_f(r["mean"]["auroc"]), f"{html.escape(name)}: mean AUROC<br>{_ci(r['mean']['ci'])}"))
        for d in differences:
            cards.append(_card(_signed(d["mean"]["difference"]),
                               f"{html.escape(d['condition'])} &minus; {html.escape(d['reference'])}<br>"
                               f"{_ci(d['mean']['ci'])}, p = {_p(d['mean']['p_value'])}"))
        figures.append(plot_auroc_by_task(results, out_dir / "auroc_by_task.png"))
        first = next(iter(results.values()))
        counts = first["counts"]
        body.append("<h2>AUROC per task</h2>")
        body.append(_embedded_png(out_dir, figures[-1], "AUROC per task per condition with confidence intervals"))
        body.append(_results_table(results))
        body.append(f'<p class="note">{counts["scored"]} {plural_unit(level)} of {counts["patients"]} patients scored'
                    f"{' (the keys every condition has)' if differences else ''}; "
                    f"{first['bootstrap']['replicates']} patient-level bootstrap replicates, seed "
                    f"{first['bootstrap']['seed']}. Uncertain labels are excluded per task; blank labels "
                    "count as negative.</p>")
    if differences:
        figures.append(plot_differences(differences, out_dir / "differences.png"))
        body.append(f"<h2>Paired differences (reference: {html.escape(differences[0]['reference'])})</h2>")
        body.append(_embedded_png(out_dir, figures[-1], "AUROC differences with confidence intervals"))
        body.append(_differences_table(differences))
        body.append('<p class="note">Paired bootstrap: every replicate resamples patients once and scores all '
                    "conditions on that same resample. p: two-sided, from the bootstrap distribution of the "
                    "difference (smallest alpha at which the percentile CI excludes 0).</p>")
    if table is not None:
        ov = table["overall"]
        cards.append(_card(_f(table["clean"]["auroc"]), "clean mean AUROC (benchmark)"))
        cards.append(_card(_f(ov["auroc"]), f"mean over {ov['cells']} transformation &times; level cells"))
        cards.append(_card(_signed(None if ov["drop"] is None else -ov["drop"]), "change from clean (mean)"))
        figures.append(plot_severity(table, out_dir / "robustness_severity.png"))
        body.append("<h2>Robustness: AUROC against severity</h2>")
        body.append(_embedded_png(out_dir, figures[-1], "mean AUROC against severity level per transformation"))
        figures.append(plot_drop_heatmap(table, out_dir / "robustness_drop.png"))
        body.append(_embedded_png(out_dir, figures[-1], "drop from clean per transformation and level"))
        body.append("<h2>Robustness table (mean AUROC over the competition tasks)</h2>")
        body.append(_robustness_table(table))
        body.append('<p class="note">Hover a cell for its 95% CI. Change from clean: the mean over levels '
                    "minus the clean mean AUROC (negative: the transformation costs AUROC). Per-task values are in the benchmark's robustness.csv / robustness.json.</p>")

    warn_html = "".join(f'<div class="warn">{html.escape(w)}</div>' for w in warnings)
    conditions = ", ".join(html.escape(n) for n in results) or "benchmark only"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>chexphoto report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head>
<body>
<h1>Chest x-ray model evaluation</h1>
<p class="sub">{level}-level AUROC &middot; conditions: {conditions}</p>
<div class="headline">{''.join(cards)}</div>
{warn_html}
{chr(10).join(body)}
<h2>Method</h2>
<p class="note">AUROC per task (Mann&ndash;Whitney, ties counted one half). {CI_LEVEL:.0%} confidence intervals
are percentile intervals of a bootstrap that resamples <i>patients</i> (all images of a drawn patient come
along). The mean is over the five CheXpert competition tasks (Atelectasis, Cardiomegaly, Consolidation,
Edema, Pleural Effusion). The numbers behind this page are in <a href="report.json">report.json</a>.</p>
</body></html>
"""
    atomic_write_text(out_dir / "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    return index
