"""TFLite: converting a Keras model, running a ``.tflite`` under LiteRT, and the imgclf record
that travels inside the file.

One interpreter set-up serves both callers: the feature cache's frozen parts (any single input
and output, batches padded to one planned size) and exported classifiers (raw pixels in,
probabilities out, the batch resized to each call's). The record (class names, image size...)
is a TFLite metadata entry named ``imgclf``, so a model file copied alone still knows its labels.

Example:
    >>> runtime = LiteRTRuntime("runs/fashion/export/model_int8.tflite", num_threads=2)
    >>> runtime(np.zeros((1, 96, 96, 3), np.uint8)).shape
    (1, 10)
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from imgclf.console import quiet_native_stderr
from imgclf.errors import ImgclfError, first_line
from imgclf.runtime.runtimes import Runtime, default_threads

DEFAULT_MAX_BYTES = 2**30  # a single-image model needing more is corrupt or hostile
MAX_BYTES_ENV = "IMGCLF_MAX_MODEL_BYTES"
METADATA_NAME = "imgclf"  # the TFLite metadata entry that holds the JSON record


class LiteRTRuntime(Runtime):
    """A TFLite model in the LiteRT interpreter (XNNPACK, multi-threaded).

    With ``pad_to`` the interpreter is planned once for that batch and every call is run in
    chunks of it, the last one padded (re-planning costs more than the padding); otherwise the
    input is resized to each batch's size (only when the size changes). Quantised inputs and
    outputs are converted with the tensors' own scale and zero point, so callers pass 0-255
    pixels and get float outputs.

    Args:
        model: a ``.tflite`` path, or the model's bytes.
        num_threads: interpreter threads (default: every CPU this process may use).
        pad_to: plan for this batch size and pad to it (see above); None to resize per batch.
        classifier: check that it is an image classifier, (N, S, S, 3) -> (N, classes).

    Example:
        >>> forward = LiteRTRuntime(tflite_bytes(bottom), pad_to=64, classifier=False)
        >>> forward(np.zeros((3, 96, 96, 3), np.float32)).shape
        (3, 3, 3, 192)
    """

    format = "tflite"

    def __init__(self, model: str | Path | bytes, num_threads: int | None = None, *,
                 pad_to: int | None = None, classifier: bool = True):
        from ai_edge_litert.interpreter import Interpreter
        self.path = None if isinstance(model, bytes) else Path(model)
        self._source = source = self.path or "TFLite model"
        if self.path is not None:  # a file may come from anywhere: first run it where a crash is harmless
            from imgclf.runtime.trial import trial_run
            trial_run(self.path)
        try:
            kwargs = {"model_content": model} if self.path is None else {"model_path": str(model)}
            with quiet_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self._interpreter = Interpreter(**kwargs, num_threads=num_threads or default_threads())
            inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
            needed = tensor_bytes(self._interpreter)
        except Exception as exc:  # not a flatbuffer, truncated, unknown ops, undecodable names
            raise ImgclfError(f"{source}: not a valid TFLite model ({first_line(exc)})") from None
        if needed > max_model_bytes():
            raise ImgclfError(f"{source}: its tensors would need {needed / 2**30:.1f} GiB, more than the "
                              f"limit of {max_model_bytes() / 2**30:.1f} GiB ({MAX_BYTES_ENV}); refusing a "
                              f"corrupt or hostile model")
        if len(inputs) != 1 or len(outputs) != 1:
            raise ImgclfError(f"{source}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        if classifier:
            self.check_classifier(source, list(self._in["shape_signature"]), list(self._out["shape"]))
        self.input_dtype = np.dtype(self._in["dtype"])
        self._batch = int(self._in["shape"][0])
        self._fixed_batch = int(self._in["shape_signature"][0]) > 0  # a foreign model may fix it
        self._allocated = False
        self._lock = threading.Lock()  # one interpreter, one call at a time (it is not thread-safe)
        if pad_to:
            self._resize(pad_to)
            self._fixed_batch = True

    def __call__(self, batch):
        batch = np.asarray(batch)
        if self._fixed_batch and len(batch) != self._batch:
            return self._in_fixed_batches(batch)
        with self._lock:
            if len(batch) != self._batch:
                self._resize(len(batch))
            try:
                if not self._allocated:
                    with quiet_native_stderr():  # XNNPACK announces itself when it is applied
                        self._interpreter.allocate_tensors()
                    self._allocated = True
                self._interpreter.set_tensor(self._in["index"], self._to_input(batch))
                self._interpreter.invoke()
                out = self._interpreter.get_tensor(self._out["index"])
            except (ValueError, RuntimeError) as exc:  # a corrupt graph the interpreter accepted
                raise ImgclfError(f"{self._source}: cannot run this TFLite model ({first_line(exc)})") from None
        return _dequantize(out, self._out["quantization"])

    def _resize(self, batch_size: int) -> None:
        self._interpreter.resize_tensor_input(self._in["index"], [batch_size, *self._in["shape"][1:]])
        self._batch, self._allocated = batch_size, False

    def _in_fixed_batches(self, batch):
        """Run a batch through a model planned for another batch size: chunks of that size,
        the last one padded."""
        size, out = self._batch, []
        for i in range(0, len(batch), size):
            chunk = batch[i:i + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out.append(self(padded)[:len(chunk)])
        if out:
            return np.concatenate(out)
        return np.zeros((0, *self._out["shape"][1:]), np.float32)

    def _to_input(self, batch):
        if self.input_dtype == np.float32:
            return batch.astype(np.float32, copy=False)
        scale, zero = self._in["quantization"]
        if batch.dtype == self.input_dtype and (scale, zero) == (1.0, 0):
            return batch  # raw pixels are the quantised input already: no copy
        info = np.iinfo(self.input_dtype)
        q = np.round(batch.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def metadata(self) -> dict | None:
        """The imgclf record inside the file, or None (a model imgclf did not write)."""
        return read_tflite_metadata(self.path.read_bytes()) if self.path else None


def max_model_bytes() -> int:
    """The most memory a model's tensors may claim (``$IMGCLF_MAX_MODEL_BYTES``, default 1 GiB),
    read now: one changed byte in a shape can ask for gigabytes.

    Example:
        >>> max_model_bytes()
        1073741824
    """
    try:
        return int(os.environ.get(MAX_BYTES_ENV, "")) or DEFAULT_MAX_BYTES
    except ValueError:
        return DEFAULT_MAX_BYTES


def tensor_bytes(interpreter) -> int:
    """Bytes of every tensor at its planned shape, read from the flatbuffer before anything
    is allocated (a bound on what ``allocate_tensors`` asks for; the arena reuses memory).

    Example:
        >>> tensor_bytes(Interpreter(model_path="model.tflite"))
        31457280
    """
    total = 0
    for detail in interpreter.get_tensor_details():
        count = 1
        for dim in detail["shape"]:
            count *= max(int(dim), 1)
        total += count * np.dtype(detail["dtype"]).itemsize
    return total


def _dequantize(out: np.ndarray, quantization) -> np.ndarray:
    if out.dtype == np.float32:
        return out.copy()
    scale, zero = quantization
    return (out.astype(np.float32) - zero) * scale


def convert_tflite(model, mode: str = "float", calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model to TFLite: float32, dynamic-range or full-integer quantised.

    Args:
        model: the keras.Model (raw 0-255 RGB in, probabilities out; or any frozen part).
        mode: "float", "dynamic" (int8 weights, float activations) or "int8" (everything int8,
            ranges from ``calibration``; uint8 input so raw pixels go in as they are, float32
            outputs).
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
    return _convert(lambda: converter, f"TFLite conversion ({mode})")


def convert_frozen(model) -> bytes:
    """A float TFLite conversion of a single-input Keras model through a frozen graph: its
    forward traced once and its variables folded into constants before converting. The same
    arithmetic as ``convert_tflite(model, "float")`` (outputs equal bit for bit on
    EfficientNet-Lite0 at 96 px) in about a third of the time (2.0 s against 5.8 s on two
    cores, 2026-12-06): ``from_keras_model`` first exports a SavedModel. Used for the feature
    cache's frozen parts, which no one loads by signature; exports keep ``convert_tflite``.
    Freezing is not optional: converted with its variables, the function outputs NaN.

    Example:
        >>> len(convert_frozen(bottom)) > 1000
        True
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)

    def frozen():
        traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        return tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(traced)])
    return _convert(frozen, "TFLite conversion")


