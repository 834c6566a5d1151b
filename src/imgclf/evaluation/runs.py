"""The runs of a folder side by side: one row of facts per run (``imgclf runs``), sorted, as a
terminal table or JSON. Everything is read through RunRecord; a run that is odd in one file
(an old config, no metrics yet) is still listed, with what it has.

Example:
    >>> rows = list_runs("runs", sort="accuracy")
    >>> print(format_runs(rows))  # doctest: +SKIP
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError
from imgclf.evaluation.html import duration
from imgclf.evaluation.metrics import HEADLINES, with_interval
from imgclf.record import RunRecord

# The headline numbers the table shows, from the one table of headline metrics.
SHOWN = tuple(h for h in HEADLINES if h.key in ("accuracy", "macro.f1"))
# Sort keys: the row fields they read, and whether the largest comes first.
SORT_KEYS = {"name": ("name", False), "date": ("date", False), "backbone": ("backbone", False),
             "size": ("image_size", False), "budget": ("budget_s", False), "wall": ("seconds", False),
             **{h.name: (h.name, True) for h in SHOWN}, "status": ("status", False)}


def run_row(record: RunRecord) -> dict[str, Any]:
    """One run's facts: name, path, date started, backbone, image size, budget, wall time,
    epochs, the headline test metrics (and intervals once metrics.json has them), status."""
    info, plan = record.read_run_info(), record.read_plan().get("plan") or {}
    try:
        cfg = record.read_config()
        backbone, size, budget = cfg.model.backbone, cfg.data.image_size, cfg.train.budget_s
    except ImgclfError:  # a config this version cannot read: keep what run.json says
        backbone, size, budget = None, None, None
    history = record.read_history()
    seconds = (record.read_plan().get("actual") or {}).get("total", info.get("seconds"))  # the whole run
    if seconds is None and history:  # interrupted: the epochs it finished
        seconds = round(sum(r["seconds"] for r in history if not math.isnan(r.get("seconds", math.nan))), 1)
    metrics = record.read_metrics() if record.is_complete else {}
    row = {"name": record.path.name, "path": str(record.path),
           "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.config_path.stat().st_mtime)),
           "backbone": info.get("backbone") or backbone, "image_size": info.get("image_size") or size or None,
           "budget_s": plan.get("budget_s") or budget or None, "seconds": seconds, "epochs": len(history)}
    for h in SHOWN:
        row[h.name], row[f"{h.name}_ci"] = h.value(metrics), h.interval(metrics)
    row["status"] = "complete" if record.is_complete else "interrupted"
    return row


def list_runs(runs_dir: str | Path = "runs", sort: str = "date") -> list[dict[str, Any]]:
    """Every run directory directly inside ``runs_dir`` (one with a config.yaml), as rows.

    Args:
        runs_dir: the folder runs are written to (``--runs-dir``).
        sort: a key of SORT_KEYS; metrics sort best first, the rest ascending; missing values last.

    Returns:
        run_row() dicts.

    Raises:
        ImgclfError: no such folder, or an unknown sort key.

    Example:
        >>> [row["name"] for row in list_runs("runs", sort="name")]
        ['digits', 'fashion']
    """
    folder = Path(runs_dir)
    if not folder.is_dir():
        raise ImgclfError(f"{folder}: no such runs folder")
    if sort not in SORT_KEYS:
        raise ImgclfError(f"--sort {sort}: unknown key; use one of {', '.join(SORT_KEYS)}")
    records = [RunRecord(p) for p in sorted(folder.iterdir()) if p.is_dir()]
    rows = [run_row(r) for r in records if r.config_path.is_file()]
    field, best_first = SORT_KEYS[sort]
    present = sorted((r for r in rows if r[field] is not None), key=lambda r: r[field], reverse=best_first)
    return present + [r for r in rows if r[field] is None]


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned terminal table.

    Example:
        >>> print(format_runs(list_runs("runs")).splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
        name  date  backbone  size  budget  wall  accuracy  macro-F1  epochs  status
    """
    if not rows:
        return "no runs"
    headers = ["name", "date", "backbone", "size", "budget", "wall", *(h.label for h in SHOWN),
               "epochs", "status"]
    table = [headers] + [[row["name"], row["date"], row["backbone"] or "–",
                          f"{row['image_size']} px" if row["image_size"] else "auto",
                          duration(row["budget_s"]) if row["budget_s"] else "default",
                          duration(row["seconds"]) if row["seconds"] is not None else "–",
                          *(with_interval(row[h.name], row[f"{h.name}_ci"], 3) for h in SHOWN),
                          str(row["epochs"]), row["status"]] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)
