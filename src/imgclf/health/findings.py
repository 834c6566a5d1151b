"""The findings of a dataset check as plain dataclasses, and their terminal and JSON forms.

Every finding names images by their index into ``HealthReport.paths`` (with ``labels`` and
``splits`` beside it), so the page, the JSON and the cleaned CSV read the same lists.

Example:
    >>> print(report.format_text())  # doctest: +SKIP
    leak  2 group(s): val/test images with a copy in train ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Each kind of finding: its key, what it means, and what to do about it. The terminal summary,
# the JSON counts, train's warnings and the page all iterate over this table.
KINDS = {
    "exact": ("identical files or identical pixels", "keep one copy"),
    "near": ("near-identical images (resized, re-encoded, cropped or brightened copies)", "keep one copy"),
    "leak": ("val/test images with a copy in train: held-out scores are inflated",
             "move them out of val/test (--write-clean does)"),
    "conflict": ("copies of one image under different labels", "decide the label, keep one copy"),
    "label": ("likely mislabelled images (cleanlab, out-of-fold probabilities)", "check the suggested label"),
    "outlier": ("images far from every other image in feature space", "check they belong in the dataset"),
    "fact": ("tiny images, extreme aspect ratios, grayscale among colour, class imbalance", "look at them"),
    "skipped": ("files that could not be read", "fix or remove them"),
}


@dataclass
class Group:
    """Images that are copies of one another.

    ``kind`` is "exact" (same bytes), "pixels" (same decoded pixels, different files) or "near";
    ``evidence`` says what linked them (``sha256``, ``pixels``, ``phash<=3`` or ``features``: a
    perceptual-hash or feature-neighbour candidate confirmed by thumbnails, ``nearcopy``).
    """

    kind: str
    members: list[int]
    evidence: list[str]
    splits: list[str]  # sorted, distinct
    labels: list[str]  # sorted, distinct class names

    @property
    def leak(self) -> bool:
        """A val or test image with a copy in train (or val and test sharing one)."""
        return len(self.splits) > 1

    @property
    def conflict(self) -> bool:
        return len(self.labels) > 1

    @property
    def scope(self) -> str:
        return f"within {self.splits[0]}" if len(self.splits) == 1 else "across " + "/".join(self.splits)


@dataclass
class Suspect:
    """An image whose label is likely wrong, or one far from all others (``outlier``)."""

    index: int
    score: float  # label quality (label) or distance (outlier); lower quality / higher distance = worse
    suggested: str = ""  # the label the model prefers (label errors only)


@dataclass
class Fact:
    """A cheap fact about one image (``index``) or, with index -1, the whole dataset."""

    what: str  # "tiny", "aspect", "grayscale", "imbalance"
    index: int
    detail: str


@dataclass
class HealthReport:
    """Everything a check found. Indices in the findings point into paths/labels/splits."""

    root: str
    paths: list[str]
    labels: list[str]  # class name of each image
    splits: list[str]
    groups: list[Group] = field(default_factory=list)
    label_issues: list[Suspect] = field(default_factory=list)
    outliers: list[Suspect] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what ran, e.g. "sha256", "phash", "features"
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Findings per kind (KINDS): groups for exact/near/leak/conflict, images for the rest.

        Example:
            >>> report.counts()["leak"]
            3
        """
        exact = [g for g in self.groups if g.kind in ("exact", "pixels")]
        return {"exact": len(exact), "near": len(self.groups) - len(exact),
                "leak": sum(g.leak for g in self.groups), "conflict": sum(g.conflict for g in self.groups),
                "label": len(self.label_issues), "outlier": len(self.outliers), "fact": len(self.facts),
                "skipped": len(self.skipped)}

    def leaked(self) -> list[int]:
        """Val/test images with a copy in another split (train first): what --write-clean moves."""
        out = []
        for g in self.groups:
            if g.leak:
                keep = "train" if "train" in g.splits else g.splits[0]
                out += [i for i in g.members if self.splits[i] != keep]
        return sorted(out)

    def to_dict(self) -> dict:
        """JSON-ready: counts, every finding with its paths, skipped files, checks and timings."""
        def image(i: int) -> dict:
            return {"path": self.paths[i], "label": self.labels[i], "split": self.splits[i]}

        return {"root": self.root, "images": len(self.paths), "counts": self.counts(), "checks": self.checks,
                "groups": [{"kind": g.kind, "scope": g.scope, "leak": g.leak, "conflict": g.conflict,
                            "evidence": g.evidence, "images": [image(i) for i in g.members]} for g in self.groups],
                "label_issues": [{**image(s.index), "suggested": s.suggested, "quality": round(s.score, 4)}
                                 for s in self.label_issues],
                "outliers": [{**image(s.index), "distance": round(s.score, 4)} for s in self.outliers],
                "facts": [{"what": f.what, "detail": f.detail, **(image(f.index) if f.index >= 0 else {})}
                          for f in self.facts],
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": self.seconds, "notes": self.notes}

    def warnings(self, command: str) -> list[str]:
        """One line per kind found, with the count and where to look (``imgclf train`` prints them).

        Example:
            >>> report.warnings("imgclf check photos")
            ['data health: 3 val/test images have a copy in train (leak); see `imgclf check photos`']
        """
        counts, lines = self.counts(), []
        leaked = len(self.leaked())
        if counts["leak"]:
            lines.append(f"{leaked} val/test image(s) have an identical copy in another split "
                         f"({counts['leak']} group(s)): held-out scores are inflated")
        if counts["exact"]:
            lines.append(f"{counts['exact']} group(s) of identical files "
                         f"({sum(len(g.members) for g in self.groups if g.kind in ('exact', 'pixels'))} images)")
        if counts["conflict"]:
            lines.append(f"{counts['conflict']} group(s) of identical files under different labels")
        return [f"data health: {line}; see `{command}`" for line in lines]

    def format_text(self, examples: int = 5) -> str:
        """The terminal summary: counts per kind, then the worst examples of each with paths."""
        counts = self.counts()
        lines = [f"{self.root}: {len(self.paths)} images checked ({', '.join(self.checks)})"]
        for kind, (meaning, action) in KINDS.items():
            lines.append(f"  {kind:<9}{counts[kind]:>6}  {meaning}" + (f"; {action}" if counts[kind] else ""))
        shown = sorted(self.groups, key=lambda g: (not g.leak, not g.conflict, -len(g.members)))[:examples]
        for g in shown:
            tags = ", ".join(t for t, on in (("leak", g.leak), ("conflicting labels", g.conflict)) if on)
            lines.append(f"{g.kind} group of {len(g.members)} {g.scope}" + (f" [{tags}]" if tags else "")
                         + f" ({', '.join(g.evidence)}):")
            lines += [f"    {self.splits[i]:<5} {self.labels[i]:<12} {self.paths[i]}" for i in g.members[:4]]
            if len(g.members) > 4:
                lines.append(f"    ... and {len(g.members) - 4} more")
        if self.label_issues:
            lines.append("likely label errors (worst first):")
            lines += [f"    {self.paths[s.index]}: labelled {self.labels[s.index]}, looks like {s.suggested} "
                      f"(quality {s.score:.3f})" for s in self.label_issues[:examples]]
        if self.outliers:
            lines.append("outliers (farthest first):")
            lines += [f"    {self.paths[s.index]} ({self.labels[s.index]}, distance {s.score:.3f})"
                      for s in self.outliers[:examples]]
        for f in self.facts[:examples]:
            lines.append(f"fact: {f.what}: {f.detail}" + (f": {self.paths[f.index]}" if f.index >= 0 else ""))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} file(s):")
            lines += [f"    {p}: {r}" for p, r in self.skipped]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
