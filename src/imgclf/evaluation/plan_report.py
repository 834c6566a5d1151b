"""The report's "Plan" section: what the planner chose for the budget, and plan against actual.

Example:
    >>> plan_section({"plan": {...}, "actual": {...}})  # doctest: +SKIP
"""
from __future__ import annotations

from imgclf.evaluation.html import duration, e, facts, note, section, table

STAGES = (("fixed", "other", "building the network, conversions, saving, the report"),
          ("load", "load", "decoding and resizing the images"),
          ("cache", "cache", "the frozen part over every cached view"),
          ("head", "head", "head epochs"),
          ("fine_tune", "fine_tune", "fine-tuning epochs"),
          ("predict", "predict", "predicting the test split"))


def plan_section(plan: dict) -> str:
    """The section's HTML, or "" for a run that was not planned (every setting given)."""
    if not plan or "plan" not in plan:
        return ""
    p, actual = plan["plan"], plan.get("actual") or {}
    items = [("budget", e(duration(p.get("budget_s")))), ("input size", e(f"{p.get('image_size')} px")),
             ("cached views", e(p.get("views"))), ("head epochs", e(p.get("epochs"))),
             ("fine-tuning", e(f"{p.get('fine_tune_epochs')} epochs of the top {p.get('fine_tune_blocks')} blocks"))]
    rows = []
    for planned_key, actual_key, what in STAGES:
        planned = (p.get("stages") or {}).get(planned_key)
        if actual_key == "other":
            load = actual.get("load", 0.0)
            done = actual.get("other", 0.0) + load if actual else None
            planned = (planned or 0.0) + (p.get("stages") or {}).get("load", 0.0)
            what += " (and loading)"
        elif actual_key == "load":
            continue
        else:
            done = actual.get(actual_key)
        rows.append([e(what), e(duration(planned)), e(duration(done) if done is not None else "–")])
    rows.append(["<b>total</b>", f"<b>{e(duration(p.get('expected_s')))}</b>",
                 f"<b>{e(duration(actual.get('total')) if actual else '–')}</b>"])
    reasons = "".join(f"<li>{e(r)}</li>" for r in p.get("reasons") or [])
    body = (facts(items) + (f"<ul>{reasons}</ul>" if reasons else "")
            + table(["stage", "planned", "took"], rows, {1, 2})
            + note("The planner measured this machine for a few seconds, then chose what you left open "
                   "so the whole run fits the budget; epochs are cut if the machine turns out slower than "
                   "measured, and added if it is faster (the epochs run are in Training below)."))
    return section("plan", "Plan", body)
