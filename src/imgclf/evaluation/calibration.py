"""Calibration: is a 90% confidence right 90% of the time? ECE, the reliability table, the
temperature fitted on the validation split, and how accuracy grows as the model abstains.

Pure NumPy and scipy. The temperature is fitted once, after training, on the validation split
only (``fit_temperature``: scipy minimises the log loss over log T); it is stored in the run's
calibration.json and applied where probabilities leave a model (imgclf.ranking.temper, called
by imgclf.deploy.predict.Classifier), so predict, serve, every export and the test metrics see
the same calibrated probabilities.

Example:
    >>> t = fit_temperature(val_probs, val_labels)
    >>> expected_calibration_error(temper(test_probs, t), test_labels) < expected_calibration_error(test_probs, test_labels)
    True
"""
from __future__ import annotations

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.ranking import temper

BINS = 15  # the usual number of equal-width confidence bins (Guo et al., 2017)
T_RANGE = (0.05, 20.0)  # temperatures searched; a fit at an end means the split says little


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))))


def fit_temperature(probs, labels) -> float:
    """The temperature that minimises the log loss of ``temper(probs, T)`` on these images.

    Args:
        probs: (N, C) the model's probabilities on the validation split.
        labels: (N,) its true classes.

    Returns:
        T, rounded to 4 digits; 1.0 when there is nothing to fit on.

    Example:
        >>> fit_temperature(np.array([[0.99, 0.01], [0.99, 0.01]]), np.array([0, 1])) > 1
        True
    """
    from scipy.optimize import minimize_scalar
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    if len(labels) == 0:
        return 1.0
    bounds = np.log(T_RANGE)
    fit = minimize_scalar(lambda log_t: _nll(temper(probs, float(np.exp(log_t))), labels), bounds=bounds,
                          method="bounded", options={"xatol": 1e-4})
    return round(float(np.exp(fit.x)), 4)


def held_out_probs(predict, arrays, val_labels, cfg) -> dict:
    """The raw probabilities of val and test by ``predict(images, mirrored)``, the test-time flip
    chosen on val only (choose_flip; test then averaged with its mirror images when it is on),
    and the seconds the test split took. ``arrays``: {"val", "test"} images; ``cfg``: the run's
    RunConfig. On a multi-worker run's cached path every worker calls this, predicting its shard
    and gathering all rows (training.features.CachedData.predict), so every worker decides the same.

    Example:
        >>> held_out_probs(lambda x, mirrored: clf.predict_arrays(x), arrays, val_labels, cfg)["flip"]["flip"]
        False
    """
    import time

    from imgclf.config import flip_considered
    considered = flip_considered(cfg.train.test_time_flip, cfg.data.augment.flip)
    val = predict(arrays["val"], False) if len(arrays["val"]) else None
    flipped = predict(arrays["val"], True) if val is not None and considered else None
    flip = choose_flip(val, flipped, val_labels, cfg.train.test_time_flip, considered)
    probs = {"flip": flip, "val": (val + flipped) / 2 if flip["flip"] and val is not None else val}
    began = time.perf_counter()
    if len(arrays["test"]):
        test = predict(arrays["test"], False)
        probs["test"] = (test + predict(arrays["test"], True)) / 2 if flip["flip"] else test
    probs["test_seconds"] = round(time.perf_counter() - began, 2)
    return probs


def choose_flip(plain, flipped, labels, setting: str = "auto", flips_in_training: bool = True) -> dict:
    """Whether to average each prediction with its mirror image's (test-time flip), decided on
    the validation split only.

    ``auto`` turns it on when training flipped images horizontally (so the model was taught that
    a mirror image has the same class) and the average raises validation accuracy, or keeps it
    equal and lowers the log loss; ``on`` and ``off`` force it.

    Args:
        plain: (N, C) the model's probabilities on the validation images (None: not computed).
        flipped: (N, C) its probabilities on their mirror images (None: not computed).
        labels: (N,) the validation labels.
        setting: train.test_time_flip: auto, on or off.
        flips_in_training: whether training flips horizontally (imgclf.config.flip_considered).

    Returns:
        ``{"flip": bool, "setting", "reason"}``, plus the validation accuracy and log loss of both
        ways (``val_accuracy`` / ``val_loss``: {"plain", "flip"}) when both were computed.

    Example:
        >>> choose_flip(np.array([[0.6, 0.4]]), np.array([[0.2, 0.8]]), np.array([0]))["flip"]
        False
    """
    facts = {"setting": setting}
    if plain is not None and flipped is not None and len(labels):
        plain, flipped, labels = np.asarray(plain, np.float64), np.asarray(flipped, np.float64), np.asarray(labels)
        both = (plain + flipped) / 2
        facts["val_accuracy"] = {k: round(float(np.mean(p.argmax(1) == labels)), 4)
                                 for k, p in (("plain", plain), ("flip", both))}
        facts["val_loss"] = {k: round(_nll(p, labels), 4) for k, p in (("plain", plain), ("flip", both))}
    if setting in ("on", "off"):
        return {"flip": setting == "on", **facts, "reason": f"train.test_time_flip: {setting}"}
    if not flips_in_training:
        return {"flip": False, **facts, "reason": "training does not flip images horizontally"}
    if "val_accuracy" not in facts:
        return {"flip": False, **facts, "reason": "no validation images to decide on"}
    acc, loss = facts["val_accuracy"], facts["val_loss"]
    better = (acc["flip"], -loss["flip"]) > (acc["plain"], -loss["plain"])
    return {"flip": bool(better), **facts,
            "reason": f"validation accuracy {acc['plain']:.4f} -> {acc['flip']:.4f}, "
                      f"log loss {loss['plain']:.4f} -> {loss['flip']:.4f} with the mirror image averaged in"}


