"""Why the model decided: Grad-CAM heat maps (Selvaraju et al., 2017) computed in TensorFlow on
the trained Keras model.

An imgclf model is ``image -> base -> pool -> head`` (imgclf.training.model), and the base's
output is the last convolutional feature map, so that is the layer Grad-CAM differentiates
against, whatever backbone built it: the class's logit (the head's last Dense before its
softmax, so a saturated probability does not flatten the gradient) is differentiated with
respect to that map in a ``tf.GradientTape``, the gradients are averaged over space into one
weight per channel, and the weighted sum of channels, through a ReLU, is the map. The map has
the feature map's resolution (1/32 of the input for EfficientNet-Lite: 3 x 3 at 96 px) and is
resized bilinearly to the image's.

No library is used: tf-keras-vis (0.8.7, March 2024) is written for tf.keras on Keras 2 and
keras-hub has no saliency API; the method is a dozen lines on a tape.

Example:
    >>> maps = grad_cam(load("runs/fashion").model, images)
    >>> maps.shape, float(maps.max())
    ((8, 96, 96), 1.0)
"""
from __future__ import annotations

import numpy as np

from imgclf.errors import ImgclfError


def _parts(model):
    """The base, the pooling and the head of an imgclf model; one line if it is something else."""
    try:
        return model.get_layer("base"), model.get_layer("pool"), model.get_layer("head")
    except (ValueError, AttributeError):
        raise ImgclfError(f"{getattr(model, 'name', model)}: Grad-CAM needs a Keras model trained by "
                          "imgclf (with its base, pool and head layers)") from None


def explainable(model) -> bool:
    """Whether ``model`` has the base, pool and head that Grad-CAM needs (imgclf's own models do).

    Example:
        >>> explainable(load("runs/fashion").model)
        True
    """
    try:
        _parts(model)
    except ImgclfError:
        return False
    return True


def _logits(head, pooled):
    """The head's output before its final softmax (its output itself when it has none)."""
    import keras
    last = head.layers[-1]
    if not (isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax):
        return head(pooled, training=False)
    x = pooled
    for layer in head.layers[1:-1]:  # [hidden dropout, hidden], dropout: inference mode
        x = layer(x, training=False)
    return keras.ops.matmul(x, last.kernel) + last.bias


def grad_cam(model, images, classes=None, batch_size: int = 4) -> np.ndarray:
    """Grad-CAM heat maps of ``images`` for ``classes`` (default: each image's predicted class).

    Args:
        model: an imgclf Keras model (``load(run).model``, or a Network's ``model``).
        images: (N, S, S, 3) 0-255 RGB at the model's size.
        classes: (N,) class indices to explain; None for the model's own top class.
        batch_size: images per forward pass. The base runs eagerly, and an eager Keras model
            holds every layer's output until the pass ends: 25 images at 224 px took 1.75 GB.

    Returns:
        float32 (N, S, S) maps in [0, 1], each scaled so its largest value is 1 (all zeros where
        nothing in the image speaks for the class).

    Example:
        >>> grad_cam(model, images[:2], classes=[3, 3]).shape
        (2, 96, 96)
    """
    import tensorflow as tf
    base, pool, head = _parts(model)
    images = np.asarray(images)
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        features = base(batch, training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)
            logits = _logits(head, pool(features))
            wanted = (tf.argmax(logits, axis=-1) if classes is None
                      else tf.constant(np.asarray(classes)[start:start + batch_size], tf.int64))
            score = tf.gather(logits, wanted, axis=1, batch_dims=1)
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
        cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append(tf.math.divide_no_nan(cam, peak).numpy())
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *images.shape[1:3]), np.float32)
