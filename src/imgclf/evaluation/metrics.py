"""Predictions -> metrics: a JSON-ready dict, a terminal table, and the worst mistakes.

Pure NumPy and scikit-learn: no TensorFlow here, so metrics can be recomputed from saved
predictions anywhere. Running a model over a run's test split is ``evaluate_run``'s job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from imgclf.record import PLOTS

# Probabilities are clipped before the log so one confident, wrong 0.0 gives a large but finite
# loss rather than infinity (the same floor scikit-learn uses for float64).
LOG_LOSS_EPS = 1e-15
NAME_WIDTH = 20  # class names wider than this are cut in terminal tables
MAX_TERMINAL_CM = 30  # beyond this many classes a terminal confusion matrix is unreadable


@dataclass(frozen=True)
class Headline:
    """One headline number of an evaluation: where compute_metrics puts it and how people read it.

    The terminal summary, the command's one-line summary, the report's cards and facts and the
    server's model card all iterate over HEADLINES, so a new headline metric is computed in
    ``compute_metrics`` and named here, once.
    """

    key: str  # dotted path into the metrics dict: "accuracy", "macro.f1"
    label: str  # for people; "{top_k}" is filled in
    terse: str  # the terminal table's narrower label
    percent: bool  # the report shows it as a percentage
    card: bool = True  # a card at the top of the report

    @property
    def name(self) -> str:
        """Its key in flat records (the model card): ``macro_f1``."""
        return self.key.replace(".", "_")

    def value(self, metrics: dict) -> float | None:
        value = metrics
        for part in self.key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def interval(self, metrics: dict) -> list[float] | None:
        """Its 95% bootstrap interval ``[lo, hi]`` (stored beside it as ``<key>_ci``), if computed."""
        *parents, last = self.key.split(".")
        holder = metrics
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        found = holder.get(f"{last}_ci") if isinstance(holder, dict) else None
        return [float(v) for v in found] if isinstance(found, (list, tuple)) and len(found) == 2 else None

    def formatted(self, metrics: dict, digits: int = 4) -> str:
        """``0.8550 [0.8480, 0.8620]``: the value and, when there is one, its interval."""
        return with_interval(self.value(metrics), self.interval(metrics), digits)

    def title(self, metrics: dict, terse: bool = False) -> str:
        return (self.terse if terse else self.label).format(top_k=metrics.get("top_k", "k"))


def with_interval(value: float | None, ci: list[float] | None, digits: int = 4) -> str:
    """``0.8550 [0.8480, 0.8620]``; ``0.8550`` without an interval; ``–`` without a value."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


HEADLINES = (
    Headline("accuracy", "accuracy", "accuracy", percent=True),
    Headline("macro.f1", "macro-F1", "macro-F1", percent=False),
    Headline("top_k_accuracy", "top-{top_k} accuracy", "top-{top_k} acc.", percent=True),
    Headline("log_loss", "log loss", "log loss", percent=False, card=False),
)


def summary_line(metrics: dict[str, Any]) -> str:
    """The headline numbers on one line, each with its 95% interval when computed:
    ``accuracy 0.8547 [0.8478, 0.8616], macro-F1 0.8540 [...], ... on 10000 images``.

    Example:
        >>> summary_line(compute_metrics([0, 1], [[.9, .1], [.3, .7]], ["cat", "dog"]))[:33]
        'accuracy 1.0000 [1.0000, 1.0000],'
    """
    parts = [f"{h.title(metrics)} {h.formatted(metrics)}" for h in HEADLINES if h.value(metrics) is not None]
    return ", ".join(parts) + f" on {metrics['n']} images"


def _check_inputs(y_true, probs, class_names) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = len(class_names)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be 1-D (N,), got shape {y_true.shape}")
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {probs.shape}")
    if len(y_true) != len(probs):
        raise ValueError(f"y_true has {len(y_true)} samples but probs has {len(probs)}")
    if len(y_true) == 0:
        raise ValueError("no samples to evaluate (y_true is empty)")
    if num_classes < 2:
        raise ValueError(f"need at least 2 class names, got {num_classes}")
    if probs.shape[1] != num_classes:
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {num_classes} "
                         "class names")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer labels, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(f"y_true labels must lie in [0, {num_classes - 1}], "
                         f"got range [{y_true.min()}, {y_true.max()}]")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values")
    return y_true.astype(np.int64), probs


