"""The reliability diagram: is a 90% answer right 90% of the time? Drawn from what
``calibration.calibration_metrics`` stored in metrics.json, nothing computed here.

Same Agg figures as ``plots`` (no pyplot, atomic PNGs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.evaluation.plots import VAL_COLOR, _clean_axes, _new_figure, _save

AFTER_COLOR, GAP_COLOR, BEFORE_COLOR = "#2563eb", "#dc2626", "#6b7280"


def _filled(rows: list[dict]) -> list[dict]:
    return [row for row in rows or [] if row.get("n")]


def plot_reliability(calibration: dict, path: str | Path) -> Path:
    """Accuracy against confidence per equal-width bin after the temperature (bars, the gap to the
    diagonal in red), the same before it (grey line), and the images in each bin below.

    Args:
        calibration: metrics.json's ``calibration``: ``reliability`` rows (``low``, ``high``,
            ``n``, ``confidence``, ``accuracy``), optionally ``reliability_before``, and
            ``temperature``, ``ece_before``, ``ece_after``.
        path: the PNG to write.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_reliability(metrics["calibration"], "reliability.png")
        PosixPath('reliability.png')
    """
    fig = _new_figure(6.4, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    rows = _filled(calibration.get("reliability"))
    if not rows:
        top.text(0.5, 0.5, "No test images", ha="center", va="center", fontsize=14)
        return _save(fig, path)
    low, high = np.array([r["low"] for r in rows]), np.array([r["high"] for r in rows])
    centre, width = (low + high) / 2, (high - low) * 0.92
    accuracy, confidence = np.array([r["accuracy"] for r in rows]), np.array([r["confidence"] for r in rows])
    top.plot([0, 1], [0, 1], "--", color="#111827", linewidth=1, label="perfectly calibrated")
    top.bar(centre, accuracy, width=width, color=AFTER_COLOR, alpha=0.85, label="accuracy (after temperature)")
    top.bar(centre, confidence - accuracy, bottom=accuracy, width=width, color=GAP_COLOR, alpha=0.35,
            hatch="//", edgecolor=GAP_COLOR, linewidth=0, label="gap to mean confidence")
    before = _filled(calibration.get("reliability_before"))
    if before:
        top.plot([r["confidence"] for r in before], [r["accuracy"] for r in before], "o-", color=BEFORE_COLOR,
                 markersize=3.5, linewidth=1.4, label="before temperature")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.legend(fontsize=8.5, frameon=False, loc="upper left")
    _clean_axes(top)
    title = "Reliability on the test images"
    if "ece_after" in calibration:
        title += (f": ECE {calibration['ece_before']:.1%} → {calibration['ece_after']:.1%}"
                  f" (T = {calibration['temperature']:.2f}, fitted on validation)")
    top.set_title(title, fontsize=10.5)
    bottom.bar(centre, [r["n"] for r in rows], width=width, color=VAL_COLOR, alpha=0.8)
    bottom.set_ylabel("images")
    bottom.set_xlabel("confidence of the top class")
    _clean_axes(bottom)
    return _save(fig, path)
