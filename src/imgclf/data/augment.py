"""Train-only augmentation: Keras preprocessing layers applied in the tf.data pipeline.

The augmenter never goes inside the saved model, so export and serving never see it. Every
layer is seeded from the run's one seed, so a run is repeatable.

Example:
    >>> aug = build_augmenter(AugmentConfig(rotation=0.05, flip="horizontal"), seed=42)
    >>> out = aug(batch, training=True)   # float32 0-255 in, float32 0-255 out
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imgclf.config import AugmentConfig

if TYPE_CHECKING:  # keras is imported only when an augmenter is built (fast CLI start)
    import keras


def build_augmenter(cfg: AugmentConfig, seed: int) -> "keras.Sequential | None":
    """The augmentation layers for ``cfg``, or None when every factor is zero or "none".

    Geometric layers fill with reflected pixels (a black border would be a cue the model
    could learn and that real photos never show). Colour layers work in the 0-255 range of
    the pipeline, and a final clip guarantees 0-255 out whatever the layers do. Each layer
    gets its own seed derived from ``seed`` so that two layers never draw the same numbers.

    Args:
        cfg: factors as in Keras' layers: rotation in turns, zoom/translation in fractions of
            the image size, contrast as a factor, brightness as a fraction of 0-255.
        seed: the run's seed.

    Returns:
        A ``keras.Sequential`` taking float32 (B, S, S, 3) 0-255 batches; call it with
        ``training=True``. None if there is nothing to do.

    Example:
        >>> build_augmenter(AugmentConfig(rotation=0, flip="none", zoom=0), seed=0) is None
        True
    """
    import keras

    base = (int(seed) % (1 << 26)) * 16  # distinct, non-negative, within int32 for any seed
    seeds = iter(range(base + 1, base + 16))
    layers = []
    if cfg.flip != "none":
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=next(seeds)))
    if cfg.rotation > 0:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=next(seeds)))
    if cfg.zoom > 0:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=next(seeds)))
    if cfg.translation > 0:
        layers.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation,
                                                     fill_mode="reflect", seed=next(seeds)))
    if cfg.contrast > 0:
        layers.append(keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=next(seeds)))
    if cfg.brightness > 0:
        layers.append(keras.layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=next(seeds)))
    if not layers:
        return None
    layers.append(keras.layers.Lambda(lambda x: keras.ops.clip(x, 0.0, 255.0), name="clip_0_255"))
    return keras.Sequential(layers, name="augment")


EPOCH_STRIDE = 1 << 20  # draws one epoch may take from a random layer before the next epoch's begin


def reseed(model, epoch: int) -> None:
    """Make every random layer in ``model`` (augmentation, dropout) draw, from now on, the numbers
    of epoch ``epoch``: its seed state becomes (its seed, epoch x EPOCH_STRIDE).

    Keras' random layers keep a counter that every call advances; a resumed run starts it from
    zero, so without this its first resumed epoch would draw another epoch's numbers. With it,
    what an epoch draws depends on the seed and the epoch alone, and a resumed run trains on the
    same augmented batches, with the same dropout masks, as an uninterrupted one.

    Example:
        >>> reseed(build_augmenter(AugmentConfig(), seed=0), epoch=3)
    """
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            state = variable.numpy()
            variable.assign(np.array([state[0], epoch * EPOCH_STRIDE], dtype=state.dtype))
