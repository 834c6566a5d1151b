"""Figures from training history and test metrics: draws, computes nothing.

Every figure is a ``matplotlib.figure.Figure`` on an Agg canvas, never pyplot, so nothing here
touches the global backend, rcParams or a display; each PNG is written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from imgclf.evaluation.kept import kept_row
from imgclf.files import atomic_path

DPI = 110
TRAIN_COLOR, VAL_COLOR = "#2563eb", "#ea580c"
PHASE_COLOR = "#6b7280"
METRIC_COLORS = {"precision": "#60a5fa", "recall": "#f59e0b", "f1": "#1e3a8a"}
ANNOTATE_MAX_CLASSES = 20  # beyond this, numbers in heatmap cells are too small to read
LABEL_WIDTH = 22  # class names wider than this are cut on axes


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    # Constrained layout, unlike tight_layout, leaves room for seaborn's colorbars.
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white", layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return path


def _clean_axes(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def _cut(name: str, width: int = LABEL_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
    values = [row.get(key) for row in rows]
    return np.array([np.nan if v is None or v == "" else float(v) for v in values])


def _history_panel(ax, epochs, train, val, ylabel: str, best: int | None, better: str) -> None:
    ax.plot(epochs, train, "o-", color=TRAIN_COLOR, markersize=3.5, linewidth=1.8, label="train")
    has_val = bool(np.any(np.isfinite(val)))
    if has_val:
        ax.plot(epochs, val, "o-", color=VAL_COLOR, markersize=3.5, linewidth=1.8,
                label="validation")
    marked, color = (val, VAL_COLOR) if has_val else (train, TRAIN_COLOR)
    if best is not None and np.isfinite(marked[epochs == best]).any():
        ax.plot([best], [float(marked[epochs == best][0])], marker="*", markersize=16,
                color=color, markeredgecolor="black", markeredgewidth=0.8, linestyle="none",
                label=f"kept (epoch {best})", zorder=5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} ({better} is better)", fontsize=11)
    _clean_axes(ax)
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def _mark_phase(ax, boundary: float | None, last: float) -> None:
    if boundary is None:
        return
    ax.axvspan(boundary, last + 0.5, color=PHASE_COLOR, alpha=0.07, linewidth=0)
    ax.axvline(boundary, color=PHASE_COLOR, linestyle="--", linewidth=1.2)
    ax.text(boundary, 0.985, " fine-tuning starts", transform=ax.get_xaxis_transform(),
            ha="left", va="top", fontsize=9, color="#374151")


def plot_history(rows: Sequence[dict[str, Any]], path: str | Path,
                 best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train and validation, across both training phases.

    Args:
        rows: one dict per epoch with ``phase`` ("head" | "fine_tune"), ``epoch`` (global,
            1-based), ``loss``, ``accuracy`` and optionally ``val_loss``, ``val_accuracy``.
        path: the PNG to write.
        best_epoch: the epoch whose weights were kept, marked with a star; default: the
            lowest validation loss's (training loss without validation), as kept.kept_row.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_history([{"phase": "head", "epoch": 1, "loss": .9, "accuracy": .6}], "h.png")
        PosixPath('h.png')
    """
    fig = _new_figure(11, 4.2)
    if not rows:
        fig.text(0.5, 0.5, "No training history recorded", ha="center", va="center", fontsize=14)
        return _save(fig, path)
    epochs = _column(rows, "epoch").astype(int)
    loss, val_loss = _column(rows, "loss"), _column(rows, "val_loss")
    val_acc = _column(rows, "val_accuracy")
    kept = kept_row(list(rows)) if best_epoch is None else None
    best = best_epoch if best_epoch is not None else (int(float(kept["epoch"])) if kept else None)
    fine = epochs[np.array([row.get("phase") == "fine_tune" for row in rows])]
    boundary = fine.min() - 0.5 if len(fine) and fine.min() > epochs.min() else None
    loss_ax, acc_ax = fig.subplots(1, 2)
    _history_panel(loss_ax, epochs, loss, val_loss, "loss", best, "lower")
    _history_panel(acc_ax, epochs, _column(rows, "accuracy"), val_acc, "accuracy", best, "higher")
    for ax in (loss_ax, acc_ax):
        _mark_phase(ax, boundary, float(epochs.max()))
        ax.legend(fontsize=9, frameon=False, loc="best")
    return _save(fig, path)


def _tick_rotation(labels: Sequence[str]) -> tuple[float, str]:
    longest = max(len(label) for label in labels)
    if len(labels) * longest <= 40:
        return 0, "center"  # short names fit level under their columns
    return (45, "right") if len(labels) <= 12 else (90, "center")


