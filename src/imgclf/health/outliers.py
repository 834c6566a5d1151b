"""Outliers in feature space, and the cheap facts: tiny images, extreme aspect ratios,
grayscale among colour, class imbalance.

An image is an outlier when its mean cosine distance to its nearest neighbours is beyond
Tukey's far fence (Q3 + 3 IQR) of that distance over the dataset: a screenshot among photos
has no close neighbour, while even a rare class has its own members nearby.

Example:
    >>> far = outliers(sim)
    >>> facts = cheap_facts(scan.sizes, scan.gray, labels_by_class)
"""
from __future__ import annotations

import numpy as np

from imgclf.health.findings import Fact

OUTLIER_NEIGHBOURS = 5
FENCE = 3.0  # IQRs above the third quartile
TINY_SIDE = 16  # pixels; also tiny: a shorter side under a quarter of the dataset's median
ASPECT = 3.0  # longer side / shorter side beyond this is extreme
IMBALANCE = 5.0  # largest class / smallest class beyond this is reported


def outliers(sim: np.ndarray, exclude: set[int] = frozenset()) -> list[tuple[int, float]]:
    """(index, distance) of the outliers, farthest first (see the module doc).

    Args:
        sim: (N, k) similarities to each image's nearest neighbours, most similar first.
        exclude: images not to report (e.g. members of duplicate groups: they have a close copy).
    """
    if sim.shape[1] == 0 or len(sim) < 20:
        return []
    distance = 1.0 - sim[:, :OUTLIER_NEIGHBOURS].mean(1)
    q1, q3 = np.percentile(distance, [25, 75])
    fence = q3 + FENCE * max(q3 - q1, 1e-6)
    far = [int(i) for i in np.argsort(-distance) if distance[i] > fence and int(i) not in exclude]
    return [(i, float(distance[i])) for i in far]


def cheap_facts(sizes: np.ndarray, gray: np.ndarray, counts: dict[str, int], ok: np.ndarray) -> list[Fact]:
    """Facts about single images (index >= 0) and the dataset (index -1).

    Args:
        sizes: (N, 2) width, height.
        gray: (N,) whether each image is grayscale.
        counts: images per class (all splits).
        ok: (N,) bool, the images that decoded (the others are skipped, not described).
    """
    facts = []
    good = np.flatnonzero(ok)
    if len(good):
        short, long = sizes[good].min(1), sizes[good].max(1)
        limit = max(TINY_SIDE, float(np.median(short)) / 4)
        for i, s, l in zip(good, short, long):
            if s < limit:
                facts.append(Fact("tiny", int(i), f"{sizes[i][0]}x{sizes[i][1]} px (median shorter side "
                                                  f"{int(np.median(short))} px)"))
            elif l / max(s, 1) > ASPECT:
                facts.append(Fact("aspect", int(i), f"{sizes[i][0]}x{sizes[i][1]} px, {l / max(s, 1):.1f}:1"))
        colour = 1.0 - gray[good].mean()
        if colour >= 0.5:  # mostly colour: the gray ones stand out
            facts += [Fact("grayscale", int(i), f"grayscale among {colour:.0%} colour images")
                      for i in good if gray[i]]
    present = {name: n for name, n in counts.items() if n}
    if present and max(present.values()) > IMBALANCE * min(present.values()):
        big, small = max(present, key=present.get), min(present, key=present.get)
        facts.append(Fact("imbalance", -1, f"class '{big}' has {present[big]} images, '{small}' "
                                          f"{present[small]} ({present[big] / present[small]:.0f}x)"))
    return facts
