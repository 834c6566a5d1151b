"""Likely label errors: out-of-fold probabilities from a linear model on the features, ranked
by cleanlab.

A logistic regression is cross-validated on the projected backbone features (each image is
predicted by a model that never saw it), and ``cleanlab.filter.find_label_issues`` picks the
images whose given label the probabilities contradict (confident learning, pruned by the
estimated noise rate), worst first by self-confidence; the suggested label is the model's
top class.

Example:
    >>> issues = label_issues(project(scan.features), labels, seed=42)
    >>> issues[0].index, issues[0].suggested  # doctest: +SKIP
    (17, 3)
"""
from __future__ import annotations

import numpy as np

FOLDS = 5


def out_of_fold_probabilities(x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0,
                              folds: int = FOLDS) -> np.ndarray | None:
    """(N, num_classes) probabilities, each row from a model trained without that image; None
    when some class has fewer than two images (no stratified fold is possible).

    Example:
        >>> out_of_fold_probabilities(x, y, 10).shape
        (900, 10)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    counts = np.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < 2:
        return None
    cv = StratifiedKFold(min(folds, int(present.min())), shuffle=True, random_state=seed)
    model = LogisticRegression(C=1.0, max_iter=300)
    probs = cross_val_predict(model, x, labels, cv=cv, method="predict_proba")
    full = np.zeros((len(labels), num_classes), np.float64)
    full[:, np.flatnonzero(counts > 0)] = probs
    return full


def label_issues(x: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0
                 ) -> tuple[list[tuple[int, float, int]], str | None]:
    """Likely mislabelled images, worst first: (index, label quality 0-1, suggested class).

    Returns:
        (issues, note): the note says why nothing was checked (e.g. a class of one image).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    probs = out_of_fold_probabilities(x, labels, num_classes, seed)
    if probs is None:
        return [], "label errors not checked: a class has fewer than two images"
    present = np.flatnonzero(probs.sum(0) > 0)
    remap = np.full(num_classes, -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present] / probs[:, present].sum(1, keepdims=True)
    given = remap[labels]
    ranked = find_label_issues(given, sub, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given, sub)
    return [(int(i), float(quality[i]), int(present[sub[i].argmax()])) for i in ranked], None
