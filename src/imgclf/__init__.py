"""imgclf: train, evaluate and ship image classifiers by transfer learning.

The public API is imported lazily so that ``import imgclf`` stays fast and changes nothing in
the process (no TensorFlow import, no thread or logging settings).

Example:
    >>> import imgclf
    >>> result = imgclf.train("photos/", epochs=3)          # doctest: +SKIP
    >>> imgclf.load(result.run_dir).predict(["cat.jpg"])    # doctest: +SKIP
"""
__version__ = "0.1.0"

__all__ = ["train", "evaluate_run", "load", "ImgclfError", "__version__"]


def __getattr__(name):
    if name == "train":
        from imgclf.workflow import train
        return train
    if name == "evaluate_run":  # not "evaluate": that is the imgclf.evaluate module
        from imgclf.workflow import evaluate_run
        return evaluate_run
    if name == "load":
        from imgclf.predict import load
        return load
    if name == "ImgclfError":
        from imgclf.errors import ImgclfError
        return ImgclfError
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
