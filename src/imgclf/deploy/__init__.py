"""The deployment stage: export a run to the formats people deploy, and load any of them back.

Owns: the one table of export formats (``formats``: one module per format family, each with
its converter and runtime), the exporter with its self-check (``export``), and ``load`` with the
``Classifier`` every caller predicts through (``predict``), batch prediction into files that
resume, shard and merge (``batch``), and Grad-CAM overlays of a run (``explain``). May import
every stage below it:
``imgclf.data``, ``imgclf.runtime``, ``imgclf.evaluation``, ``imgclf.record``.

Example:
    >>> from imgclf.deploy import export_run, load
    >>> result = export_run("runs/fashion", "tflite-int8")
    >>> load(result.path).predict_arrays(images).shape
    (8, 10)
"""
import importlib

# name -> module; imported on first use, so that loading a model (predict, serve) does not pull
# in the exporter's evaluation stack (scikit-learn, Matplotlib)
_PUBLIC = {"Classifier": "predict", "load": "predict", "export_run": "export", "Exporter": "export",
           "ExportResult": "export", "FORMATS": "formats", "ExportFormat": "formats", "get_format": "formats",
           "format_for": "formats", "explain": "explain"}
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"imgclf.deploy.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'imgclf.deploy' has no attribute {name!r}")
