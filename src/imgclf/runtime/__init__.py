"""The inference layer: run a model fast, whatever holds it, and convert Keras models to TFLite.

Owns: the back-ends (``runtimes``: Keras through a tf.function, SavedModel; ``litert``: a
``.tflite`` under LiteRT with XNNPACK, TFLite conversion and the record inside a ``.tflite``),
and compiled forward passes of frozen model parts with their conversion cache (``forward``).
Used by the feature cache (training), the export check, ``predict`` and ``serve``; so it sits
below training. May import: ``imgclf.errors``, ``imgclf.files``, ``imgclf.backbones`` (the
custom layers a saved model needs). A runtime only one export format uses (ONNX Runtime) lives
with that format in ``imgclf.deploy.formats``.

Example:
    >>> from imgclf.runtime import KerasRuntime, LiteRTRuntime
    >>> LiteRTRuntime("export/model.tflite")(images).argmax(1)
    array([3, 1])
"""
from imgclf.runtime.forward import choose_runtime, compile_forward, model_key, tflite_bytes
from imgclf.runtime.litert import LiteRTRuntime, add_tflite_metadata, convert_tflite, read_tflite_metadata
from imgclf.runtime.runtimes import KerasRuntime, Runtime, SavedModelRuntime, default_threads, load_keras_model

__all__ = ["Runtime", "KerasRuntime", "SavedModelRuntime", "LiteRTRuntime", "default_threads", "load_keras_model",
           "convert_tflite", "read_tflite_metadata", "add_tflite_metadata", "compile_forward", "tflite_bytes",
           "model_key", "choose_runtime"]
