"""The TFLite exports, run by the LiteRT interpreter (XNNPACK) on any CPU: float32,
dynamic-range quantised (int8 weights, float activations) and full integer (calibrated on
training images; uint8 input, so raw pixels go in as they are). The record travels inside the
file as TFLite metadata.

Example:
    >>> [row.name for row in FORMATS]
    ['tflite', 'tflite-dynamic', 'tflite-int8']
"""
from __future__ import annotations

from pathlib import Path

from imgclf.deploy.formats import ExportFormat, ExportJob
from imgclf.runtime import LiteRTRuntime, add_tflite_metadata, convert_tflite


def _converter(mode: str):
    def convert(job: ExportJob) -> None:
        data = convert_tflite(job.model, mode, job.calibration)
        job.path.write_bytes(add_tflite_metadata(data, job.record))
    return convert


def _open(path: Path, num_threads: int | None) -> LiteRTRuntime:
    return LiteRTRuntime(path, num_threads)


def _read_record(path: Path, runtime: LiteRTRuntime) -> dict:
    return runtime.metadata() or {}


# Every row is judged by its paired accuracy change on the run's test split (imgclf.deploy.export).
FORMATS = (
    ExportFormat("tflite", "model.tflite", "float32 TFLite", _converter("float"), _open, _read_record, tensorflow=False,
                 rank=20),
    ExportFormat("tflite-dynamic", "model_dynamic.tflite", "TFLite with int8 weights, float activations",
                 _converter("dynamic"), _open, _read_record, tensorflow=False, rank=21),
    ExportFormat("tflite-int8", "model_int8.tflite", "full-integer TFLite, uint8 input (raw pixels)",
                 _converter("int8"), _open, _read_record, input_dtype="uint8",
                 calibrated=True, tensorflow=False, rank=22),
)
