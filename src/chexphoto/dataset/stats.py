"""The paper's dataset tables: Table 1 (labels per observation) and Table 3 (patients, studies, images).

Counting rules (as in the CheXphoto paper):

* an image is a row of the CSV; a study is a (patient, study) pair, so ``study1`` of two
  patients are two studies; patients and studies come from the ``Path`` column;
* for each of the 14 observations present in the CSV, every image is counted once as positive
  (``1``), uncertain (``-1``) or negative (``0`` **or blank**: not mentioned counts as negative),
  so each Table 1 row sums to the number of images;
* percentages are of the number of images, rounded half-up to two decimals as the paper prints
  them (``972 (9.25)``). The exact percentages of a row sum to 100; the rounded ones may be off
  by 0.01 (the paper's own Pneumonia row reads 2.50 + 8.42 + 89.07 = 99.99).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from chexphoto.csvschema import NEGATIVE, POSITIVE, UNCERTAIN, label_columns, parse_label
from chexphoto.dataset.loading import CheXpertTable

CATEGORIES = ("positive", "uncertain", "negative")


def percent_text(count: int, total: int) -> str:
    """``100 * count / total`` rounded half-up to two decimals, exactly (``"9.25"``); ``"-"`` if total is 0."""
    if total <= 0:
        return "-"
    hundredths = (2 * 10_000 * count + total) // (2 * total)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


@dataclass(frozen=True)
class LabelCounts:
    """How many images are positive / uncertain / negative (blank included) for one observation."""

    positive: int
    uncertain: int
    negative: int

    @property
    def total(self) -> int:
        return self.positive + self.uncertain + self.negative

    def percentages(self) -> dict[str, str]:
        """Percent of the images in each category, as the paper prints them (``"9.25"``)."""
        return {name: percent_text(getattr(self, name), self.total) for name in CATEGORIES}

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in CATEGORIES}


@dataclass(frozen=True)
class DatasetStats:
    """Table 3 (patients, studies, images) and Table 1 (label counts) of one CSV."""

    csv: str
    images: int
    patients: int
    studies: int
    #: observation -> counts, for the observations present, in CheXpert order
    labels: dict[str, LabelCounts] = field(default_factory=dict)

    def as_json(self) -> dict:
        """The ``chexphoto stats --json`` object for this CSV."""
        return {
            "csv": self.csv,
            "images": self.images,
            "patients": self.patients,
            "studies": self.studies,
            "labels": {name: counts.as_dict() for name, counts in self.labels.items()},
        }


_CATEGORY_OF_VALUE = {POSITIVE: "positive", UNCERTAIN: "uncertain", NEGATIVE: "negative", None: "negative"}


def count_labels(table: CheXpertTable) -> dict[str, LabelCounts]:
    """Table 1: positive / uncertain / negative (blanks as negative) counts per observation present."""
    result: dict[str, LabelCounts] = {}
    for column in label_columns(table.frame):
        tally = dict.fromkeys(CATEGORIES, 0)
        # one parse per distinct spelling ("1.0", "1", "", ...), not per cell
        for value, count in table.frame[column].value_counts(sort=False, dropna=False).items():
            tally[_CATEGORY_OF_VALUE[parse_label(value)]] += int(count)
        result[column] = LabelCounts(**tally)
    return result


def compute_stats(table: CheXpertTable, name: str | None = None) -> DatasetStats:
    """Table 3 and Table 1 of a loaded CSV (``name`` defaults to the CSV's path)."""
    return DatasetStats(
        csv=table.path if name is None else name,
        images=table.images,
        patients=table.count_patients(),
        studies=table.count_studies(),
        labels=count_labels(table),
    )


def to_json(stats: Sequence[DatasetStats]) -> str:
    """One JSON object for a single CSV, a JSON list of objects for several."""
    objects = [s.as_json() for s in stats]
    return json.dumps(objects[0] if len(objects) == 1 else objects, indent=2)


def _cell(count: int, total: int) -> str:
    return f"{count} ({percent_text(count, total)})"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def to_markdown(stats: Sequence[DatasetStats]) -> str:
    """Table 3 for all CSVs, then a Table 1 per CSV, as GitHub-flavoured Markdown tables."""
    lines = ["### Table 3: patients, studies and images", "",
             "| CSV | Patients | Studies | Images |", "|---|---:|---:|---:|"]
    for s in stats:
        lines.append(f"| {_md_escape(s.csv)} | {s.patients:,} | {s.studies:,} | {s.images:,} |")
    for s in stats:
        lines += ["", f"### Table 1: {_md_escape(s.csv)} ({s.images:,} images)", ""]
        if not s.labels:
            lines.append("(no observation columns)")
            continue
        lines += ["| Observation | Positive (%) | Uncertain (%) | Negative (%) |", "|---|---:|---:|---:|"]
        for name, counts in s.labels.items():
            cells = " | ".join(_cell(getattr(counts, c), counts.total) for c in CATEGORIES)
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("csv", "table", "observation", "patients", "studies", "images",
               "positive", "positive_pct", "uncertain", "uncertain_pct", "negative", "negative_pct")


def to_csv(stats: Sequence[DatasetStats]) -> str:
    """Both tables in one tidy CSV (columns :data:`CSV_COLUMNS`).

    Per input CSV: one ``table=3`` row (patients, studies, images) and one ``table=1`` row per
    observation (its counts and percentages, with ``images`` as the denominator). Cells that do
    not apply to a row are empty.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in stats:
        writer.writerow([s.csv, 3, "", s.patients, s.studies, s.images, "", "", "", "", "", ""])
        for name, counts in s.labels.items():
            pct = counts.percentages()
            row = [s.csv, 1, name, "", "", s.images]
            for category in CATEGORIES:
                row += [getattr(counts, category), "" if pct[category] == "-" else pct[category]]
            writer.writerow(row)
    return buffer.getvalue()


def to_rich(stats: Sequence[DatasetStats]) -> list:
    """Rich renderables for the terminal: Table 3 for all CSVs, then a Table 1 per CSV."""
    from rich import box
    from rich.table import Table

    table3 = Table(title="Table 3: patients, studies and images", box=box.SIMPLE_HEAVY, title_justify="left")
    table3.add_column("CSV", overflow="fold")
    for heading in ("Patients", "Studies", "Images"):
        table3.add_column(heading, justify="right")
    for s in stats:
        table3.add_row(s.csv, f"{s.patients:,}", f"{s.studies:,}", f"{s.images:,}")
    renderables: list = [table3]
    for s in stats:
        table1 = Table(title=f"Table 1: {s.csv} ({s.images:,} images)", box=box.SIMPLE_HEAVY,
                       title_justify="left")
        table1.add_column("Observation", no_wrap=True)
        for heading in ("Positive (%)", "Uncertain (%)", "Negative (%)"):
            table1.add_column(heading, justify="right", no_wrap=True)
        for name, counts in s.labels.items():
            table1.add_row(name, *(_cell(getattr(counts, c), counts.total) for c in CATEGORIES))
        if not s.labels:
            table1.add_row("(no observation columns)", "", "", "")
        renderables.append(table1)
    return renderables