def _top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    num_classes = probs.shape[1]
    if k >= num_classes:
        return 1.0  # every label is in the top C; sklearn would only warn and say the same
    labels = np.arange(num_classes)
    # sklearn wants the positive-class column alone in the two-class case
    scores = probs[:, 1] if num_classes == 2 else probs
    return float(top_k_accuracy_score(y_true, scores, k=k, labels=labels))


def _log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    clipped = np.clip(probs, LOG_LOSS_EPS, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(clipped[np.arange(len(y_true)), y_true])))


def _averaged(y_true, y_pred, labels, average: str) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=average, zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def compute_metrics(y_true, probs, class_names: Sequence[str], top_k: int = 5,
                    intervals: bool = True) -> dict[str, Any]:
    """Every test-set number the report shows, as a JSON-ready dict.

    Args:
        y_true: true labels, integers in ``[0, C)``, shape (N,).
        probs: predicted probabilities, shape (N, C); the prediction is the row's argmax.
        class_names: the C names, in label-index order.
        top_k: k for top-k accuracy; the k actually used is ``min(top_k, C)``.
        intervals: add 95% bootstrap intervals (imgclf.evaluation.intervals) beside accuracy,
            top-k accuracy, macro/weighted F1 (``<key>_ci``) and every per-class score.

    Returns:
        A dict with ``n``, ``accuracy``, ``top_k``, ``top_k_accuracy``, ``macro`` and
        ``weighted`` ({precision, recall, f1}), ``per_class`` (list of {class, precision,
        recall, f1, support}), ``confusion_matrix`` (rows true, columns predicted, all C
        classes), ``classification_report`` (text), ``class_names`` and ``log_loss``; with
        ``intervals``, ``accuracy_ci`` etc. as ``[lo, hi]`` and ``intervals`` (level, replicates).

    Raises:
        ValueError: shapes disagree, labels out of range, or probabilities not finite.

    Example:
        >>> m = compute_metrics([0, 1, 1], [[.9, .1], [.2, .8], [.6, .4]], ["cat", "dog"])
        >>> round(m["accuracy"], 3), m["confusion_matrix"]
        (0.667, [[1, 0], [1, 1]])
    """
    class_names = [str(name) for name in class_names]
    y_true, probs = _check_inputs(y_true, probs, class_names)
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    labels = list(range(len(class_names)))
    y_pred = probs.argmax(axis=1)
    k = min(int(top_k), len(class_names))
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    per_class = [
        {"class": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
         "support": int(support[i])}
        for i, name in enumerate(class_names)
    ]
    metrics = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)),
        "top_k": k,
        "top_k_accuracy": _top_k_accuracy(y_true, probs, k),
        "macro": _averaged(y_true, y_pred, labels, "macro"),
        "weighted": _averaged(y_true, y_pred, labels, "weighted"),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classification_report": classification_report(
            y_true, y_pred, labels=labels, target_names=class_names, digits=3, zero_division=0),
        "class_names": class_names,
        "log_loss": _log_loss(y_true, probs),
    }
    if intervals:
        _add_intervals(metrics, y_true, y_pred, probs, k)
    return metrics


def _add_intervals(metrics: dict, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, k: int) -> None:
    """Store the bootstrap intervals beside the point estimates they belong to."""
    from imgclf.evaluation.intervals import metric_intervals
    # the true class is in the top k when fewer than k classes score above it (ties count as in)
    true_score = probs[np.arange(len(y_true)), y_true]
    top_k_hit = (probs > true_score[:, None]).sum(axis=1) < k
    ci = metric_intervals(y_true, y_pred, top_k_hit, probs.shape[1])
    metrics["accuracy_ci"], metrics["top_k_accuracy_ci"] = ci["accuracy"], ci["top_k_accuracy"]
    metrics["macro"]["f1_ci"], metrics["weighted"]["f1_ci"] = ci["macro_f1"], ci["weighted_f1"]
    for i, row in enumerate(metrics["per_class"]):
        row.update({f"{key}_ci": ci["per_class"][key][i] for key in ("precision", "recall", "f1")})
    metrics["intervals"] = {"level": ci["level"], "replicates": ci["replicates"],
                            "method": "percentile bootstrap, stratified by class"}


