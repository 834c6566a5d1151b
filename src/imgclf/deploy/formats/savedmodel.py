"""The ``savedmodel`` export: TensorFlow's SavedModel, ``serving_default``: ``image`` float32
(N, S, S, 3) -> ``probabilities``; loads without Keras (TF Serving too). Its labels and record
go into the SavedModel's assets. Loading a SavedModel runs its graph: trust its source.

Example:
    >>> FORMATS[0].is_dir
    True
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from imgclf.deploy.formats import ExportFormat, ExportJob
from imgclf.files import read_json
from imgclf.files import LABELS_FILE, load_labels, save_labels
from imgclf.runtime import SavedModelRuntime

RECORD_ASSET = "imgclf.json"


def save_savedmodel(job: ExportJob) -> None:
    """Write a SavedModel whose ``serving_default`` maps ``image`` to ``probabilities``, with
    ``labels.txt`` and the record in its assets.

    Example:
        >>> save_savedmodel(ExportJob(model, Path("export/saved_model"), record, names, None, src))
    """
    import tensorflow as tf
    model = job.model
    size = int(model.input_shape[1])
    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the weights are saved
    serve = tf.function(lambda image: {"probabilities": model(image, training=False)},
                        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")])
    module.serve = serve
    with tempfile.TemporaryDirectory() as tmp:
        labels = save_labels(tmp, job.class_names)
        info = Path(tmp) / RECORD_ASSET
        info.write_text(json.dumps(job.record, indent=2) + "\n", encoding="utf-8")
        module.labels, module.record = tf.saved_model.Asset(str(labels)), tf.saved_model.Asset(str(info))
        tf.saved_model.save(module, str(job.path), signatures={"serving_default": serve})


def _open(path: Path, num_threads: int | None) -> SavedModelRuntime:
    return SavedModelRuntime(path)


def _read_record(path: Path, runtime) -> dict:
    record = read_json(path / "assets" / RECORD_ASSET)
    names = load_labels(path / "assets" / LABELS_FILE)
    if names and not record.get("class_names"):
        record["class_names"] = names
    return record


FORMATS = (ExportFormat("savedmodel", "saved_model", "TensorFlow SavedModel (serving_default: image -> "
                        "probabilities)", save_savedmodel, _open, _read_record, is_dir=True, rank=10),)
