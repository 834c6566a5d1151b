"""The run's report.html: one self-contained page (inline CSS, PNGs as data URIs, no scripts).

Every piece of text that came from the user (class names are folder names, paths, config
values) goes through ``html.escape``; numbers are formatted here. Missing inputs (no test
split, a plot that was not drawn, a data report without some key) render as a short note.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from imgclf.evaluation.html import (bar, duration, e, facts, figure, interval, note, num, page, pct, section,
                                    table, to_float)
from imgclf.evaluation.metrics import HEADLINES, Headline
from imgclf.evaluation.health_report import health_section
from imgclf.evaluation.kept import keeps_last, kept_row
from imgclf.evaluation.plan_report import plan_section
from imgclf.files import write_text_atomic
from imgclf.record import PLOTS, RunRecord

SPLITS = ("train", "val", "test")
HISTORY_COLUMNS = ("loss", "accuracy", "top_k_accuracy", "val_loss", "val_accuracy",
                   "val_top_k_accuracy", "lr", "seconds")
COLLAPSE_OVER = 8  # longer lists of skipped files (twice this many epochs) fold into <details>


def _header(title: str, config: dict, metrics: dict | None, history: list[dict],
            run_info: dict) -> str:
    model_cfg, data_cfg = config.get("model") or {}, config.get("data") or {}
    backbone = run_info.get("backbone") or model_cfg.get("backbone")
    size = run_info.get("image_size") or data_cfg.get("image_size")
    date = run_info.get("date") or run_info.get("started")
    seconds = run_info.get("seconds", run_info.get("duration_s"))
    meta = [("backbone", backbone), ("image size", f"{size} × {size} px" if size else None),
            ("date", date), ("training time", duration(seconds) if seconds is not None else None)]
    meta_html = "".join(f"<span>{e(k)}: <b>{e(v)}</b></span>" for k, v in meta if v)
    nav = "".join(f'<a href="#{a}">{e(t)}</a>' for a, t in (
        ("data", "Data"), ("training", "Training"), ("metrics", "Test metrics"),
        ("confusion", "Confusion matrix"), ("mistakes", "Mistakes"), ("calibration", "Calibration"),
        ("coverage", "Coverage"), ("config", "Config")))
    return (f"<header><h1>{e(title)}</h1><div class=meta>{meta_html}</div><nav>{nav}</nav>"
            f"{_cards(metrics, kept_row(history, config))}</header>")


def _cards(metrics: dict | None, best: dict | None) -> str:
    def card(value: str, label: str, kind: str = "card") -> str:
        return f'<div class="{kind}"><div class=v>{value}</div><div class=k>{e(label)}</div></div>'
    cards = []
    if metrics:
        cards += [card(_headline_value(h, metrics), f"test {h.title(metrics)}") for h in HEADLINES if h.card]
        cards.append(card(e(metrics.get("n", "–")), "test images"))
    if best is not None and not math.isnan(to_float(best.get("val_accuracy"))):
        label = f"val accuracy, epoch {best.get('epoch')}"
        cards.append(card(pct(best["val_accuracy"]), label, "card alt"))
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else ""
    if not metrics:
        body += note("No test metrics: the run has no test split, or it was not evaluated.")
    return body


def _headline_value(headline: Headline, metrics: dict) -> str:
    value = headline.value(metrics)
    return (pct(value) if headline.percent else num(value, 3)) + interval(headline.interval(metrics), headline.percent)


def _data_facts(report: dict) -> str:
    counts = report.get("counts") or {}
    totals = {split: sum((counts.get(split) or {}).values()) for split in counts}
    items = [("source", e(report.get("root", "–"))), ("layout", e(report.get("layout", "–"))),
             ("classes", e(len(report.get("classes") or []))),
             ("images", e(" · ".join(f"{s} {n}" for s, n in totals.items()) or "–"))]
    imbalance = report.get("imbalance")
    if imbalance is not None:
        text = f"{num(imbalance, 1)} × (largest / smallest class)"
        items.append(("imbalance", f'<span class="warn">{text}</span>'
                      if to_float(imbalance) >= 3 else text))
    for axis in ("width", "height"):
        stats = (report.get("sizes") or {}).get(axis) or {}
        if stats:
            items.append((f"{axis} min / median / max", e(" / ".join(
                str(stats.get(k, "–")) for k in ("min", "median", "max")) + " px")))
    modes = report.get("modes") or {}
    if modes:
        items.append(("image modes", e(" · ".join(f"{m} {n}" for m, n in modes.items()))))
    return facts(items)


def _class_table(report: dict) -> str:
    counts = report.get("counts") or {}
    splits = [s for s in SPLITS if s in counts] + [s for s in counts if s not in SPLITS]
    classes = list(report.get("classes") or sorted({c for s in counts.values() for c in s}))
    if not classes:
        return note("No per-class counts in the data report.")
    totals = [sum((counts.get(s) or {}).get(c, 0) for s in splits) for c in classes]
    largest = max(totals) or 1
    rows = [[e(c)] + [e((counts.get(s) or {}).get(c, 0)) for s in splits] +
            [f'<td class=num{bar(t / largest)}>{t}</td>'] for c, t in zip(classes, totals)]
    numeric = set(range(1, len(splits) + 2))
    return '<div class="scroll">' + table(["class", *splits, "total"], rows, numeric) + "</div>"


def _skipped(report: dict) -> str:
    skipped = report.get("skipped") or []
    if not skipped:
        return note("No files were skipped.")
    items = [item if isinstance(item, dict) else dict(zip(("path", "reason"), item))
             if isinstance(item, (list, tuple)) else {"path": item} for item in skipped]
    rows = [[e(item.get("path", "?")), e(item.get("reason", "–"))] for item in items]
    listing = '<div class="scroll">' + table(["file", "reason"], rows) + "</div>"
    if len(skipped) <= COLLAPSE_OVER:
        return listing
    return f"<details><summary>{len(skipped)} files skipped: show them</summary>{listing}</details>"


def _data_section(report: dict) -> str:
    if not report:
        return section("data", "Data", note("No data report was recorded for this run."))
    notes = "".join(f"<li>{e(text)}</li>" for text in report.get("notes") or [])
    body = (_data_facts(report) + (f"<ul>{notes}</ul>" if notes else "")
            + "<h3>Images per class and split</h3>" + _class_table(report)
            + f"<h3>Skipped files ({len(report.get('skipped') or [])})</h3>" + _skipped(report))
    return section("data", "Data", body)


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
        items.append((label, e(text)))
    return items


def _history_cell(key: str, value: Any) -> str:
    if key == "lr" and not math.isnan(to_float(value)):
        return f"{to_float(value):.1e}"
    return num(value, 1 if key == "seconds" else 4)


def _history_table(history: list[dict], best: dict | None) -> str:
    keys = [k for k in HISTORY_COLUMNS if any(k in row for row in history)]
    rows = [[e(str(row.get("phase", "")).replace("_", "-")), e(row.get("epoch", ""))]
            + [_history_cell(k, row.get(k)) for k in keys] for row in history]
    headers = ["phase", "epoch", *[k.replace("_", " ") for k in keys]]
    marks = ["best" if row is best else "" for row in history]
    listing = table(headers, rows, set(range(1, len(headers))), marks)
    if len(history) <= 2 * COLLAPSE_OVER:
        return listing
    return f"<details><summary>{len(history)} epochs: show the table</summary>{listing}</details>"


def _training_section(history: list[dict], plot: Path | None, config: dict,
                      run_info: dict) -> str:
    if not history:
        return section("training", "Training", note("No training history was recorded."))
    best = kept_row(history, config)
    items = _phase_summary(history, config)
    if best is not None:
        val = to_float(best.get("val_loss"))
        what = f"val loss {val:.4f}" if not math.isnan(val) else f"loss {num(best.get('loss'))}"
        which = "last" if keeps_last(config) else "best"
        items.append((f"{which} epoch (weights kept)", e(f"{best.get('epoch')} ({what})")))
    seconds = run_info.get("seconds", run_info.get("duration_s"))
    if seconds is None and any("seconds" in row for row in history):
        seconds = sum(to_float(row.get("seconds")) for row in history)
    if seconds is not None:
        items.append(("time", e(duration(seconds))))
    body = (figure(plot, "training curves", "The training-curves plot is missing.")
            + facts(items) + "<h3>Per epoch</h3>" + _history_table(history, best))
    return section("training", "Training", body)


def _per_class_table(metrics: dict) -> str:
    rows = []
    for row in metrics.get("per_class") or []:
        f1 = to_float(row.get("f1"))
        f1_cell = f"<td class=num{bar(0 if math.isnan(f1) else f1)}>{num(f1, 3)}{interval(row.get('f1_ci'))}</td>"
        rows.append([e(row.get("class"))] + [num(row.get(k), 3) + interval(row.get(f"{k}_ci")) for k in ("precision", "recall")]
                    + [f1_cell, e(row.get("support", "–"))])
    return '<div class="scroll">' + table(["class", "precision", "recall", "F1", "support"],
                                           rows, {1, 2, 3, 4}) + "</div>"


def _metrics_section(metrics: dict | None, plot: Path | None) -> str:
    if not metrics:
        return section("metrics", "Test metrics", note("No test metrics for this run."))
    macro, weighted = metrics.get("macro") or {}, metrics.get("weighted") or {}
    rows = [[name] + [num(avg.get(k), 3) + interval(avg.get(f"{k}_ci")) for k in ("precision", "recall", "f1")]
            for name, avg in (("macro average", macro), ("weighted average", weighted))]
    items = [(h.title(metrics), _headline_value(h, metrics)) for h in HEADLINES]
    items.append(("test images", e(metrics.get("n", "–"))))
    body = (facts(items) + table(["", "precision", "recall", "F1"], rows, {1, 2, 3})
            + "<h3>Per class</h3>" + _per_class_table(metrics)
            + figure(plot, "per-class precision, recall and F1", "The per-class plot is missing.")
            + "<details><summary>scikit-learn classification report</summary><pre>"
            + e(metrics.get("classification_report", "")) + "</pre></details>")
    return section("metrics", "Test metrics", body)


def _config_text(config: dict) -> str:
    try:
        import yaml
        return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    except Exception:  # a value YAML cannot represent: JSON with str() still shows everything
        return json.dumps(config, indent=2, default=str)


def _config_section(config: dict, run_info: dict) -> str:
    """run.json's plain facts as facts (floats to 4 significant digits); its nested ones (the
    calibration, ...) as YAML under a fold, never a Python dict's repr."""
    body = ""
    if run_info:
        nested = {key: value for key, value in run_info.items() if isinstance(value, (dict, list))}
        items = [(key.replace("_", " "), e(f"{value:.4g}" if isinstance(value, float) else value))
                 for key, value in run_info.items() if key not in nested]
        body += "<h3>Run</h3>" + facts(items)
        if nested:
            body += (f"<details><summary>{e(', '.join(key.replace('_', ' ') for key in nested))}</summary>"
                     f"<pre>{e(_config_text(nested))}</pre></details>")
    body += "<h3>Config</h3><pre>" + e(_config_text(config or {})) + "</pre>"
    return section("config", "Run details and config", body)