def reliability(probs, labels, bins: int = BINS) -> list[dict]:
    """Per equal-width confidence bin: its range, images, mean confidence and accuracy.

    Example:
        >>> reliability(np.array([[0.9, 0.1]]), np.array([0]), bins=2)[1]["accuracy"]
        1.0
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append({"low": b / bins, "high": (b + 1) / bins, "n": int(inside.sum()),
                     "confidence": float(confidence[inside].mean()) if inside.any() else None,
                     "accuracy": float(correct[inside].mean()) if inside.any() else None})
    return rows


def expected_calibration_error(probs, labels, bins: int = BINS) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over ``bins`` bins.

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
        0.4
    """
    rows, n = reliability(probs, labels, bins), len(labels)
    return round(sum(r["n"] / n * abs(r["confidence"] - r["accuracy"]) for r in rows if r["n"]), 6)


def _most_confident_first(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Top-class confidences, highest first, and the accuracy on the first 1, 2, ... of them."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(probs.argmax(axis=1)[order] == labels[order])
    return confidence[order], hits / np.arange(1, len(labels) + 1)


def coverage_curve(probs, labels, points: int = 20) -> list[dict]:
    """Accuracy on the share of images the model is most confident about, from all of them down
    to the top 1/points: ``[{"coverage", "min_confidence", "accuracy"}, ...]``.

    Example:
        >>> coverage_curve(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]), points=2)[-1]["accuracy"]
        1.0
    """
    confidence, accurate = _most_confident_first(probs, labels)
    rows = []
    for share in np.linspace(1.0, 1.0 / points, points):
        kept = max(1, int(round(share * len(labels))))
        rows.append({"coverage": round(kept / len(labels), 4), "min_confidence": round(float(confidence[kept - 1]), 6),
                     "accuracy": round(float(accurate[kept - 1]), 6)})
    return rows


def calibration_metrics(probs, labels, temperature: float) -> dict:
    """What metrics.json says about calibration: the temperature, ECE and log loss of the
    probabilities before and after it (``probs`` are the tempered ones), the reliability table
    after it (and before it, for the diagram) and the coverage-accuracy curve.

    Example:
        >>> calibration_metrics(probs, labels, 1.3)["ece_after"]
        0.012
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    raw = temper(probs, 1.0 / temperature)  # tempering is undone exactly by the inverse temperature
    return {"temperature": temperature, "bins": BINS,
            "ece_before": expected_calibration_error(raw, labels), "ece_after": expected_calibration_error(probs, labels),
            "log_loss_before": round(_nll(raw, labels), 6), "log_loss_after": round(_nll(probs, labels), 6),
            "reliability": reliability(probs, labels), "reliability_before": reliability(raw, labels),
            "coverage": coverage_curve(probs, labels)}


TARGETS = tuple(round(0.5 + 0.005 * i, 3) for i in range(100))  # accuracies 0.500-0.995 a threshold is kept for


def abstain_thresholds(val_probs, val_labels, test_probs=None, test_labels=None, targets=TARGETS) -> list[dict]:
    """For each target accuracy A, the lowest confidence P at which the validation images the
    model is at least P sure of are at least A accurate (so the most images get an answer),
    with that validation coverage; then, only reported, the test coverage and accuracy at P.
    Targets no threshold reaches on validation are left out; rows with the same P are merged
    into the highest target they meet.

    Example:
        >>> abstain_thresholds(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))[-1]["min_confidence"]
        0.9
    """
    probs, labels = np.asarray(val_probs, np.float64), np.asarray(val_labels)
    if not len(labels):
        return []
    confidence, accurate = _most_confident_first(probs, labels)
    rows: dict[float, dict] = {}
    for target in targets:
        reach = np.flatnonzero(accurate >= target)
        if not len(reach):
            continue
        p = float(confidence[reach[-1]])
        rows[p] = {"target_accuracy": target, "min_confidence": round(p, 6),
                   **_answered("val", probs, labels, p), **_answered("test", test_probs, test_labels, p)}
    return sorted(rows.values(), key=lambda r: r["target_accuracy"])


def _answered(split: str, probs, labels, p: float) -> dict:
    """Coverage and accuracy of ``split`` when only answers at confidence >= p are given."""
    if probs is None or not len(labels):
        return {}
    probs, labels = np.asarray(probs), np.asarray(labels)
    kept = probs.max(axis=1) >= p
    hits = probs.argmax(axis=1)[kept] == labels[kept]
    return {f"{split}_coverage": round(float(kept.mean()), 4),
            f"{split}_accuracy": round(float(hits.mean()), 4) if kept.any() else None}


def pick_threshold(thresholds: list[dict], target: float, source: str) -> dict:
    """The row of ``thresholds`` (abstain_thresholds, stored in run.json) for ``target``: the
    lowest stored target at or above it.

    Raises:
        ImgclfError: the run has no thresholds, or none reaches ``target`` on validation.
    """
    if not thresholds:
        raise ImgclfError(f"{source}: no confidence thresholds in its run.json (a run without validation "
                          "images, an older run, or an exported file); use --min-confidence P instead")
    for row in thresholds:
        if row["target_accuracy"] >= target - 1e-9:
            return row
    best = thresholds[-1]
    raise ImgclfError(f"--target-accuracy {target}: not reached on the validation split at any confidence "
                      f"(at most {best['val_accuracy']:.3f}, on the most confident {best['val_coverage']:.0%})")
