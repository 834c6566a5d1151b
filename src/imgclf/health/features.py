"""Pooled backbone features of every image, and their cosine nearest neighbours.

The forward pass is the feature cache's: the frozen base and its pooling
(``training.features.pooled_model``) compiled by ``runtime.compile_forward`` (LiteRT for large
jobs). The features are then centred and projected to at most ``DIM`` dimensions by PCA and
L2-normalised, so that a dot product is a cosine and neighbours of 70,000 images take one
blocked matrix product (N x DIM x N) instead of N x 1280 x N.

Example:
    >>> forward, size = feature_forward("efficientnet_lite0", 0, report, count=1000)
    >>> x = project(scan.features)
    >>> index, sim = neighbours(x, k=5)
"""
from __future__ import annotations

import numpy as np

DIM = 128  # PCA dimensions kept for neighbours and the linear model
# Least input side the check chooses (``train`` takes 96): 28-px images at 64 px cost a third
# of the forward pass at 96 (1.0 vs 3.1 ms of CPU an image on LiteRT), and copies are confirmed
# by thumbnails, not by the features (benchmarks/check.py measured recall at 64 px).
CHECK_LEAST = 64
# Rows of the similarity matrix at a time: 256 x 70,000 float32 = 72 MB, and argpartition's int64
# indices of the same shape twice that; 1024 rows took the check of 70,000 images past 2.7 GB.
_BLOCK = 256
_GROUP = 64  # columns per group whose maximum prunes the top-k search (see neighbours)
_PCA_FIT = 20_000  # rows the PCA is fitted on (randomly chosen); all rows are then projected


def feature_forward(backbone: str, image_size: int, data_report, count: int, weights: str = "imagenet"):
    """(forward, image_size): the frozen pooled backbone compiled for ``count`` images, and the
    input side (as given, else chosen from the images as ``imgclf train`` chooses it, but at
    least ``CHECK_LEAST`` rather than 96).

    Example:
        >>> forward, size = feature_forward("efficientnet_lite0", 0, ds.report, 900)
        >>> forward(np.zeros((2, size, size, 3), np.float32)).shape
        (2, 1280)
    """
    from imgclf.backbones import get_spec
    from imgclf.runtime import choose_runtime, compile_forward
    from imgclf.training.features import pooled_model
    from imgclf.training.model import build_network, choose_image_size
    spec = get_spec(backbone)
    size = choose_image_size(image_size, spec, data_report, least=CHECK_LEAST)
    net = build_network(spec, 2, size, weights=weights)
    return compile_forward(pooled_model(net), choose_runtime("auto", count)), size


def project(features: np.ndarray, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Centred, PCA-projected (to at most ``dim``), L2-normalised float32 features.

    Example:
        >>> project(np.random.rand(500, 1280)).shape
        (500, 128)
    """
    from sklearn.decomposition import PCA
    x = np.asarray(features, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    keep = min(dim, x.shape[1], max(1, len(x) - 1))
    if keep < x.shape[1]:
        rows = np.random.default_rng(seed).permutation(len(x))[:_PCA_FIT]
        pca = PCA(keep, svd_solver="randomized", random_state=seed).fit(x[np.sort(rows)])
        x = np.concatenate([pca.transform(x[s:s + 8192]).astype(np.float32) for s in range(0, len(x), 8192)])
    else:
        x = x - x.mean(0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbours(x: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most similar other rows by dot product, most similar first.

    Args:
        x: float32 (N, D), L2-normalised (then similarities are cosines).
        k: neighbours per row (at most N - 1).

    Returns:
        (index int64 (N, k), similarity float32 (N, k)).

    Example:
        >>> neighbours(np.eye(3, dtype=np.float32), 1)[0].shape
        (3, 1)
    """
    n = len(x)
    k = max(0, min(k, n - 1))
    index, sim = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    if not k:
        return index, sim
    groups = -(-n // _GROUP)
    # padded to whole column groups; a padded column is never anyone's neighbour
    padded = np.concatenate([x, np.zeros((groups * _GROUP - n, x.shape[1]), x.dtype)])
    kk = min(k, groups)
    for start in range(0, n, _BLOCK):
        block = x[start:start + _BLOCK] @ padded.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf  # not its own neighbour
        block[:, n:] = -np.inf
        # the k best lie in the k column groups with the best maxima: select among those only
        best = np.argpartition(-block.reshape(len(block), groups, _GROUP).max(2), kk - 1, axis=1)[:, :kk]
        cols = (best[:, :, None] * _GROUP + np.arange(_GROUP)).reshape(len(block), -1)
        vals = np.take_along_axis(block, cols, 1)
        top = np.argpartition(-vals, k - 1, axis=1)[:, :k]
        vals, top = np.take_along_axis(vals, top, 1), np.take_along_axis(cols, top, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        index[start:start + len(block)] = np.take_along_axis(top, order, 1)
        sim[start:start + len(block)] = np.take_along_axis(vals, order, 1)
    return index, sim
