"""Conversions of a trained Keras model: TFLite (float, dynamic-range, full int8) and SavedModel.

Pure conversions, no checks and no file layout: :mod:`imgclf.export` does those. The model
takes raw 0-255 RGB (its preprocessing is inside), so every converted graph does too.

Example:
    >>> data = convert_tflite(model, "int8", calibration=train_images[:200])
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError


def convert_tflite(model, mode: str = "float", calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model to TFLite: float32, dynamic-range or full-integer quantised.

    Args:
        model: the keras.Model (raw 0-255 RGB in, probabilities out).
        mode: "float", "dynamic" (int8 weights, float activations) or "int8" (everything int8,
            ranges from ``calibration``; uint8 input so raw pixels go in as they are, float32
            probabilities out).
        calibration: uint8 (N, S, S, 3) training images, for "int8".

    Returns:
        The .tflite model bytes.

    Example:
        >>> len(convert_tflite(model, "int8", train_images[:200])) < 5_000_000
        True
    """
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        if calibration is None or not len(calibration):
            raise ImgclfError("int8 export needs calibration images (the run's training split is empty)")
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # The Keras export inside prints every variable; uint8 input warns that no input
            # statistics were given, which int8 calibration makes unnecessary.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            return converter.convert()
    except Exception as exc:  # an op TFLite lacks, say: one line, not a converter log
        text = str(exc).strip().splitlines()
        raise ImgclfError(f"TFLite conversion ({mode}) failed: {type(exc).__name__}: "
                          f"{text[0] if text else 'no detail'}") from None


def save_savedmodel(model, path: str | Path, class_names: list[str], record: dict) -> None:
    """Write a SavedModel whose ``serving_default`` maps ``image`` to ``probabilities``.

    Needs TensorFlow to load, not Keras. ``labels.txt`` and ``imgclf.json`` go in its assets.

    Args:
        model: the keras.Model.
        path: the SavedModel folder to write (empty or absent).
        class_names: one per output, in order.
        record: the JSON record (image size, format...).

    Example:
        >>> save_savedmodel(model, "export/saved_model", ["cat", "dog"], {"image_size": 96})
    """
    import tensorflow as tf
    size = int(model.input_shape[1])
    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the weights are saved
    serve = tf.function(lambda image: {"probabilities": model(image, training=False)},
                        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")])
    module.serve = serve
    with tempfile.TemporaryDirectory() as tmp:
        labels, info = Path(tmp) / "labels.txt", Path(tmp) / "imgclf.json"
        labels.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
        info.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        module.labels, module.record = tf.saved_model.Asset(str(labels)), tf.saved_model.Asset(str(info))
        tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
