"""imgclf: train, evaluate and ship image classifiers by transfer learning.

The public API is imported lazily so that ``import imgclf`` stays fast and changes nothing in
the process (no TensorFlow import, no thread or logging settings).

The package reads as the pipeline: ``data`` -> ``backbones`` -> ``runtime`` -> ``training`` ->
``evaluation`` -> ``deploy`` -> ``serve``; ``workflow`` (the API below) and ``cli`` join them,
``record`` owns every file of a run directory, and ``config``, ``errors``, ``files``,
``ranking`` and ``console`` are shared by all. See docs/DESIGN.md.

Example:
    >>> import imgclf
    >>> result = imgclf.train("photos/", epochs=3)                  # doctest: +SKIP
    >>> imgclf.load(result.run_dir).predict_paths(["cat.jpg"])      # doctest: +SKIP
"""
__version__ = "0.1.0"

__all__ = ["train", "evaluate_run", "load", "export_run", "explain", "ImgclfError", "__version__"]

_PUBLIC = {"train": "imgclf.workflow", "evaluate_run": "imgclf.workflow", "load": "imgclf.deploy.predict",
           "export_run": "imgclf.deploy.export", "explain": "imgclf.deploy.explain", "ImgclfError": "imgclf.errors"}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