def _cut(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


def _headline(metrics: dict[str, Any]) -> list[str]:
    macro, weighted = metrics["macro"], metrics["weighted"]
    lines = [f"{'test images':<14}{metrics['n']}"]
    lines += [f"{h.title(metrics, terse=True):<14}{h.formatted(metrics)}" for h in HEADLINES]
    return lines + [
        "",
        f"{'':10}{'precision':>10}{'recall':>10}{'f1':>10}",
        f"{'macro':10}{macro['precision']:>10.4f}{macro['recall']:>10.4f}{macro['f1']:>10.4f}",
        f"{'weighted':10}{weighted['precision']:>10.4f}{weighted['recall']:>10.4f}"
        f"{weighted['f1']:>10.4f}",
    ]


def _per_class_rows(metrics: dict[str, Any]) -> list[str]:
    width = min(NAME_WIDTH, max(len(row["class"]) for row in metrics["per_class"]))
    width = max(width, len("class"))
    lines = [f"{'class':<{width}}{'precision':>11}{'recall':>9}{'f1':>9}{'support':>9}"]
    for row in metrics["per_class"]:
        lines.append(f"{_cut(row['class'], width):<{width}}{row['precision']:>11.3f}"
                     f"{row['recall']:>9.3f}{row['f1']:>9.3f}{row['support']:>9d}")
    return lines


def _confusion_rows(metrics: dict[str, Any]) -> list[str]:
    cm = np.asarray(metrics["confusion_matrix"])
    names = metrics["class_names"]
    if len(names) > MAX_TERMINAL_CM:
        return [f"({len(names)} classes: too many to print; see plots/{PLOTS['confusion']})"]
    # Columns are numbered rather than named so the matrix stays narrow; rows carry the names.
    cell = max(len(str(cm.max())), len(str(len(names) - 1))) + 2
    width = min(NAME_WIDTH, max(len(n) for n in names)) + len(str(len(names) - 1)) + 1
    corner = "true/pred"
    header = f"{corner:<{width}}" + "".join(f"{j:>{cell}}" for j in range(len(names)))
    lines = [header]
    for i, name in enumerate(names):
        label = _cut(f"{i} {name}", width)
        lines.append(f"{label:<{width}}" + "".join(f"{v:>{cell}d}" for v in cm[i]))
    return lines


def format_metrics(metrics: dict[str, Any]) -> str:
    """A fixed-width text summary of ``compute_metrics``'s output, for the terminal.

    Args:
        metrics: the dict returned by ``compute_metrics`` (or read back from metrics.json).

    Returns:
        Headline numbers, a per-class table and the confusion matrix, newline-separated.

    Example:
        >>> m = compute_metrics([0, 1], [[.9, .1], [.3, .7]], ["cat", "dog"])
        >>> print(format_metrics(m).splitlines()[1])
        accuracy      1.0000
    """
    sections = [_headline(metrics), ["per class:"] + _per_class_rows(metrics),
                ["confusion matrix (rows: true, columns: predicted):"] + _confusion_rows(metrics)]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def mistakes(y_true, probs, limit: int | None = 25) -> list[int]:
    """Indices of misclassified samples, most confident mistakes first.

    Args:
        y_true: true labels, shape (N,).
        probs: predicted probabilities, shape (N, C).
        limit: at most this many indices; None for all of them.

    Returns:
        Sample indices whose argmax differs from the true label, sorted by the probability of
        the (wrong) predicted class, highest first; ties keep index order.

    Example:
        >>> mistakes([0, 1, 1], [[.9, .1], [.6, .4], [.95, .05]])
        [2, 1]
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or y_true.shape != (len(probs),):
        raise ValueError(f"need y_true (N,) and probs (N, C); got {y_true.shape} and {probs.shape}")
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probs[wrong, y_pred[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")]
    return [int(i) for i in order[:limit]]
