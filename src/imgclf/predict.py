"""Load a trained run or an exported model and predict on image files or arrays.

``load()`` takes a run directory, a ``.keras`` file, a SavedModel folder or a ``.tflite`` file
(run by the LiteRT interpreter) and returns the same ``Classifier`` for each.

Example:
    >>> clf = load("runs/fashion/export/model_int8.tflite")
    >>> for row in clf.predict_paths(["shoe.png"], top_k=3):
    ...     print(row["path"], row["top"][0])
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from imgclf.config import load_config
from imgclf.errors import ImgclfError
from imgclf.images import BadImage, read_image, resize
from imgclf.runs import check_complete, read_labels
from imgclf.runtimes import KerasRuntime, LiteRTRuntime, Runtime, SavedModelRuntime


@dataclass
class Classifier:
    """A trained model with its class names and input size; the one interface for predicting.

    ``model`` is a keras.Model or a runtimes.Runtime (SavedModel, LiteRT); ``format`` names
    which (keras, savedmodel, tflite, tflite-dynamic, tflite-int8) and ``info`` holds the
    exported model's record (backbone, input type...) when there is one.
    """

    model: object  # keras.Model or runtimes.Runtime
    class_names: list[str]
    image_size: int
    source: Path
    max_pixels: int = 64_000_000
    format: str = "keras"
    info: dict = field(default_factory=dict)

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for RGB images already at the model's size.

        Args:
            images: (N, S, S, 3) uint8 or float 0-255 RGB: an array, or an array-like read by
                slices (data.ResizedImages).
            batch_size: images per forward pass.

        Returns:
            float32 (N, num_classes) probabilities.

        Example:
            >>> clf.predict_arrays(np.zeros((2, 96, 96, 3), np.uint8)).shape
            (2, 10)
        """
        if not hasattr(images, "shape"):  # arrays, memmaps and data.ResizedImages are read by batch
            images = np.asarray(images)
        if len(images.shape) != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ImgclfError(f"expected images of shape (N, {self.image_size}, {self.image_size}, 3), "
                              f"got {images.shape}")
        # Batches go to the runtime as given: a uint8 TFLite input takes raw pixels without a copy.
        out = [np.asarray(self._forward(images[i:i + batch_size]), np.float32)
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _forward(self, batch):
        if not hasattr(self, "_runtime"):
            self._runtime = self.model if isinstance(self.model, Runtime) else KerasRuntime(self.model)
        return self._runtime(batch)

    def predict_paths(self, paths: Iterable[str | Path], top_k: int = 5, batch_size: int = 64
                      ) -> Iterator[dict]:
        """Stream predictions over image files, one dict per file, in batches.

        Args:
            paths: image files (any number; read lazily, batch by batch).
            top_k: how many classes to return per image.
            batch_size: images decoded and predicted together.

        Returns:
            An iterator of ``{"path", "top": [(class, prob), ...], "error": None}``; a file that
            cannot be read gives ``{"path", "top": [], "error": reason}`` instead of stopping.

        Example:
            >>> next(clf.predict_paths(["cat.jpg"]))["top"][0]
            ('cat', 0.97)
        """
        k = max(1, min(top_k, len(self.class_names)))
        batch: list[tuple[str, np.ndarray]] = []
        for path in paths:
            try:
                batch.append((str(path), resize(read_image(path, self.max_pixels), self.image_size)))
            except BadImage as exc:
                yield {"path": str(path), "top": [], "error": str(exc)}
                continue
            if len(batch) == batch_size:
                yield from self._emit(batch, k)
                batch = []
        if batch:
            yield from self._emit(batch, k)

    def _emit(self, batch, k):
        probs = self.predict_arrays(np.stack([image for _, image in batch]))
        for (path, _), p in zip(batch, probs):
            order = np.argsort(-p)[:k]
            yield {"path": path, "top": [(self.class_names[i], float(p[i])) for i in order], "error": None}


def load(source: str | Path, num_threads: int | None = None) -> Classifier:
    """Load a finished run or an exported model for prediction, behind one interface.

    Args:
        source: a run directory (or its ``model.keras``); or an exported model: a ``.keras``
            file, a SavedModel folder or a ``.tflite`` file (see ``imgclf export``). Class names
            come from the run, the ``.tflite`` file's metadata, the SavedModel's assets, or a
            ``labels.txt`` beside the file.
        num_threads: LiteRT threads for a ``.tflite`` (default: every CPU this process may use).

    Returns:
        A Classifier; ``clf.format`` says which kind of model it runs.

    Raises:
        ImgclfError: one line naming the file, for anything missing, corrupt or foreign.

    Example:
        >>> load("runs/fashion").class_names[:2]
        ['ankle_boot', 'bag']
        >>> load("runs/fashion/export/model_int8.tflite").format
        'tflite-int8'
    """
    source = Path(source)
    if source.is_dir():
        if (source / "saved_model.pb").is_file():
            return _load_savedmodel(source)
        if not (source / "model.keras").is_file():
            raise ImgclfError(f"{source}: neither a run directory (no model.keras) nor a SavedModel "
                              f"(no saved_model.pb)")
        return _load_run(source)
    if not source.is_file():
        raise ImgclfError(f"{source}: no such run directory or model file")
    suffix = source.suffix.lower()
    if suffix == ".keras":
        # a model.keras inside a run directory is the run (and must be complete)
        in_run = (source.parent / "config.yaml").is_file() and source.name == "model.keras"
        return _load_run(source.parent) if in_run else _load_keras_file(source)
    if suffix == ".tflite":
        return _load_tflite(source, num_threads)
    raise ImgclfError(f"{source}: unknown model format '{suffix or source.name}' (expected a run directory, "
                      f"a .keras or .tflite file, or a SavedModel folder)")


def load_keras_model(path: Path):
    """A saved Keras model, with imgclf's custom layers registered; one-line ImgclfError if it fails.

    Example:
        >>> load_keras_model(Path("runs/fashion/model.keras")).input_shape
        (None, 96, 96, 3)
    """
    import keras
    import imgclf.backbones.layers  # noqa: F401  registers the custom layers saved models refer to
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise ImgclfError(f"{path}: cannot load model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


def _load_run(run_dir: Path) -> Classifier:
    check_complete(run_dir)
    model = load_keras_model(run_dir / "model.keras")
    class_names = read_labels(run_dir)
    _check_classes(run_dir, model.output_shape[-1], class_names)
    config = load_config(run_dir / "config.yaml")
    return Classifier(model, class_names, int(model.input_shape[1]), run_dir, config.data.max_pixels,
                      info={"backbone": config.model.backbone})


def _load_keras_file(path: Path) -> Classifier:
    runtime = KerasRuntime(load_keras_model(path))
    record = _read_record(path.with_name(path.name + ".json"))  # written by imgclf export
    return _classifier(runtime, path, record, path.parent / "labels.txt", "keras")


def _load_savedmodel(path: Path) -> Classifier:
    runtime = SavedModelRuntime(path)
    record = _read_record(path / "assets" / "imgclf.json")
    return _classifier(runtime, path, record, path / "assets" / "labels.txt", "savedmodel")


def _load_tflite(path: Path, num_threads: int | None) -> Classifier:
    runtime = LiteRTRuntime(path, num_threads)
    record = runtime.metadata() or {}
    runtime.format = record.get("format", "tflite")
    return _classifier(runtime, path, record, path.parent / "labels.txt", runtime.format)


def _classifier(runtime: Runtime, source: Path, record: dict, labels_file: Path, fmt: str) -> Classifier:
    """Class names from the model's own record, else from the labels file beside it."""
    names = record.get("class_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        names = _read_labels_file(source, labels_file)
    _check_classes(source, runtime.num_classes, names)
    return Classifier(runtime, names, runtime.image_size, source, format=fmt, info=record)


def _read_labels_file(source: Path, labels_file: Path) -> list[str]:
    try:
        names = [line for line in labels_file.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, UnicodeDecodeError):
        names = []
    if not names:
        raise ImgclfError(f"{source}: no class names (no imgclf metadata and no readable {labels_file.name} "
                          f"beside it); export models with `imgclf export`")
    return names


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _check_classes(source: Path, num_outputs: int, class_names: list[str]) -> None:
    if num_outputs != len(class_names):
        raise ImgclfError(f"{source}: {len(class_names)} class names but the model outputs {num_outputs}")