def _heatmap(ax, data, class_names, fmt: str, title: str, cbar_label: str, cell: float,
             vmax=None) -> None:
    import seaborn as sns  # imported here: seaborn pulls in pandas, slow for `import imgclf`

    num_classes = len(class_names)
    labels = [_cut(str(n)) for n in class_names]
    points = cell * 72  # fonts follow the cell size, so big matrices stay as legible as small
    sns.heatmap(data, ax=ax, cmap="Blues", vmin=0, vmax=vmax, square=False,
                annot=num_classes <= ANNOTATE_MAX_CLASSES, fmt=fmt,
                annot_kws={"fontsize": min(12.0, max(6.0, 0.38 * points))},
                linewidths=0.5 if num_classes <= 40 else 0, linecolor="white",
                xticklabels=labels, yticklabels=labels,
                cbar_kws={"label": cbar_label, "shrink": 0.8})
    ax.set_xlabel("predicted class", fontsize=11)
    ax.set_ylabel("true class", fontsize=11)
    ax.set_title(title, fontsize=13, pad=10)
    ax.tick_params(axis="both", labelsize=min(10.0, max(5.0, 0.55 * points)), length=0)
    rotation, align = _tick_rotation(labels)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=rotation, ha=align)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)


def plot_confusion(cm, class_names: Sequence[str], path: str | Path) -> Path:
    """Two heatmaps side by side: raw counts and row-normalised percentages.

    Args:
        cm: confusion matrix (C, C), rows true, columns predicted.
        class_names: the C names in label-index order.
        path: the PNG to write.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_confusion([[5, 1], [2, 7]], ["cat", "dog"], "cm.png")
        PosixPath('cm.png')
    """
    cm = np.asarray(cm, dtype=np.int64)
    num_classes = len(class_names)
    if cm.shape != (num_classes, num_classes):
        raise ValueError(f"cm has shape {cm.shape}, expected ({num_classes}, {num_classes})")
    totals = cm.sum(axis=1, keepdims=True)
    # A class absent from the test set has an all-zero row: show 0 % rather than NaN.
    percent = np.divide(100.0 * cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    grid = min(max(2.4, 0.4 * num_classes), 14.0)  # inches of cells per panel
    cell = grid / num_classes
    margin = 0.09 * max(len(_cut(str(n))) for n in class_names) * min(1.0, cell / 0.3)
    fig = _new_figure(2 * (grid + margin + 1.6), grid + margin + 1.2)
    count_ax, pct_ax = fig.subplots(1, 2)
    _heatmap(count_ax, cm, class_names, "d", "counts", "images", cell)
    _heatmap(pct_ax, percent, class_names, ".0f", "% of each true class (row-normalised)",
             "% of true class", cell, vmax=100)
    return _save(fig, path)


def _error_bars(rows: list[dict], key: str) -> np.ndarray | None:
    """(2, C) distances to each bar's 95% interval ends, or None when the metrics have none."""
    if not all(row.get(f"{key}_ci") for row in rows):
        return None
    return np.array([[row[key] - row[f"{key}_ci"][0], row[f"{key}_ci"][1] - row[key]] for row in rows]).T.clip(0)


def plot_per_class(metrics: dict[str, Any], path: str | Path) -> Path:
    """Precision, recall and F1 per class as grouped horizontal bars (with their 95% bootstrap
    intervals as error bars when the metrics carry them), worst F1 at the top.

    Args:
        metrics: ``evaluate.compute_metrics`` output (uses ``per_class`` and ``macro``).
        path: the PNG to write.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_per_class(compute_metrics(y_true, probs, names), "per_class.png")
        PosixPath('per_class.png')
    """
    rows = sorted(metrics["per_class"], key=lambda row: row["f1"])
    num_classes = len(rows)
    fig = _new_figure(9, 0.5 * num_classes + 1.9)
    ax = fig.subplots()
    y = np.arange(num_classes)
    height = 0.27
    for offset, key in zip((-height, 0.0, height), ("precision", "recall", "f1")):
        ax.barh(y + offset, [row[key] for row in rows], height=height, color=METRIC_COLORS[key],
                label=key if key != "f1" else "F1", xerr=_error_bars(rows, key), error_kw={"elinewidth": .8, "capsize": 2})
    for i, row in enumerate(rows):
        right = (row.get("f1_ci") or [0, row["f1"]])[1]
        ax.text(min(right, 1.0) + 0.01, i + height, f"{row['f1']:.2f}", va="center", fontsize=8)
    macro_f1 = metrics.get("macro", {}).get("f1")
    if macro_f1 is not None:
        ax.axvline(macro_f1, color="#111827", linestyle="--", linewidth=1,
                   label=f"macro F1 ({macro_f1:.2f})")
    ax.set_yticks(y, [f"{_cut(row['class'])}  (n={row['support']})" for row in rows],
                  fontsize=10 if num_classes <= 40 else 8)
    ax.set_ylim(num_classes - 0.5, -0.5)  # lowest F1 first, at the top where the eye starts
    ax.set_xlim(0, 1.06)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("score")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("macro"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=9, frameon=False)
    fig.suptitle("Per-class precision, recall and F1, worst F1 at the top", fontsize=12)
    return _save(fig, path)
