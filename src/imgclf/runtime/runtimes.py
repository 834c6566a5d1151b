"""Inference back-ends: a callable ``runtime(batch) -> np.ndarray`` over a Keras model, a
SavedModel or (``litert``) a ``.tflite`` under LiteRT.

Every back-end takes batches as given (raw 0-255 RGB for a classifier, activations for a
frozen top) and returns float32 outputs. A classifier's back-end also knows its
``image_size`` and ``num_classes`` (``check_classifier``). The feature cache, ``predict``,
``serve`` and the export check all run models through these classes.

Example:
    >>> runtime = KerasRuntime(model)
    >>> runtime(np.zeros((1, 96, 96, 3), np.uint8)).shape
    (1, 10)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError, first_line


class Runtime:
    """Base of the back-ends; ``deploy.Classifier`` calls any instance of it directly.

    ``format`` names the kind of model file (keras, savedmodel, tflite, ...); ``image_size``
    and ``num_classes`` are set by ``check_classifier`` for a classifier.
    """

    format = "?"
    image_size = 0
    num_classes = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def check_classifier(self, source, input_shape: list, output_shape: list) -> None:
        """Set image_size and num_classes, or raise a one-line error: an image classifier takes
        (N, S, S, 3) and gives (N, classes)."""
        shape = [int(d) if d is not None else -1 for d in input_shape]
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] <= 0:
            raise ImgclfError(f"{source}: not an image classifier (input shape {shape}, expected (N, S, S, 3))")
        output_shape = [int(d) if d is not None else -1 for d in output_shape]  # plain numbers in messages
        if len(output_shape) != 2 or output_shape[1] < 1:
            raise ImgclfError(f"{source}: not an image classifier (output shape {output_shape}, "
                              "expected (N, classes))")
        self.image_size, self.num_classes = shape[1], int(output_shape[1])


def default_threads() -> int:
    """Threads for LiteRT (and ONNX Runtime): the CPUs this process may run on.

    Example:
        >>> default_threads()
        2
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_ROOT_SCOPE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")  # tf.name_scope's patterns, outermost and inner
_SCOPE = re.compile(r"[A-Za-z0-9_.\\/>-]*")


def load_keras_model(path: str | Path):
    """A saved Keras model, with imgclf's custom layers registered and Keras' safe mode on (no
    code from the file runs); one-line ImgclfError if it fails.

    Example:
        >>> load_keras_model("runs/fashion/model.keras").input_shape
        (None, 96, 96, 3)
    """
    import keras

    import imgclf.backbones.layers  # noqa: F401  registers the custom layers saved models refer to
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise ImgclfError(f"{path}: cannot load model ({first_line(exc)})") from None
    # TensorFlow refuses these names as scopes only when the model first runs: check them now
    named = [(_ROOT_SCOPE, model.name), *((_SCOPE, layer.name) for layer in model._flatten_layers(include_self=False))]
    bad = next((name for pattern, name in named if not (isinstance(name, str) and pattern.fullmatch(name))), None)
    if bad is not None:
        raise ImgclfError(f"{path}: cannot load model (layer name {bad!r} is not a valid TensorFlow name)")
    return model


class KerasRuntime(Runtime):
    """A Keras model called through one ``tf.function`` (much less overhead than ``model.predict``).

    Example:
        >>> KerasRuntime(model)(np.zeros((2, 96, 96, 3), np.float32)).shape
        (2, 10)
    """

    format = "keras"

    def __init__(self, model, source: str | Path = "model"):
        self.model = model
        self.check_classifier(source, list(model.input_shape), list(model.output_shape))
        self._compiled = None

    @classmethod
    def from_file(cls, path: str | Path) -> "KerasRuntime":
        return cls(load_keras_model(path), path)

    def __call__(self, batch):
        if self._compiled is None:
            import tensorflow as tf
            # One trace for every batch size (the last, smaller batch of a file list would trace
            # again, a second or more of a short job's start); the same graph for every batch
            # also keeps one process's probabilities and its shards' the same.
            spec = tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)
            self._compiled = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
        return np.asarray(self._compiled(np.asarray(batch, np.float32)))


class SavedModelRuntime(Runtime):
    """A SavedModel's ``serving_default`` signature (TensorFlow only; Keras not needed).

    Loading a SavedModel runs its graph's code: load only SavedModels you trust.

    Example:
        >>> SavedModelRuntime("runs/fashion/export/saved_model").image_size
        96
    """

    format = "savedmodel"

    def __init__(self, path: str | Path):
        import tensorflow as tf
        try:
            self._loaded = tf.saved_model.load(str(path))
            self._fn = self._loaded.signatures["serving_default"]
        except Exception as exc:  # corrupt protobuf, missing variables, no signature: one line
            raise ImgclfError(f"{path}: cannot load SavedModel ({first_line(exc)})") from None
        inputs = self._fn.structured_input_signature[1]
        if len(inputs) != 1 or len(self._fn.structured_outputs) != 1:
            raise ImgclfError(f"{path}: not an image classifier (expected one input and one output)")
        (self._input, spec), = inputs.items()
        self._output, out_spec = next(iter(self._fn.structured_outputs.items()))
        self.check_classifier(path, list(spec.shape), list(out_spec.shape))

    def __call__(self, batch):
        import tensorflow as tf
        out = self._fn(**{self._input: tf.constant(np.asarray(batch, np.float32))})
        return out[self._output].numpy()
