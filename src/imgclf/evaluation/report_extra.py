"""The report's sections about what its numbers are worth: each export judged by the accuracy
it loses against the trained model (the paired change with its interval, per class).

Each section reads what the run record holds and renders nothing when there is nothing yet.

Example:
    >>> extra_sections(RunRecord("runs/fashion"))  # doctest: +ELLIPSIS
    '<section id="exports">...'
"""
from __future__ import annotations

from imgclf.evaluation.html import e, note, num, pct, section, table
from imgclf.record import RunRecord


def extra_sections(record: RunRecord) -> str:
    """Every extra section the run's files support, as HTML."""
    return export_section(record.read_export_metrics())


def _signed(value) -> str:
    return "–" if value is None else f"{100 * float(value):+.1f}"


def export_section(exports: dict) -> str:
    """One row per export: accuracy against the Keras model's, the paired change with its 95%
    interval, McNemar's p, agreement and the verdict; per-class changes under <details>."""
    if not exports:
        return ""
    rows, details = [], []
    for name, m in exports.items():
        if "accuracy_change" not in m:  # an entry an older imgclf wrote
            continue
        lo, hi = m.get("accuracy_change_ci") or (None, None)
        verdict = "kept" if m.get("passed") else "refused"
        rows.append([e(name), pct(m.get("accuracy")), pct(m.get("keras_accuracy")),
                     f"{_signed(m['accuracy_change'])} [{_signed(lo)}, {_signed(hi)}]",
                     num(m.get("mcnemar_p"), 3), pct(m.get("agreement")), e(m.get("n")), verdict])
        per_class = [[e(r["class"]), e(r["n"]), pct(r["reference_recall"]), pct(r["recall"]), _signed(r["change"])]
                     for r in m.get("per_class") or []]
        details.append(f"<details><summary>{e(name)}: change per class</summary>"
                       + table(["class", "images", "Keras recall", "export recall", "change (points)"],
                               per_class, {1, 2, 3, 4}) + "</details>")
    if not rows:
        return ""
    first = next(iter(exports.values()))
    rule = (f"An export is refused only when its accuracy drop is significantly larger than "
            f"{pct(first.get('max_accuracy_drop'))}: when the one-sided 95% paired-bootstrap lower bound "
            "of the drop, on the same images, exceeds it. Agreement is shown but decides nothing.")
    body = (note(rule) + table(["format", "accuracy", "Keras", "change (points) [95% CI]", "McNemar p",
                                "agreement", "images", "verdict"], rows, {1, 2, 3, 4, 5, 6})
            + "".join(details))
    return section("exports", "Exports: what each one loses", body)
