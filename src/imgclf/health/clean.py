"""The cleaned dataset: a ``path,label,split`` CSV that ``imgclf train`` reads.

Each duplicate group keeps one image: its train member when it has one (so a leaked val/test
copy leaves val/test), and, when its labels conflict, one under the label most of its copies
carry. With ``drop_suspects`` the likely label errors and the outliers go too. Files that were
skipped are left out; everything else keeps its split.

Example:
    >>> write_clean_csv(report, "clean.csv")
    (1180, 20)
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from imgclf.files import write_text_atomic
from imgclf.health.findings import HealthReport


def clean_rows(report: HealthReport, drop_suspects: bool = False) -> list[tuple[str, str, str]]:
    """(path, label, split) of every image the cleaned dataset keeps, in the report's order.

    Example:
        >>> len(clean_rows(report)) == len(report.paths) - dropped
        True
    """
    drop: set[int] = set()
    for g in report.groups:
        majority = Counter(report.labels[i] for i in g.members).most_common(1)[0][0]
        keep = next(i for i in g.members if report.labels[i] == majority)
        drop.update(i for i in g.members if i != keep)
    if drop_suspects:
        drop.update(s.index for s in report.label_issues + report.outliers)
    skipped = {path for path, _ in report.skipped}
    return [(p, label, split) for i, (p, label, split) in enumerate(zip(report.paths, report.labels, report.splits))
            if i not in drop and p not in skipped]


def write_clean_csv(report: HealthReport, path: str | Path, drop_suspects: bool = False) -> tuple[int, int]:
    """Write the cleaned ``path,label,split`` CSV atomically; returns (rows kept, images left out).

    Example:
        >>> write_clean_csv(report, "clean.csv", drop_suspects=True)
        (1150, 50)
    """
    rows = clean_rows(report, drop_suspects)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
    return len(rows), len(report.paths) - len(rows)
