"""The one table of export formats: every fact about a format lives in its row.

Each module in this package declares ``FORMATS``, a tuple of ``ExportFormat`` rows, with the
converter and the runtime the rows name; this file only collects them. ``imgclf export``, the
CLI's ``--format`` choices, ``imgclf.load`` and ``predict``/``serve`` read the table, so adding
a format is one new module here (plus its tests).

Example:
    >>> [f.name for f in FORMATS.values()]
    ['keras', 'savedmodel', 'tflite', 'tflite-dynamic', 'tflite-int8', 'onnx']
    >>> format_for(Path("model_int8.tflite")).name
    'tflite'
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imgclf.errors import ImgclfError


@dataclass
class ExportJob:
    """What a converter gets: the trained model, where to write, and what travels with it."""

    model: Any  # the trained keras.Model (raw 0-255 RGB in, probabilities out)
    path: Path  # the staged file or folder to write (renamed into place after the check)
    record: dict  # the imgclf record: format, image size, class names, input...
    class_names: list[str]
    calibration: np.ndarray | None  # uint8 training images, for formats with calibrated=True
    source: Path | None  # the run's model.keras; None when ``model`` differs from it (temperature folded in)


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Args:
        name: the ``--format`` value.
        file_name: its default name in ``RUN/export/``; its suffix is what ``load`` recognises.
        summary: one line for ``--help`` and listings.
        convert: ``convert(job: ExportJob)`` writes the model at ``job.path``.
        open: ``open(path, num_threads) -> imgclf.runtime.Runtime`` runs a written file.
        read_record: ``read_record(path, runtime) -> dict``: the imgclf record stored with the
            file ({} when there is none, e.g. a model imgclf did not write).
        input_dtype: what the graph takes (uint8 for full-integer models).
        calibrated: the converter needs calibration images (``job.calibration``).
        is_dir: the model is a folder (SavedModel).
        tensorflow: running the file needs TensorFlow (predict and serve skip importing it
            for formats that do not).
        rank: the order of ``--format all`` and of listings; the lowest-ranked format with a
            suffix is the one ``load`` opens files of that suffix with.
    """

    name: str
    file_name: str
    summary: str
    convert: Callable[[ExportJob], None]
    open: Callable[[Path, int | None], Any]
    read_record: Callable[[Path, Any], dict]
    input_dtype: str = "float32"
    calibrated: bool = False
    is_dir: bool = False
    tensorflow: bool = True
    rank: int = 0

    @property
    def suffix(self) -> str:
        """The file ending a model of this format must have ('' for a folder)."""
        return "" if self.is_dir else Path(self.file_name).suffix


def _collect() -> dict[str, ExportFormat]:
    rows = []
    for module in pkgutil.iter_modules(__path__):
        rows += importlib.import_module(f"{__name__}.{module.name}").FORMATS
    return {row.name: row for row in sorted(rows, key=lambda row: row.rank)}


FORMATS = _collect()


def get_format(name: str) -> ExportFormat:
    """The row of ``name``; a one-line error listing the valid names otherwise.

    Example:
        >>> get_format("tflite-int8").input_dtype
        'uint8'
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise ImgclfError(f"unknown export format '{name}' (valid: {', '.join(FORMATS)})") from None


def format_for(path: Path) -> ExportFormat:
    """The format ``load`` opens ``path`` with: a folder holding ``saved_model.pb`` is a
    SavedModel, a file goes by its suffix; a one-line error for anything else.

    Example:
        >>> format_for(Path("model.onnx")).name
        'onnx'
    """
    for row in FORMATS.values():
        if row.is_dir and path.is_dir() and (path / "saved_model.pb").is_file():
            return row
        if not row.is_dir and path.is_file() and path.suffix.lower() == row.suffix:
            return row
    suffixes = sorted({row.suffix for row in FORMATS.values() if row.suffix})
    raise ImgclfError(f"{path}: unknown model format '{path.suffix or path.name}' (expected a run directory, "
                      f"a {', '.join(suffixes)} file, or a SavedModel folder)")


def runs_without_tensorflow(path: str | Path) -> bool:
    """Whether the model at ``path`` is a file of a format that runs without TensorFlow.

    Example:
        >>> runs_without_tensorflow("export/model_int8.tflite"), runs_without_tensorflow("runs/x")
        (True, False)
    """
    suffix = Path(path).suffix.lower()
    return any(not row.is_dir and row.suffix == suffix and not row.tensorflow for row in FORMATS.values())


def family(row: ExportFormat) -> list[str]:
    """The formats sharing ``row``'s kind of file (tflite, tflite-dynamic, tflite-int8), so a
    record inside the file may name which of them it is.

    Example:
        >>> family(get_format("tflite"))
        ['tflite', 'tflite-dynamic', 'tflite-int8']
    """
    return [other.name for other in FORMATS.values() if other.suffix == row.suffix and other.is_dir == row.is_dir]
