"""Inference back-ends behind ``Classifier``: a Keras model, a SavedModel, a ``.tflite`` under LiteRT.

Every back-end is a callable ``runtime(batch) -> float32 (N, num_classes)`` that takes raw 0-255
RGB (uint8 or float) at the model's size, plus an ``image_size`` and a ``format`` name. This
module also reads and writes the imgclf record (class names, image size...) that travels inside
a ``.tflite`` file as a TFLite metadata entry, so a model file copied alone still knows its labels.

Example:
    >>> runtime = LiteRTRuntime("runs/fashion/export/model_int8.tflite", num_threads=2)
    >>> runtime(np.zeros((1, 96, 96, 3), np.uint8)).shape
    (1, 10)
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError

METADATA_NAME = "imgclf"  # the TFLite metadata entry that holds the JSON record


class Runtime:
    """Base of the back-ends; ``Classifier`` calls any instance of it directly."""

    format = "?"
    image_size = 0
    num_classes = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def default_threads() -> int:
    """Threads for LiteRT: the CPUs this process may run on.

    Example:
        >>> default_threads()
        2
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class KerasRuntime(Runtime):
    """A Keras model called through one ``tf.function`` (much less overhead than ``model.predict``)."""

    format = "keras"

    def __init__(self, model):
        self.model = model
        self.image_size = int(model.input_shape[1])
        self.num_classes = int(model.output_shape[-1])
        self._compiled = None

    def __call__(self, batch):
        if self._compiled is None:
            import tensorflow as tf
            self._compiled = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        return np.asarray(self._compiled(np.asarray(batch, np.float32)))


class SavedModelRuntime(Runtime):
    """A SavedModel's ``serving_default`` signature (TensorFlow only; Keras not needed)."""

    format = "savedmodel"

    def __init__(self, path: str | Path):
        import tensorflow as tf
        try:
            self._loaded = tf.saved_model.load(str(path))
            self._fn = self._loaded.signatures["serving_default"]
        except Exception as exc:  # corrupt protobuf, missing variables, no signature: one line
            raise ImgclfError(f"{path}: cannot load SavedModel ({_first_line(exc)})") from None
        inputs = self._fn.structured_input_signature[1]
        if len(inputs) != 1 or len(self._fn.structured_outputs) != 1:
            raise ImgclfError(f"{path}: not an image classifier (expected one input and one output)")
        (self._input, spec), = inputs.items()
        self._output, out_spec = next(iter(self._fn.structured_outputs.items()))
        self.image_size = _check_image_shape(path, list(spec.shape))
        self.num_classes = int(out_spec.shape[-1] or 0)

    def __call__(self, batch):
        import tensorflow as tf
        out = self._fn(**{self._input: tf.constant(np.asarray(batch, np.float32))})
        return out[self._output].numpy()


class LiteRTRuntime(Runtime):
    """A ``.tflite`` model in the LiteRT interpreter (XNNPACK, multi-threaded).

    The input tensor is resized to each batch's size (only when the size changes, since that
    re-plans the graph); quantised inputs and outputs are converted with the tensors' own
    scale and zero point, so callers always pass 0-255 pixels and get float probabilities.
    """

    format = "tflite"

    def __init__(self, path: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter
        self.path = Path(path)
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads or default_threads())
        except (ValueError, RuntimeError) as exc:  # not a flatbuffer, truncated, unknown ops
            raise ImgclfError(f"{path}: not a valid TFLite model ({_first_line(exc)})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(outputs[0]["shape"]) != 2:
            raise ImgclfError(f"{path}: not an image classifier (expected one image input and one "
                              f"(N, classes) output)")
        self._in, self._out = inputs[0], outputs[0]
        self.image_size = _check_image_shape(path, list(self._in["shape_signature"]))
        self.num_classes = int(self._out["shape"][1])
        self.input_dtype = np.dtype(self._in["dtype"])
        self._batch = int(self._in["shape"][0])
        self._fixed_batch = int(self._in["shape_signature"][0]) > 0  # a foreign model may fix it
        self._allocated = False
        self._lock = threading.Lock()  # one interpreter, one call at a time (it is not thread-safe)

    def __call__(self, batch):
        batch = np.asarray(batch)
        if self._fixed_batch and len(batch) != self._batch:
            return self._in_fixed_batches(batch)
        with self._lock:
            if len(batch) != self._batch:
                self._interpreter.resize_tensor_input(self._in["index"], [len(batch), *self._in["shape"][1:]])
                self._batch = len(batch)
                self._allocated = False
            if not self._allocated:
                self._interpreter.allocate_tensors()
                self._allocated = True
            self._interpreter.set_tensor(self._in["index"], self._to_input(batch))
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._out["index"])
        return _dequantize(out, self._out["quantization"])

    def _in_fixed_batches(self, batch):
        """Run a model whose batch size is fixed: chunks of that size, the last one padded."""
        size, out = self._batch, []
        for i in range(0, len(batch), size):
            chunk = batch[i:i + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out.append(self(padded)[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

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
        return read_tflite_metadata(self.path.read_bytes())


def _dequantize(out: np.ndarray, quantization) -> np.ndarray:
    if out.dtype == np.float32:
        return out.copy()
    scale, zero = quantization
    return (out.astype(np.float32) - zero) * scale


def _check_image_shape(path, shape: list) -> int:
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or not shape[1] or shape[1] < 0:
        raise ImgclfError(f"{path}: not an image classifier (input shape {shape}, expected (N, S, S, 3))")
    return int(shape[1])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"[:300]


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