def write_report(path: str | Path, *, title: str, config: dict, data_report: dict,
                 metrics: dict | None, history: list[dict], plots: dict[str, Path],
                 run_info: dict, plan: dict | None = None, extra: str = "") -> Path:
    """Write the run's report as one self-contained HTML file, atomically.

    Args:
        path: the HTML file to write.
        title: the run's name, shown as the page heading.
        config: the resolved config as a nested dict (``data``, ``model``, ``train``...).
        data_report: the data module's report (classes, counts, sizes, modes, skipped,
            imbalance, layout); any key may be missing.
        metrics: ``evaluate.compute_metrics`` output, or None when there was no test split.
        history: one dict per epoch of both phases (see ``plots.plot_history``).
        plots: PNG paths by key (``imgclf.record.PLOTS``: ``history``, ``confusion``,
            ``per_class``, ``mistakes``); other keys are shown at the end.
        run_info: facts about the run, e.g. ``backbone``, ``image_size``, ``seconds``, ``date``.
        plan: plan.json's content (the planner's choice, plan against actual), or None.
        extra: sections after the mistakes (report_extra: calibration, coverage, export checks).

    Returns:
        ``path`` as a Path.

    Example:
        >>> write_report("runs/x/report.html", title="x", config={}, data_report={},
        ...              metrics=None, history=[], plots={}, run_info={})
        PosixPath('runs/x/report.html')
    """
    config, run_info, history = config or {}, run_info or {}, list(history or [])
    plots = {key: Path(p) for key, p in (plots or {}).items() if p}
    others = "".join(f"<h3>{e(k)}</h3>" + figure(p, k, f"{k}: missing")
                     for k, p in plots.items() if k not in PLOTS)
    body = "".join([
        _header(title, config, metrics, history, run_info),
        _data_section(data_report or {}),
        health_section((data_report or {}).get("health"), config.get("data", {}).get("path") or "DATA"),
        plan_section(plan or {}),
        _training_section(history, plots.get("history"), config, run_info),
        _metrics_section(metrics, plots.get("per_class")),
        section("confusion", "Confusion matrix", figure(
            plots.get("confusion"), "confusion matrix", "No confusion matrix for this run.")),
        section("mistakes", "Misclassified test images", figure(
            plots.get("mistakes"), "misclassified images", "No mistakes plot for this run.")), extra,
        section("figures", "Other figures", others) if others else "",
        _config_section(config, run_info),
    ])
    write_text_atomic(path, page(f"{title} · imgclf report", body))
    return Path(path)


def write_run_report(record: RunRecord, config: dict, history: list[dict], metrics: dict | None,
                     run_info: dict) -> Path:
    """Draw the training curves and write the run's report.html from what the run has written.

    Args:
        record: the run.
        config: the resolved config as a nested dict.
        history: the epochs' rows (``record.read_history()``).
        metrics: the test metrics, or None.
        run_info: run.json's facts.

    Returns:
        The report's path.

    Example:
        >>> write_run_report(record, config_to_dict(cfg), record.read_history(), None, {})
        PosixPath('runs/x/report.html')
    """
    from imgclf.evaluation.plots import plot_history
    from imgclf.evaluation.report_extra import extra_sections
    if history:
        kept = kept_row(history, config)
        plot_history(history, record.plot_path("history"), best_epoch=int(kept["epoch"]) if kept else None)
    return write_report(record.report_path, title=record.path.name, config=config,
                        data_report=record.read_data_report(), metrics=metrics, history=history,
                        plots=record.plots(), run_info=run_info, plan=record.read_plan(), extra=extra_sections(record))
