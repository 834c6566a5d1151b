"""The one rule for ranking classes by probability: highest first, ties by class index.

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
