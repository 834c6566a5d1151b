"""The report's "Data health" section: what the cheap checks of ``imgclf train`` found.

Reads the "health" entry of data_report.json (``imgclf.health.HealthReport.to_dict``); a run
written before there was one gets a note.

Example:
    >>> health_section({"counts": {"exact": 1, "leak": 1, "conflict": 0}, "groups": [...]})  # doctest: +SKIP
"""
from __future__ import annotations

from imgclf.evaluation.html import e, note, section, table

SHOWN = 20  # groups listed at most; data_report.json has them all


def health_section(health: dict | None, data_path: str = "DATA") -> str:
    """The section's HTML: counts per kind and the groups of identical files, leaks first."""
    if not health:
        return section("health", "Data health", note("No data-health check was recorded for this run."))
    counts = health.get("counts") or {}
    groups = sorted(health.get("groups") or [], key=lambda g: (not g.get("leak"), not g.get("conflict")))
    if not groups:
        body = note(f"No identical files, within or across splits (checked: {', '.join(health.get('checks') or [])}). "
                    f"`imgclf check {data_path}` also looks for near copies, label errors and outliers.")
        return section("health", "Data health", body)
    leaked = sum(1 for g in groups if g.get("leak") for img in g.get("images", []) if img.get("split") != "train")
    lines = [f"{counts.get('exact', len(groups))} group(s) of identical files; {counts.get('leak', 0)} span splits "
             f"({leaked} val/test image(s) with a copy elsewhere: held-out scores are inflated); "
             f"{counts.get('conflict', 0)} under conflicting labels. Run `imgclf check {data_path}` for near "
             "copies, label errors and outliers, and --write-clean for a cleaned CSV."]
    rows = [[e(g.get("scope", "")), e("leak" if g.get("leak") else "") + e(" conflict" if g.get("conflict") else ""),
             "<br>".join(e(f"{img.get('split')} · {img.get('label')} · {img.get('path')}") for img in g.get("images", [])[:6])]
            for g in groups[:SHOWN]]
    return section("health", "Data health", note(lines[0]) + table(["where", "problem", "images"], rows))
