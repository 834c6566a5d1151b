"""The ``onnx`` export: an ONNX graph (opset 17, converted by tf2onnx), run by ONNX Runtime on
the CPU; ``image`` float32 (N, S, S, 3) 0-255 RGB -> probabilities. The imgclf record travels
inside the file as a metadata property named ``imgclf``, so a copied file keeps its labels.
Loading an ONNX file runs no code from it.

Example:
    >>> FORMATS[0].file_name
    'model.onnx'
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from imgclf.deploy.formats import ExportFormat, ExportJob
from imgclf.errors import ImgclfError, first_line
from imgclf.runtime import Runtime, default_threads

OPSET = 17  # ONNX Runtime 1.16 and newer run it; tf2onnx converts every op EfficientNet-Lite uses
METADATA_KEY = "imgclf"


def convert_onnx(job: ExportJob) -> None:
    """Convert the Keras model to ONNX with a dynamic batch, and store the record inside.

    Example:
        >>> convert_onnx(ExportJob(model, Path("export/model.onnx"), record, names, None, src))
    """
    import tensorflow as tf
    level_before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    import tf2onnx.convert  # it sets TF_CPP_MIN_LOG_LEVEL=3 for the whole process: put back below
    _restore_env("TF_CPP_MIN_LOG_LEVEL", level_before)
    size = int(job.model.input_shape[1])
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    logger = logging.getLogger("tf2onnx")
    level, logger.level = logger.level, logging.ERROR  # it logs every rewrite at INFO
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            proto, _ = tf2onnx.convert.from_keras(job.model, input_signature=spec, opset=OPSET)
    except Exception as exc:  # an op tf2onnx lacks: one line, not a converter log
        raise ImgclfError(f"ONNX conversion failed: {first_line(exc)}") from None
    finally:
        logger.level = level
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"  # tf2onnx names it unk__611
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(job.record)
    job.path.write_bytes(proto.SerializeToString())


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class OnnxRuntime(Runtime):
    """An ONNX classifier in ONNX Runtime (CPU), one input (N, S, S, 3) to (N, classes).

    Example:
        >>> OnnxRuntime("export/model.onnx")(np.zeros((2, 96, 96, 3), np.uint8)).shape
        (2, 10)
    """

    format = "onnx"

    def __init__(self, path: str | Path, num_threads: int | None = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = num_threads or default_threads(), 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # not protobuf, truncated, unknown ops: one line
            raise ImgclfError(f"{path}: not a valid ONNX model ({first_line(exc)})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ImgclfError(f"{path}: not an image classifier (expected one input and one output)")
        self._input = inputs[0].name
        self.check_classifier(path, [d if isinstance(d, int) else -1 for d in inputs[0].shape],
                              [d if isinstance(d, int) else None for d in outputs[0].shape])

    def __call__(self, batch):  # ONNX Runtime sessions may be run from several threads at once
        return self._session.run(None, {self._input: np.asarray(batch, np.float32)})[0]

    def record(self) -> dict:
        """The imgclf record stored in the file's metadata, or {}."""
        try:
            record = json.loads(self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}


def _open(path: Path, num_threads: int | None) -> OnnxRuntime:
    return OnnxRuntime(path, num_threads)


def _read_record(path: Path, runtime: OnnxRuntime) -> dict:
    return runtime.record()


FORMATS = (ExportFormat("onnx", "model.onnx", "ONNX (opset 17) for ONNX Runtime and other ONNX engines",
                        convert_onnx, _open, _read_record, tensorflow=False, rank=30),)
