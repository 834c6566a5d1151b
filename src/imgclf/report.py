"""The run's report.html: one self-contained page (inline CSS, PNGs as data URIs, no scripts).

Every piece of text that came from the user (class names are folder names, paths, config
values) goes through ``html.escape``; numbers are formatted here. Missing inputs (no test
split, a plot that was not drawn, a data report without some key) render as a short note.
"""
from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path
from typing import Any

from imgclf.runs import write_text_atomic

# Plots the report places in its own sections; the aliases are the file stems a run writes.
PLACED_PLOTS = ("history", "confusion", "per_class", "mistakes")
PLOT_ALIASES = {"training_curves": "history", "confusion_matrix": "confusion"}
SPLITS = ("train", "val", "test")
HISTORY_COLUMNS = ("loss", "accuracy", "top_k_accuracy", "val_loss", "val_accuracy",
                   "val_top_k_accuracy", "lr", "seconds")
COLLAPSE_OVER = 8  # longer lists of skipped files (twice this many epochs) fold into <details>
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDE_PNG, WIDE_SCALE = 2000, 0.6  # wider figures scroll, at this fraction of their pixel size

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1f2937;
  font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 20px 60px}
header h1{margin:0;font-size:1.9rem;letter-spacing:-.01em;word-break:break-word}
.meta{margin:6px 0 4px;color:#4b5563}
.meta span{margin-right:14px;white-space:nowrap}
nav{margin:10px 0 18px}
nav a{color:#2563eb;text-decoration:none;margin-right:14px;font-size:.9rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin:18px 0}
.card,section{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card{padding:16px 18px;border-top:4px solid #2563eb}
.card.alt{border-top-color:#ea580c}
.card .v{font-size:1.9rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{font-size:.78rem;text-transform:uppercase;letter-spacing:.06em;color:#6b7280}
section{padding:20px 24px;margin:18px 0}
h2{margin:0 0 12px;font-size:1.3rem}
h3{margin:18px 0 8px;font-size:1.02rem;color:#374151}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:8px 24px}
.facts div{border-bottom:1px solid #eef0f3;padding:4px 0}
.facts b{display:block;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;
  color:#6b7280;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:6px 0}
th,td{padding:5px 10px;text-align:left;border-bottom:1px solid #eceef2}
th{background:#f8fafc;font-weight:600;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fff7ed;font-weight:600}
.scroll{max-height:520px;overflow:auto;border:1px solid #eceef2;border-radius:8px}
img{max-width:100%;height:auto;display:block;margin:8px auto;border-radius:6px}
.wide{overflow-x:auto}
.wide img{max-width:none}
pre{background:#f6f8fa;border:1px solid #eceef2;border-radius:8px;padding:12px 14px;overflow:auto;
  font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
details{margin:8px 0}
summary{cursor:pointer;color:#2563eb}
.note{color:#6b7280;font-style:italic;margin:6px 0}
.warn{color:#b45309;font-weight:600}
footer{color:#9ca3af;font-size:.8rem;text-align:center;margin-top:30px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "–" if math.isnan(_float(value)) else f"{_float(value):.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if math.isnan(_float(value)) else f"{100 * _float(value):.1f}%"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _bar(fraction: float) -> str:
    # A data bar drawn by the cell background: a chart inside the table, no image needed.
    pct = max(0.0, min(100.0, 100 * fraction))
    return (f' style="width:28%;background:linear-gradient(90deg,rgba(37,99,235,.16) {pct:.1f}%,'
            f'transparent {pct:.1f}%)"')


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           row_class: list[str] | None = None) -> str:
    """Cells are HTML already (escaped by the caller; a cell may be a whole ``<td ...>``)."""
    def align(i: int) -> str:
        return " class=num" if i in numeric else ""
    head = "".join(f"<th{align(i)}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        cells = "".join(cell if cell.startswith("<td") else f"<td{align(i)}>{cell}</td>"
                        for i, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _facts(items: list[tuple[str, str]]) -> str:
    """Label/value pairs; values are HTML already."""
    cells = "".join(f"<div><b>{_e(label)}</b>{value}</div>" for label, value in items)
    return f'<div class="facts">{cells}</div>'


def _figure(path: Path | None, alt: str, missing: str) -> str:
    if path is None or not Path(path).is_file():
        return _note(missing)
    raw = Path(path).read_bytes()
    img = f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode()}"'
    width = int.from_bytes(raw[16:20], "big") if raw[:8] == PNG_SIGNATURE else 0
    if width <= WIDE_PNG:
        return img + ">"
    # Shrunk to the column, a 30-class confusion matrix has unreadable labels: show it larger
    # and let it scroll sideways instead.
    return (f'<div class="wide">{img} style="width:{int(width * WIDE_SCALE)}px"></div>'
            + _note("A wide figure: scroll sideways to see all of it."))


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _duration(seconds: Any) -> str:
    if math.isnan(_float(seconds)):
        return "–"
    minutes, secs = divmod(int(round(_float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _best_row(history: list[dict]) -> dict | None:
    """The epoch early stopping keeps: lowest validation loss, or training loss without one."""
    key = "val_loss" if any(not math.isnan(_float(r.get("val_loss"))) for r in history) else "loss"
    scored = [row for row in history if not math.isnan(_float(row.get(key)))]
    return min(scored, key=lambda row: _float(row[key])) if scored else None


def _header(title: str, config: dict, metrics: dict | None, history: list[dict],
            run_info: dict) -> str:
    model_cfg, data_cfg = config.get("model") or {}, config.get("data") or {}
    backbone = run_info.get("backbone") or model_cfg.get("backbone")
    size = run_info.get("image_size") or data_cfg.get("image_size")
    date = run_info.get("date") or run_info.get("started")
    seconds = run_info.get("seconds", run_info.get("duration_s"))
    meta = [("backbone", backbone), ("image size", f"{size} × {size} px" if size else None),
            ("date", date), ("training time", _duration(seconds) if seconds is not None else None)]
    meta_html = "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in meta if v)
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("data", "Data"), ("training", "Training"), ("metrics", "Test metrics"),
        ("confusion", "Confusion matrix"), ("mistakes", "Mistakes"), ("config", "Config")))
    return (f"<header><h1>{_e(title)}</h1><div class=meta>{meta_html}</div><nav>{nav}</nav>"
            f"{_cards(metrics, history)}</header>")


def _cards(metrics: dict | None, history: list[dict]) -> str:
    def card(value: str, label: str, kind: str = "card") -> str:
        return f'<div class="{kind}"><div class=v>{value}</div><div class=k>{_e(label)}</div></div>'
    cards = []
    if metrics:
        top_k = f"top-{metrics.get('top_k', 'k')} accuracy"
        cards += [card(_pct(metrics.get("accuracy")), "test accuracy"),
                  card(_num((metrics.get("macro") or {}).get("f1"), 3), "macro F1"),
                  card(_pct(metrics.get("top_k_accuracy")), top_k),
                  card(_e(metrics.get("n", "–")), "test images")]
    best = _best_row(history)
    if best is not None and not math.isnan(_float(best.get("val_accuracy"))):
        label = f"val accuracy, epoch {best.get('epoch')}"
        cards.append(card(_pct(best["val_accuracy"]), label, "card alt"))
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else ""
    if not metrics:
        body += _note("No test metrics: the run has no test split, or it was not evaluated.")
    return body


def _data_facts(report: dict) -> str:
    counts = report.get("counts") or {}
    totals = {split: sum((counts.get(split) or {}).values()) for split in counts}
    items = [("source", _e(report.get("root", "–"))), ("layout", _e(report.get("layout", "–"))),
             ("classes", _e(len(report.get("classes") or []))),
             ("images", _e(" · ".join(f"{s} {n}" for s, n in totals.items()) or "–"))]
    imbalance = report.get("imbalance")
    if imbalance is not None:
        text = f"{_num(imbalance, 1)} × (largest / smallest class)"
        items.append(("imbalance", f'<span class="warn">{text}</span>'
                      if _float(imbalance) >= 3 else text))
    for axis in ("width", "height"):
        stats = (report.get("sizes") or {}).get(axis) or {}
        if stats:
            items.append((f"{axis} min / median / max", _e(" / ".join(
                str(stats.get(k, "–")) for k in ("min", "median", "max")) + " px")))
    modes = report.get("modes") or {}
    if modes:
        items.append(("image modes", _e(" · ".join(f"{m} {n}" for m, n in modes.items()))))
    return _facts(items)


def _class_table(report: dict) -> str:
    counts = report.get("counts") or {}
    splits = [s for s in SPLITS if s in counts] + [s for s in counts if s not in SPLITS]
    classes = list(report.get("classes") or sorted({c for s in counts.values() for c in s}))
    if not classes:
        return _note("No per-class counts in the data report.")
    totals = [sum((counts.get(s) or {}).get(c, 0) for s in splits) for c in classes]
    largest = max(totals) or 1
    rows = [[_e(c)] + [_e((counts.get(s) or {}).get(c, 0)) for s in splits] +
            [f'<td class=num{_bar(t / largest)}>{t}</td>'] for c, t in zip(classes, totals)]
    numeric = set(range(1, len(splits) + 2))
    return '<div class="scroll">' + _table(["class", *splits, "total"], rows, numeric) + "</div>"


def _skipped(report: dict) -> str:
    skipped = report.get("skipped") or []
    if not skipped:
        return _note("No files were skipped.")
    items = [item if isinstance(item, dict) else dict(zip(("path", "reason"), item))
             if isinstance(item, (list, tuple)) else {"path": item} for item in skipped]
    rows = [[_e(item.get("path", "?")), _e(item.get("reason", "–"))] for item in items]
    table = '<div class="scroll">' + _table(["file", "reason"], rows) + "</div>"
    if len(skipped) <= COLLAPSE_OVER:
        return table
    return f"<details><summary>{len(skipped)} files skipped: show them</summary>{table}</details>"


def _data_section(report: dict) -> str:
    if not report:
        return _section("data", "Data", _note("No data report was recorded for this run."))
    notes = "".join(f"<li>{_e(note)}</li>" for note in report.get("notes") or [])
    body = (_data_facts(report) + (f"<ul>{notes}</ul>" if notes else "")
            + "<h3>Images per class and split</h3>" + _class_table(report)
            + f"<h3>Skipped files ({len(report.get('skipped') or [])})</h3>" + _skipped(report))
    return _section("data", "Data", body)


def _phase_summary(history: list[dict], config: dict) -> list[tuple[str, str]]:
    train_cfg = config.get("train") or {}
    limits = {"head": train_cfg.get("epochs"), "fine_tune": train_cfg.get("fine_tune_epochs")}
    items = []
    for phase, label in (("head", "head only"), ("fine_tune", "fine-tuning")):
        epochs = [row.get("epoch") for row in history if row.get("phase") == phase]
        if not epochs:
            continue
        limit = limits[phase]
        text = f"{len(epochs)} epochs ({epochs[0]}–{epochs[-1]})"
        if isinstance(limit, int) and len(epochs) < limit:
            text += f", early stop at epoch {epochs[-1]} (limit {limit})"
        items.append((label, _e(text)))
    return items


def _history_cell(key: str, value: Any) -> str:
    if key == "lr" and not math.isnan(_float(value)):
        return f"{_float(value):.1e}"
    return _num(value, 1 if key == "seconds" else 4)


def _history_table(history: list[dict], best: dict | None) -> str:
    keys = [k for k in HISTORY_COLUMNS if any(k in row for row in history)]
    rows = [[_e(str(row.get("phase", "")).replace("_", "-")), _e(row.get("epoch", ""))]
            + [_history_cell(k, row.get(k)) for k in keys] for row in history]
    headers = ["phase", "epoch", *[k.replace("_", " ") for k in keys]]
    marks = ["best" if row is best else "" for row in history]
    table = _table(headers, rows, set(range(1, len(headers))), marks)
    if len(history) <= 2 * COLLAPSE_OVER:
        return table
    return f"<details><summary>{len(history)} epochs: show the table</summary>{table}</details>"


def _training_section(history: list[dict], plot: Path | None, config: dict,
                      run_info: dict) -> str:
    if not history:
        return _section("training", "Training", _note("No training history was recorded."))
    best = _best_row(history)
    items = _phase_summary(history, config)
    if best is not None:
        val = _float(best.get("val_loss"))
        what = f"val loss {val:.4f}" if not math.isnan(val) else f"loss {_num(best.get('loss'))}"
        items.append(("best epoch (weights kept)", _e(f"{best.get('epoch')} ({what})")))
    seconds = run_info.get("seconds", run_info.get("duration_s"))
    if seconds is None and any("seconds" in row for row in history):
        seconds = sum(_float(row.get("seconds")) for row in history)
    if seconds is not None:
        items.append(("time", _e(_duration(seconds))))
    body = (_figure(plot, "training curves", "The training-curves plot is missing.")
            + _facts(items) + "<h3>Per epoch</h3>" + _history_table(history, best))
    return _section("training", "Training", body)


def _per_class_table(metrics: dict) -> str:
    rows = []
    for row in metrics.get("per_class") or []:
        f1 = _float(row.get("f1"))
        f1_cell = f"<td class=num{_bar(0 if math.isnan(f1) else f1)}>{_num(f1, 3)}</td>"
        rows.append([_e(row.get("class")), _num(row.get("precision"), 3),
                     _num(row.get("recall"), 3), f1_cell, _e(row.get("support", "–"))])
    return '<div class="scroll">' + _table(["class", "precision", "recall", "F1", "support"],
                                           rows, {1, 2, 3, 4}) + "</div>"


def _metrics_section(metrics: dict | None, plot: Path | None) -> str:
    if not metrics:
        return _section("metrics", "Test metrics", _note("No test metrics for this run."))
    macro, weighted = metrics.get("macro") or {}, metrics.get("weighted") or {}
    rows = [[name] + [_num(avg.get(k), 3) for k in ("precision", "recall", "f1")]
            for name, avg in (("macro average", macro), ("weighted average", weighted))]
    items = [("accuracy", _pct(metrics.get("accuracy"))),
             (f"top-{metrics.get('top_k', 'k')} accuracy", _pct(metrics.get("top_k_accuracy"))),
             ("log loss", _num(metrics.get("log_loss"))),
             ("test images", _e(metrics.get("n", "–")))]
    body = (_facts(items) + _table(["", "precision", "recall", "F1"], rows, {1, 2, 3})
            + "<h3>Per class</h3>" + _per_class_table(metrics)
            + _figure(plot, "per-class precision, recall and F1", "The per-class plot is missing.")
            + "<details><summary>scikit-learn classification report</summary><pre>"
            + _e(metrics.get("classification_report", "")) + "</pre></details>")
    return _section("metrics", "Test metrics", body)


def _config_text(config: dict) -> str:
    try:
        import yaml
        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    except Exception:  # a value YAML cannot represent: JSON with str() still shows everything
        return json.dumps(config, indent=2, default=str)


def _config_section(config: dict, run_info: dict) -> str:
    body = ""
    if run_info:
        facts = [(key.replace("_", " "), _e(value)) for key, value in run_info.items()]
        body += "<h3>Run</h3>" + _facts(facts)
    body += "<h3>Config</h3><pre>" + _e(_config_text(config or {})) + "</pre>"
    return _section("config", "Run details and config", body)


def write_report(path: str | Path, *, title: str, config: dict, data_report: dict,
                 metrics: dict | None, history: list[dict], plots: dict[str, Path],
                 run_info: dict) -> Path:
    """Write the run's report as one self-contained HTML file, atomically.

    Args:
        path: the HTML file to write.
        title: the run's name, shown as the page heading.
        config: the resolved config as a nested dict (``data``, ``model``, ``train``...).
        data_report: the data module's report (classes, counts, sizes, modes, skipped,
            imbalance, layout); any key may be missing.
        metrics: ``evaluate.compute_metrics`` output, or None when there was no test split.
        history: one dict per epoch of both phases (see ``plots.plot_history``).
        plots: PNG paths by key: ``history`` (or ``training_curves``), ``confusion`` (or
            ``confusion_matrix``), ``per_class``, ``mistakes``; other keys are shown at the end.
        run_info: facts about the run, e.g. ``backbone``, ``image_size``, ``seconds``, ``date``.

    Returns:
        ``path`` as a Path.

    Example:
        >>> write_report("runs/x/report.html", title="x", config={}, data_report={},
        ...              metrics=None, history=[], plots={}, run_info={})
        PosixPath('runs/x/report.html')
    """
    config, run_info, history = config or {}, run_info or {}, list(history or [])
    plots = {PLOT_ALIASES.get(key, key): Path(p) for key, p in (plots or {}).items() if p}
    others = "".join(f"<h3>{_e(k)}</h3>" + _figure(p, k, f"{k}: missing")
                     for k, p in plots.items() if k not in PLACED_PLOTS)
    body = "".join([
        _header(title, config, metrics, history, run_info),
        _data_section(data_report or {}),
        _training_section(history, plots.get("history"), config, run_info),
        _metrics_section(metrics, plots.get("per_class")),
        _section("confusion", "Confusion matrix", _figure(
            plots.get("confusion"), "confusion matrix", "No confusion matrix for this run.")),
        _section("mistakes", "Misclassified test images", _figure(
            plots.get("mistakes"), "misclassified images", "No mistakes plot for this run.")),
        _section("figures", "Other figures", others) if others else "",
        _config_section(config, run_info),
    ])
    written = time.strftime("%Y-%m-%d %H:%M")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)} · imgclf report</title><style>{CSS}</style></head>"
            f"<body><main>{body}<footer>written by imgclf on {written}</footer>"
            "</main></body></html>\n")
    write_text_atomic(path, page)
    return Path(path)
