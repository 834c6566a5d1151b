"""What a dataset holds, for people: classes, counts per split, sizes, modes, skipped files.

Example:
    >>> print(load_dataset("photos").report.format_text())  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imgclf.data.images import ImageInfo
from imgclf.data.layouts import SPLITS, Found


@dataclass
class DataReport:
    """What was found: classes, counts per split, image sizes and modes, every skipped file."""

    root: str
    layout: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images
    sizes: dict[str, dict[str, int]]  # "width"/"height" -> "min"/"median"/"max"
    modes: dict[str, int]  # original Pillow mode -> images
    skipped: list[tuple[str, str]]  # (path, reason), in the order found
    imbalance: float  # largest class / smallest class, all splits together
    notes: list[str] = field(default_factory=list)  # where each split came from

    def to_dict(self) -> dict:
        """The report as JSON-ready dicts and lists (``data_report.json``).

        Example:
            >>> load_dataset("photos").report.to_dict()["counts"]["train"]
            {'cat': 80, 'dog': 80}
        """
        return {"root": self.root, "layout": self.layout, "classes": list(self.classes),
                "counts": {s: dict(c) for s, c in self.counts.items()},
                "total": sum(sum(c.values()) for c in self.counts.values()),
                "sizes": {k: dict(v) for k, v in self.sizes.items()}, "modes": dict(self.modes),
                "imbalance": self.imbalance, "notes": list(self.notes),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}

    def format_text(self) -> str:
        """A readable summary for ``imgclf inspect``, listing every skipped file and why.

        Example:
            >>> print(load_dataset("photos").report.format_text())  # doctest: +SKIP
        """
        width = max([len("class")] + [len(c) for c in self.classes])
        lines = [f"{self.root}  (layout: {self.layout})",
                 f"{len(self.classes)} classes, {self.to_dict()['total']} images",
                 f"  {'class':<{width}}  " + "  ".join(f"{s:>6}" for s in SPLITS) + "   total"]
        for name in self.classes:
            row = [self.counts[s].get(name, 0) for s in SPLITS]
            lines.append(f"  {name:<{width}}  " + "  ".join(f"{n:>6}" for n in row) + f"  {sum(row):>6}")
        totals = [sum(self.counts[s].values()) for s in SPLITS]
        lines.append(f"  {'all':<{width}}  " + "  ".join(f"{n:>6}" for n in totals) + f"  {sum(totals):>6}")
        lines.append(f"imbalance (largest / smallest class): {self.imbalance:.2f}")
        w, h = self.sizes.get("width", {}), self.sizes.get("height", {})
        if w:
            lines.append(f"image width  min {w['min']}, median {w['median']}, max {w['max']}")
            lines.append(f"image height min {h['min']}, median {h['median']}, max {h['max']}")
        lines.append("modes: " + ", ".join(f"{m} {n}" for m, n in sorted(self.modes.items())))
        lines += [f"split: {note}" for note in self.notes]
        lines.append(f"skipped {len(self.skipped)} file(s)" + (":" if self.skipped else ""))
        lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def build_report(found: Found, class_names: list[str], labels: dict[str, np.ndarray],
                  infos: list[ImageInfo], skipped: list, notes: list[str]) -> DataReport:
    counts = {s: {name: int(n) for name, n in zip(class_names, np.bincount(labels[s], minlength=len(class_names)))}
              for s in SPLITS}
    totals = [sum(counts[s][name] for s in SPLITS) for name in class_names]
    sizes = {}
    for key in ("width", "height"):
        values = np.array([getattr(info, key) for info in infos])
        sizes[key] = {"min": int(values.min()), "median": int(round(float(np.median(values)))), "max": int(values.max())}
    modes: dict[str, int] = {}
    for info in infos:
        modes[info.mode] = modes.get(info.mode, 0) + 1
    return DataReport(found.root, found.layout, list(class_names), counts, sizes, modes, skipped,
                      round(max(totals) / min(totals), 3), notes)
