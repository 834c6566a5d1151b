"""Which epoch's weights a run kept, read back from its history and config (the report, the
training-curves plot and the benchmarks ask; the trainer decides it by config.keep_of).

Example:
    >>> kept_row(record.read_history(), config_to_dict(cfg))["epoch"]
    '23'
"""
from __future__ import annotations

import math

from imgclf.config import keep_of
from imgclf.evaluation.html import to_float


def keeps_last(config: dict | None) -> bool:
    """True when the run's config (a dict, as in config.yaml) kept the last epoch's weights.
    Runs written before train.keep existed kept the best."""
    train = (config or {}).get("train") or {}
    return keep_of(str(train.get("keep", "best")), str(train.get("schedule", ""))) == "last"


def kept_row(history: list[dict], config: dict | None = None) -> dict | None:
    """The history row of the epoch whose weights the run kept: the last one when ``config``
    kept the last, else the lowest validation loss (training loss without validation), as the
    trainer's early stopping; None for an empty history."""
    if keeps_last(config):
        return history[-1] if history else None
    key = "val_loss" if any(not math.isnan(to_float(r.get("val_loss"))) for r in history) else "loss"
    scored = [row for row in history if not math.isnan(to_float(row.get(key)))]
    return min(scored, key=lambda row: to_float(row[key])) if scored else None
