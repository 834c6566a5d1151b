"""Layers of our own that travel inside saved models: preprocessing, so a model always takes raw
0-255 RGB, a 1x1 convolution that trains faster on a CPU, and the mirror image of a test-time flip.

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


@keras.saving.register_keras_serializable(package="imgclf")
class PointwiseConv2D(keras.layers.Conv2D):
    """A 1x1, stride-1 ``Conv2D`` that trains as a matrix product.

    TensorFlow's CPU gradient of a 1x1 convolution on small feature maps is 2-3x slower than
    the gradient of the same product written as a matmul (measured on 2 cores: batch 32, 3x3
    maps, 192 -> 1152 channels, 12.5 ms against 5.6 ms), and the top blocks that fine-tuning
    trains are mostly such convolutions. So with ``training=True`` the layer reshapes to rows
    and multiplies; otherwise it is a plain ``Conv2D`` call, so inference, export and TFLite
    conversion see the usual convolution. Same weights, same config, same output to float
    rounding.

    Example:
        >>> layer = PointwiseConv2D(8, 1, use_bias=False)
        >>> x = np.ones((2, 3, 3, 4), "float32")
        >>> np.allclose(layer(x, training=True), layer(x))
        True
    """

    def __init__(self, filters, kernel_size=1, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size != (1, 1) or self.strides != (1, 1) or self.dilation_rate != (1, 1) \
                or self.groups != 1 or self.data_format != "channels_last":
            raise ValueError("PointwiseConv2D is a 1x1, stride-1, ungrouped, channels-last convolution")

    def call(self, inputs, training=None):
        if not training:
            return super().call(inputs)
        ops = keras.ops
        shape = ops.shape(inputs)
        rows = ops.reshape(inputs, (-1, shape[-1]))
        out = ops.matmul(rows, ops.reshape(self.kernel, (shape[-1], self.filters)))
        if self.use_bias:
            out = out + self.bias
        out = ops.reshape(out, (shape[0], shape[1], shape[2], self.filters))
        return self.activation(out) if self.activation is not None else out


@keras.saving.register_keras_serializable(package="imgclf")
class Mirror(keras.layers.Layer):
    """Each image mirrored left to right (NHWC): the second view of a test-time flip folded into
    an exported graph (imgclf.training.model.fold_flip).

    Example:
        >>> Mirror()(np.arange(3.0).reshape(1, 1, 3, 1))[0, 0, :, 0]
        [2.0, 1.0, 0.0]
    """

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape
