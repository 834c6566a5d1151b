"""Preprocessing layers that travel inside saved models, so a model always takes raw 0-255 RGB.

Importing this module registers the layers with Keras (package ``imgclf``); a process that
loads a saved ``.keras`` model must import it first.
"""
from __future__ import annotations

import keras

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # the ImageNet mean the ResNet50 weights expect


@keras.saving.register_keras_serializable(package="imgclf")
class CaffePreprocess(keras.layers.Layer):
    """Caffe-style input: RGB -> BGR, then subtract the per-channel ImageNet mean; no scaling.

    Equals ``keras.applications.resnet50.preprocess_input`` on channels-last 0-255 RGB.

    Args:
        mean: the BGR mean to subtract.

    Example:
        >>> CaffePreprocess()(np.full((1, 2, 2, 3), 128.0, "float32"))[0, 0, 0]
        [24.061, 11.221, 4.32]
    """

    def __init__(self, mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(self.mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean)}
