"""The rules for the probabilities a model hands out: ranking classes (highest first, ties by
class index) and temperature scaling (``temper``, applied by the one place probabilities leave a
model, imgclf.deploy.predict.Classifier; the temperature is fitted by imgclf.evaluation.calibration).

Example:
    >>> top_k([0.1, 0.7, 0.2], ["cat", "dog", "fox"], 2)
    [('dog', 0.7), ('fox', 0.2)]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def top_k(probs, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one prediction, as (name, probability) pairs.

    Args:
        probs: one row of probabilities, length len(class_names).
        class_names: the names, in output order.
        k: how many to return; at most len(class_names).

    Returns:
        Pairs, most probable first; equal probabilities keep class-index order (a stable sort).

    Example:
        >>> top_k(np.array([0.5, 0.5]), ["a", "b"], 1)
        [('a', 0.5)]
    """
    probs = np.asarray(probs)
    order = np.argsort(-probs, kind="stable")[:max(0, min(k, len(class_names)))]
    return [(class_names[i], float(probs[i])) for i in order]


PROB_FLOOR = 1e-12  # log(0) guard: a probability the model rounds to 0 stays the least likely


def temper(probs, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities, ``softmax(log(p) / T)`` row by row (the same as dividing
    the logits by T); T = 1 returns them unchanged, T > 1 softens, T < 1 sharpens. The argmax
    and the ranking never change.

    Example:
        >>> temper(np.array([[0.8, 0.2]]), 2.0).round(3)
        array([[0.667, 0.333]])
    """
    probs = np.asarray(probs)
    if temperature == 1.0 or probs.size == 0:
        return probs
    logits = np.log(np.maximum(probs.astype(np.float64), PROB_FLOOR)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(probs.dtype if probs.dtype.kind == "f" else np.float32)


def mirror(images) -> np.ndarray:
    """Each image mirrored left to right ((N, H, W, C) in, the same dtype out, contiguous): the
    other half of a test-time flip (imgclf.evaluation.calibration.choose_flip).

    Example:
        >>> mirror(np.arange(6).reshape(1, 1, 3, 2))[0, 0, :, 0]
        array([4, 2, 0])
    """
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


UNKNOWN = "unknown"  # the answer below the confidence asked for (predict --min-confidence, serve)


def answer(top: Sequence[tuple[str, float]], min_confidence: float = 0.0) -> str | None:
    """The label to give for a ranked prediction: its top class, or UNKNOWN when that class is
    less probable than ``min_confidence``; None for no prediction (an unreadable file).

    Example:
        >>> answer([("dog", 0.55), ("cat", 0.45)], min_confidence=0.6)
        'unknown'
    """
    if not top:
        return None
    return top[0][0] if top[0][1] >= min_confidence else UNKNOWN
