"""tf.data pipelines over uint8 image arrays, with train-only augmentation; class weights.

Part of the data stage; import these from ``imgclf.data``. TensorFlow is imported only when
a pipeline is built, so ``imgclf inspect`` starts fast.

Example:
    >>> ds = make_pipeline(x, np.array([0, 1]), num_classes=2, batch_size=2)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imgclf.config import AugmentConfig

if TYPE_CHECKING:
    import tensorflow as tf

_IN_GRAPH_LIMIT = 1 << 30  # bytes; bigger arrays are fed batch by batch from NumPy


def make_pipeline(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, *,
                  shuffle: bool = False, seed: int = 0, augment: AugmentConfig | None = None,
                  deterministic: bool = True) -> "tf.data.Dataset":
    """Batches of (float32 images 0-255, one-hot float32 labels) for training or evaluation.

    Only indices are shuffled (a stateless permutation seeded by ``seed`` and the epoch: a new
    order each time the dataset is iterated; ``epoch_batches`` picks the epoch), and each batch
    gathers its images, so the array is never copied into a shuffle buffer. Arrays up to 1 GiB are copied
    once into a TensorFlow constant; memmaps and bigger arrays (ResizedImages too) stay in
    NumPy and are read a batch at a time. Augmentation runs on whole batches. Keras' random
    layers draw from a stateful seed generator, so in a parallel map batches would race for
    the draws and the same seed would augment differently each run; ``deterministic=True``
    (default) therefore augments one batch at a time (each op still uses every core),
    ``False`` uses ``num_parallel_calls=AUTOTUNE``.

    Args:
        images: uint8 (N, S, S, 3), from load_images (an array, memmap or ResizedImages).
        labels: int class indices (N,).
        num_classes: width of the one-hot labels.
        batch_size: images per batch; the last batch may be smaller.
        shuffle: reshuffle every epoch (training).
        seed: drives the shuffle and the augmentation.
        augment: train-time augmentation; None or all-zero factors for none.
        deterministic: see above.

    Returns:
        A prefetched ``tf.data.Dataset``.

    Example:
        >>> x, y = next(iter(make_pipeline(images, labels, 3, 32, shuffle=True)))
        >>> x.shape, y.shape
        (TensorShape([32, 96, 96, 3]), TensorShape([32, 3]))
    """
    return _build(images, labels, num_classes, batch_size, shuffle, seed, augment, deterministic)[0]


class EpochBatches:
    """Training batches whose order and augmentation are a function of the seed and the epoch
    alone (not of how many epochs this process has run), so a resumed run trains on exactly
    the batches an uninterrupted one does. Build with ``epoch_batches``.

    Example:
        >>> batches = epoch_batches(images, labels, 3, 32, seed=0, augment=AugmentConfig())
        >>> x, y = next(iter(batches.epoch(4)))
    """

    def __init__(self, dataset, counter, augmenter):
        self.dataset, self._counter, self._augmenter = dataset, counter, augmenter

    def epoch(self, index: int) -> "tf.data.Dataset":
        """The batches of epoch ``index`` (iterate the result once)."""
        from imgclf.data.augment import reseed
        self._counter.assign(index)
        if self._augmenter is not None:
            reseed(self._augmenter, index)
        return self.dataset


def epoch_batches(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, *, seed: int = 0,
                  augment: AugmentConfig | None = None) -> EpochBatches:
    """Shuffled, augmented training batches by epoch; see make_pipeline and EpochBatches.

    Example:
        >>> next(iter(epoch_batches(images, labels, 3, 32, seed=1).epoch(0)))[0].shape
        TensorShape([32, 96, 96, 3])
    """
    return EpochBatches(*_build(images, labels, num_classes, batch_size, True, seed, augment, True))


def _build(images, labels, num_classes, batch_size, shuffle, seed, augment, deterministic):
    """(dataset, epoch counter, augmenter). A shuffled order is a stateless permutation seeded by
    (seed, counter); the counter moves on by one each time the data is iterated (a new order
    every epoch) and EpochBatches sets it to the epoch."""
    import tensorflow as tf

    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    order = tf.data.Dataset.range(len(labels))
    if shuffle:
        n = len(labels)

        def permutation(_):
            epoch = counter.assign_add(1) - 1
            seeds = tf.stack([tf.constant(int(seed), tf.int64), epoch])
            shuffled = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seeds)
            return tf.data.Dataset.from_tensor_slices(shuffled)
        order = tf.data.Dataset.range(1).flat_map(permutation)
    gather = _gather_fn(images, labels, num_classes)
    ds = order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    augmenter = None
    if augment is not None:
        from imgclf.data.augment import build_augmenter

        augmenter = build_augmenter(augment, seed)
    if augmenter is not None:
        calls = None if deterministic else tf.data.AUTOTUNE
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=calls)
    return ds.prefetch(tf.data.AUTOTUNE), counter, augmenter


def _gather_fn(images: np.ndarray, labels: np.ndarray, num_classes: int):
    import tensorflow as tf

    size = tuple(images.shape[1:])
    classes = tf.constant(labels)

    def onehot(idx):
        return tf.one_hot(tf.gather(classes, idx), num_classes, dtype=tf.float32)

    from imgclf.data.arrays import DiskImages
    if isinstance(images, (np.memmap, DiskImages)) or images.nbytes > _IN_GRAPH_LIMIT:
        def read(idx):
            return np.ascontiguousarray(images[np.asarray(idx)])

        def gather(idx):
            x = tf.numpy_function(read, [idx], tf.uint8, stateful=False)
            x.set_shape((None,) + size)
            return tf.cast(x, tf.float32), onehot(idx)
        return gather
    pixels = tf.constant(np.asarray(images))

    def gather(idx):
        return tf.cast(tf.gather(pixels, idx), tf.float32), onehot(idx)
    return gather


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """"Balanced" class weights, n / (C * count_c), so every class weighs the same in the loss.

    A class absent from ``labels`` gets weight 0 (it contributes no examples anyway).

    Args:
        labels: int class indices of the training images.
        num_classes: C.

    Returns:
        float32 array (C,).

    Example:
        >>> class_weights(np.array([0, 0, 0, 1]), 2)
        array([0.6666667, 2.       ], dtype=float32)
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = counts.sum() / (num_classes * counts[present])
    return weights.astype(np.float32)
