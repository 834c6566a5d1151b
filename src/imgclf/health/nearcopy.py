"""Near copies: candidate pairs from the perceptual hash and from feature-space neighbours, each
confirmed by comparing small grayscale thumbnails.

Neither candidate source decides alone. On 28-px Fashion-MNIST two different trousers share a
perceptual hash and reach a backbone-feature cosine of 0.97, while a JPEG-recompressed copy of
one image can fall to 0.70 (its 8x8 blocks are large at that size). What tells a copy from a
look-alike is the pixels: a copy resized, re-encoded or brightened keeps a correlation above
0.995 between 20x20 grayscale thumbnails (correlation ignores gain and offset), and a slightly
cropped copy keeps it against the same crop of its original, so each image carries thumbnails
of itself cropped by 0, 2, 4, 6 and 8% a side (``CROPS``) and a pair scores the best of
"uncropped a against every crop of b" and the reverse.

``NEAR_THUMB`` was chosen on planted copies of benchmarks/check.py with seeds 0 and 1 (the
lowest planted score 0.9950, the highest score of any other candidate pair 0.9942, on
fashion-mnist-1k; photo tiles separate more widely); the figures reported in
benchmarks/RESULTS.md come from seed 2, which played no part in choosing it.

Example:
    >>> views = np.stack([thumb_views(img) for img in images])
    >>> confirmed = confirm(views, candidates)
"""
from __future__ import annotations

import numpy as np

THUMB = 20  # thumbnail side (pixels)
CROPS = (0.0, 0.02, 0.04, 0.06, 0.08)  # fraction cut from each side, one thumbnail each
NEAR_THUMB = 0.9946  # least thumbnail correlation of a near copy (see the module doc)
_PAIRS = 8192  # pairs compared at a time: 8192 x 5 x 400 float32 = 66 MB per side
_PRE = 4 * THUMB  # large images are first reduced to this side (the crops are then taken from it)


def thumb_views(img) -> np.ndarray:
    """uint8 (len(CROPS), THUMB * THUMB): the image in grayscale, cropped by each of ``CROPS``
    and resized to THUMB x THUMB (aspect ratio not kept: a copy resized to another shape still
    matches).

    Example:
        >>> thumb_views(Image.new("RGB", (28, 28))).shape
        (5, 400)
    """
    from PIL import Image
    gray = img.convert("L")
    if max(gray.size) > _PRE:
        gray = gray.resize((_PRE, _PRE), Image.BILINEAR, reducing_gap=2.0)
    w, h = gray.size
    return np.stack([np.asarray(gray.resize((THUMB, THUMB), Image.BILINEAR,
                                            box=(w * c, h * c, w * (1 - c), h * (1 - c))), np.uint8).reshape(-1)
                     for c in CROPS])


def _normalised(views: np.ndarray) -> np.ndarray:
    x = views.astype(np.float32)
    x -= x.mean(-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def pair_scores(views: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Thumbnail correlation of each pair: the best of a's uncropped thumbnail against each of
    b's crops and the reverse (see the module doc); 0 where either image is flat.

    Args:
        views: uint8 (N, len(CROPS), D) from :func:`thumb_views`.
        pairs: int (P, 2) indices into views.

    Returns:
        float32 (P,).

    Example:
        >>> pair_scores(views, np.array([[0, 1]]))  # doctest: +SKIP
        array([0.9991], dtype=float32)
    """
    out = np.zeros(len(pairs), np.float32)
    for s in range(0, len(pairs), _PAIRS):
        a, b = _normalised(views[pairs[s:s + _PAIRS, 0]]), _normalised(views[pairs[s:s + _PAIRS, 1]])
        ab = np.einsum("pd,pcd->pc", a[:, 0], b)
        ba = np.einsum("pd,pcd->pc", b[:, 0], a)
        out[s:s + _PAIRS] = np.maximum(ab.max(1), ba.max(1))
    return out


def confirm(views: np.ndarray, pairs: np.ndarray, threshold: float = NEAR_THUMB) -> np.ndarray:
    """The pairs whose thumbnails correlate at least ``threshold`` (:func:`pair_scores`)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return pairs[pair_scores(views, pairs) >= threshold] if len(pairs) else pairs


def neighbour_pairs(index: np.ndarray) -> np.ndarray:
    """Every (row, neighbour) of a nearest-neighbour table as pairs (i < j), unique.

    Example:
        >>> neighbour_pairs(np.array([[1], [0], [0]])).tolist()
        [[0, 1], [0, 2]]
    """
    rows = np.repeat(np.arange(len(index)), index.shape[1])
    cols = index.reshape(-1)
    pairs = np.stack([np.minimum(rows, cols), np.maximum(rows, cols)], 1).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
