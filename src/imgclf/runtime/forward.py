"""Compiled forward passes for frozen Keras models: LiteRT (XNNPACK) or a tf.function.

The fast path runs the frozen part of the network over every image once per view, and the test
set once more; on this kind of CPU LiteRT runs EfficientNet-Lite 1.7-1.9x faster than
TensorFlow. Conversions are cached on disk by a hash of what the model computes, since the
frozen bottom of a backbone is the same run after run.

Example:
    >>> f = compile_forward(bottom, choose_runtime("auto", 50_000))
    >>> f(np.zeros((3, 96, 96, 3), np.float32)).shape
    (3, 3, 3, 192)
"""
from __future__ import annotations

import numpy as np


def compile_forward(model, runtime: str = "tf", batch_size: int = 64, threads: int | None = None):
    """A fast function from float32 batches to the frozen model's outputs.

    "tflite" converts the model to TFLite and runs it under LiteRT's XNNPACK delegate, measured
    1.7-1.9x faster than TensorFlow on this kind of CPU for EfficientNet-Lite; batches are padded
    to ``batch_size`` so the interpreter is sized once. "tf" is a tf.function of the Keras model.

    Args:
        model: a frozen Keras model (bottom of the base, or base + pooling).
        runtime: "tf" or "tflite".
        batch_size: the largest batch it will be given.
        threads: interpreter threads; None for every core this process may run on
            (runtime.default_threads, as for exported models).

    Returns:
        A function ``f(x: float32 (B, ...)) -> np.ndarray``.

    Example:
        >>> f = compile_forward(bottom, "tflite")
        >>> f(np.zeros((3, 96, 96, 3), np.float32)).shape
        (3, 3, 3, 192)
    """
    import tensorflow as tf
    if runtime == "tf":
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    from imgclf.runtime.litert import LiteRTRuntime
    return LiteRTRuntime(tflite_bytes(model), threads, pad_to=batch_size, classifier=False)


def tflite_bytes(model) -> bytes:
    """The model converted to TFLite, cached under the user cache dir by ``model_key``: the
    frozen part of a backbone is the same run after run, and converting it costs about 2 s on two
    cores.

    Example:
        >>> len(tflite_bytes(bottom)) > 1000
        True
    """
    from imgclf.files import user_cache_dir, write_bytes_atomic
    from imgclf.runtime.litert import convert_frozen
    path = user_cache_dir() / "tflite" / f"{model_key(model)}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = convert_frozen(model)
    write_bytes_atomic(path, data)
    return data


def model_key(model) -> str:
    """A hash of what a Keras model computes: its structure and weights. Its name and the
    ``trainable`` flags are left out: they vary by process and by training phase (the frozen
    bottom is trainable while its caches are built, frozen when the test set is predicted).

    Example:
        >>> len(model_key(bottom))
        32
    """
    import hashlib
    import json
    config = _strip(model.get_config(), ("trainable",))
    config.pop("name", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:32]


def _strip(tree, keys: tuple):
    """A copy of a nested config without the given keys at any depth."""
    if isinstance(tree, dict):
        return {k: _strip(v, keys) for k, v in tree.items() if k not in keys}
    if isinstance(tree, (list, tuple)):
        return [_strip(v, keys) for v in tree]
    return tree


def choose_runtime(requested: str, count: int) -> str:
    """"tflite" for large jobs when LiteRT is installed (conversion costs a few seconds), else "tf".

    Example:
        >>> choose_runtime("auto", 100)
        'tf'
    """
    if requested != "auto":
        return requested
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tf"
    return "tflite" if count >= 2000 else "tf"
