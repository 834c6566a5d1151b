"""The ``keras`` export: the trained Keras model file itself, loaded in Keras' safe mode.

Example:
    >>> FORMATS[0].file_name
    'model.keras'
"""
from __future__ import annotations

import shutil
from pathlib import Path

from imgclf.deploy.formats import ExportFormat, ExportJob
from imgclf.files import read_json
from imgclf.runtime import KerasRuntime


def _convert(job: ExportJob) -> None:
    if job.source is None:  # the model was changed (temperature folded in): save it
        job.model.save(job.path)
    else:
        shutil.copyfile(job.source, job.path)


def _open(path: Path, num_threads: int | None) -> KerasRuntime:
    return KerasRuntime.from_file(path)


def _read_record(path: Path, runtime) -> dict:
    return read_json(path.with_name(path.name + ".json"))  # the sidecar imgclf export writes


FORMATS = (ExportFormat("keras", "model.keras", "the trained Keras model", _convert, _open, _read_record,
                        rank=0),)