def _convert(make_converter, what: str) -> bytes:
    """``make_converter().convert()`` without its log on stdout and stderr; a failure of either
    is one line naming ``what``."""
    absl = logging.getLogger("absl")
    level = absl.level
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), quiet_native_stderr():
            # The Keras export inside prints every variable; uint8 input warns that no input
            # statistics were given, which int8 calibration makes unnecessary; a frozen concrete
            # function warns (absl, Python logging) that it has no trackable object, which is
            # the point of freezing it (convert_frozen).
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            absl.setLevel(logging.ERROR)
            return make_converter().convert()
    except Exception as exc:  # an op TFLite lacks, say: one line, not a converter log
        raise ImgclfError(f"{what} failed: {first_line(exc)}") from None
    finally:
        absl.setLevel(level)


def read_tflite_metadata(data: bytes) -> dict | None:
    """The imgclf JSON record stored as TFLite metadata, or None if there is none.

    Call it only on bytes the LiteRT interpreter has accepted: the flatbuffer reader does not
    verify its input.

    Example:
        >>> read_tflite_metadata(Path("model.tflite").read_bytes())["class_names"][:2]
        ['ankle_boot', 'bag']
    """
    from ai_edge_litert.schema_py_generated import Model
    try:
        model = Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME.encode():
                record = json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()).decode("utf-8"))
                return record if isinstance(record, dict) else None
    except Exception:  # an odd buffer in someone else's model: treat it as having no record
        return None
    return None


def add_tflite_metadata(data: bytes, record: dict) -> bytes:
    """Return the model ``data`` with ``record`` (JSON) added as the ``imgclf`` metadata entry.

    Args:
        data: a converted .tflite model.
        record: JSON-serialisable dict (class names, image size, format...).

    Returns:
        The new model bytes; the graph and weights are unchanged.

    Example:
        >>> data = add_tflite_metadata(data, {"class_names": ["cat", "dog"], "image_size": 96})
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(record).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
