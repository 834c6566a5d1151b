"""Cached views: how many each training image gets, how they are made, and how epochs read them.

View 0 of an image is the image itself, views 1..K-1 augmented; the feature cache
(imgclf.training.features) runs the frozen part once per view, and epoch e of a phase reads view
e mod K.

Example:
    >>> choose_views(0, 900, epochs=10)
    4
"""
from __future__ import annotations

import math
import time

import numpy as np


def choose_views(requested: int, count: int, epochs: int = 64) -> int:
    """The number of cached views K: as asked, or for 0 (automatic) 4 below 10,000 training
    images, 2 up to 50,000, then 1; never more than ``epochs``.

    Views stand in for per-epoch augmentation, which matters most where a small set would
    otherwise be memorised; each view costs a full pass of the frozen bottom over the training
    set (LiteRT, 96 px, two cores: 700-1000 images/s) and one more copy of its cache. For
    Fashion-MNIST-1k's 900 images a view costs about a second; at 50,000 images it costs about
    a minute, more than a head epoch on the cache, while that much data varies enough by itself.
    Epoch i of a phase reads view i mod K, so views past the longest phase would never be read.

    Args:
        requested: train.views; 0 for automatic.
        count: training images.
        epochs: the longest phase's epochs (max of train.epochs and train.fine_tune_epochs).

    Returns:
        K, at least 1.

    Example:
        >>> [choose_views(0, n, 10) for n in (900, 30_000, 60_000)], choose_views(0, 900, epochs=2)
        ([4, 2, 1], 2)
    """
    wanted = requested or (4 if count < 10_000 else 2 if count <= 50_000 else 1)
    return max(1, min(wanted, epochs))


def run_views(fn, images: np.ndarray, views: int, augmenter, out: np.ndarray, batch_size: int = 64,
              after=None, more=None, span: tuple[int, int] | None = None) -> int:
    """Fill ``out[v, i]`` with ``fn(view v of image i)``; view 0 is the image itself.

    Args:
        fn, images, views, out: a compiled function from float32 0-255 image batches to outputs;
            uint8 (N, S, S, 3); the number of views K; the (K, N, ...) array to fill.
        augmenter: a Keras augmentation model for views 1..K-1, or None (then all views equal).
        batch_size: images per forward pass.
        after: ``after(v)`` once view v is filled (the features pass over its activations).
        more: ``more(v, seconds_per_view) -> bool``, asked before every view after the first;
            False stops there (a deadline that one more view would overrun).
        span: only rows [start, stop) (a worker's shard of whole batches; data.shards);
            None: all rows.

    Returns:
        The number of views made (K unless ``more`` stopped it).
    """
    augment = None
    if augmenter is not None and views > 1:
        import tensorflow as tf

        from imgclf.data.augment import reseed
        # a tf.function: ~1.4x faster than calling it eagerly
        augment = tf.function(lambda x: augmenter(x, training=True), reduce_retracing=True)
    first, last = span or (0, len(images))
    batches = math.ceil(len(images) / batch_size)
    began = time.perf_counter()
    for v in range(views):
        if v and more is not None and not more(v, (time.perf_counter() - began) / v):
            return v
        for start in range(first, last, batch_size):
            x = np.asarray(images[start:min(last, start + batch_size)], np.float32)
            if v and augment is not None:  # draws that depend on the seed, view and batch alone:
                reseed(augmenter, v * batches + start // batch_size)  # a worker's shard gets one process's rows
                x = augment(x)
            out[v, start:start + len(x)] = np.asarray(fn(x))
        if after is not None:
            after(v)
    return views


class ViewBatches:
    """(float32 x, one-hot y) batches from a (K, N, ...) cache (float16 or float32): epoch e
    reads view e mod K, in a seeded order that changes every epoch (or in order, for validation).
    With ``mixup`` a (the training batches only), each batch is mixed with itself in another
    order, x and y alike, by a weight drawn from Beta(a, a) (the larger side kept on the
    batch's own rows): mixup on cached features and activations, where it costs no forward pass."""

    def __init__(self, cache: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 seed: int = 0, shuffle: bool = True, mixup: float = 0.0):
        self.cache, self.batch_size, self.seed, self.shuffle = cache, batch_size, seed, shuffle
        self.onehot = np.eye(num_classes, dtype=np.float32)[labels]
        self.mixup = mixup if shuffle else 0.0

    def __len__(self) -> int:
        return math.ceil(len(self.onehot) / self.batch_size)

    def epoch(self, index: int = 0):
        """The batches of epoch ``index`` (0-based)."""
        view = self.cache[index % self.cache.shape[0]]
        n = len(self.onehot)
        order = np.random.default_rng([self.seed, index]).permutation(n) if self.shuffle else np.arange(n)
        mix = np.random.default_rng([self.seed, index, 1])
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x, y = np.asarray(view[idx], np.float32), self.onehot[idx]
            if self.mixup:
                weight, other = max(w := mix.beta(self.mixup, self.mixup), 1 - w), mix.permutation(len(idx))
                x, y = weight * x + (1 - weight) * x[other], weight * y + (1 - weight) * y[other]
            yield x, y
