"""Two runs on one self-contained page (``imgclf runs --compare A B``): their facts and headline
metrics with the difference, per-class F1, and their training curves, per-class scores and
confusion matrices side by side. Built from ``html``'s pieces and the runs' own figures; the
curves of an interrupted run (which has no figures yet) are drawn from its history.

Example:
    >>> write_comparison(RunRecord("runs/a"), RunRecord("runs/b"), "compare.html")
    PosixPath('compare.html')
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from imgclf.evaluation.html import duration, e, facts, figure, note, num, page, section, table
from imgclf.evaluation.metrics import with_interval
from imgclf.evaluation.runs import SHOWN, run_row
from imgclf.files import write_text_atomic
from imgclf.record import RunRecord

PAIR_CSS = ".pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}.pair h3{margin-top:4px}"
FIGURES = (("history", "Training curves"), ("per_class", "Per-class scores"), ("confusion", "Confusion matrix"))


def _facts(row: dict) -> str:
    return facts([("status", e(row["status"])), ("date", e(row["date"])), ("backbone", e(row["backbone"] or "–")),
                  ("image size", e(f"{row['image_size']} px" if row["image_size"] else "auto")),
                  ("budget", e(duration(row["budget_s"]) if row["budget_s"] else "default")),
                  ("wall time", e(duration(row["seconds"]) if row["seconds"] is not None else "–")),
                  ("epochs", e(row["epochs"]))])


def _headlines(a: dict, b: dict) -> str:
    rows = []
    for h in SHOWN:
        va, vb = a[h.name], b[h.name]
        change = num(vb - va, 3) if va is not None and vb is not None else "–"
        rows.append([e(h.label), e(with_interval(va, a[f"{h.name}_ci"], 3)), e(with_interval(vb, b[f"{h.name}_ci"], 3)),
                     change])
    return table(["test metric", a["name"], b["name"], "B − A"], rows, {1, 2, 3})


def _per_class(ma: dict, mb: dict, names: tuple[str, str]) -> str:
    f1a = {r.get("class"): r.get("f1") for r in ma.get("per_class") or []}
    f1b = {r.get("class"): r.get("f1") for r in mb.get("per_class") or []}
    if not f1a and not f1b:
        return note("Neither run has test metrics.")
    classes = list(f1a) + [c for c in f1b if c not in f1a]
    rows = [[e(c), num(f1a.get(c), 3), num(f1b.get(c), 3),
             num(f1b[c] - f1a[c], 3) if c in f1a and c in f1b else "–"] for c in classes]
    return '<div class="scroll">' + table(["class", f"F1 {names[0]}", f"F1 {names[1]}", "B − A"], rows,
                                           {1, 2, 3}) + "</div>"


def _figures(record: RunRecord, scratch: Path) -> dict[str, Path]:
    plots = record.plots()
    history = record.read_history()
    if "history" not in plots and history:  # interrupted: no figures yet, but its epochs so far
        from imgclf.evaluation.plots import plot_history
        plots["history"] = plot_history(history, scratch / f"{len(list(scratch.iterdir()))}.png")
    return plots


def write_comparison(a: RunRecord, b: RunRecord, path: str | Path) -> Path:
    """Write the page comparing run ``a`` with run ``b``, atomically.

    Args:
        a: the reference run (the "A" of every difference).
        b: the other run.
        path: the HTML file to write.

    Returns:
        ``path`` as a Path.

    Example:
        >>> write_comparison(RunRecord("runs/a"), RunRecord("runs/b"), "compare.html").name
        'compare.html'
    """
    ra, rb = run_row(a), run_row(b)
    ma = a.read_metrics() if a.is_complete else {}
    mb = b.read_metrics() if b.is_complete else {}
    names = (ra["name"], rb["name"])
    with tempfile.TemporaryDirectory(prefix="imgclf-compare-") as scratch:
        plots = [_figures(a, Path(scratch)), _figures(b, Path(scratch))]
        pairs = "".join(
            section(key, title, '<div class="pair">' + "".join(
                f"<div><h3>{e(name)}</h3>{figure(p.get(key), f'{title}, {name}', f'{name}: no {title.lower()}.')}</div>"
                for name, p in zip(names, plots)) + "</div>")
            for key, title in FIGURES)
    body = "".join([
        f"<header><h1>{e(names[0])} vs {e(names[1])}</h1></header>",
        section("runs", "Runs", '<div class="pair">' + "".join(
            f"<div><h3>{e(r['name'])}</h3>{_facts(r)}<p class=note>{e(r['path'])}</p></div>" for r in (ra, rb))
            + "</div>"),
        section("metrics", "Test metrics", _headlines(ra, rb)),
        section("f1", "Per-class F1", _per_class(ma, mb, names)),
        pairs])
    write_text_atomic(path, page(f"{names[0]} vs {names[1]} · imgclf", body, PAIR_CSS))
    return Path(path)
