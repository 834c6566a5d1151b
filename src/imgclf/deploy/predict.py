"""Load a trained run or an exported model and predict on image files or arrays.

``load()`` takes a run directory or any exported model the format table knows (a ``.keras``,
``.tflite`` or ``.onnx`` file, a SavedModel folder) and returns the same ``Classifier`` for each.

Example:
    >>> clf = load("runs/fashion/export/model_int8.tflite")
    >>> for row in clf.predict_paths(["shoe.png"], top_k=3):
    ...     print(row["path"], row["top"][0])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from imgclf.data.images import BadImage, read_image, resize
from imgclf.deploy.formats import family, format_for
from imgclf.errors import ImgclfError
from imgclf.files import LABELS_FILE, load_labels
from imgclf.ranking import mirror, temper, top_k
from imgclf.record import RunRecord
from imgclf.runtime import KerasRuntime, Runtime, load_keras_model


@dataclass
class Classifier:
    """A trained model with its class names and input size; the one interface for predicting.

    ``model`` is a keras.Model or an imgclf.runtime.Runtime (SavedModel, LiteRT, ONNX Runtime);
    ``format`` names which (a name in imgclf.deploy.formats.FORMATS) and ``info`` holds the
    exported model's record (backbone, input type...) when there is one. ``temperature`` (fitted
    on the run's validation split, imgclf.evaluation.calibration; stored in run.json and in every
    export's record) scales every probability that leaves ``predict_arrays``: predict, serve,
    the export check and every format return the same calibrated probabilities. ``flip`` (chosen
    on validation, imgclf.evaluation.calibration.choose_flip; stored beside the temperature)
    averages each image's probabilities with its mirror image's before the temperature.
    """

    model: object  # keras.Model or runtimes.Runtime
    class_names: list[str]
    image_size: int
    source: Path
    max_pixels: int = 64_000_000
    format: str = "keras"
    info: dict = field(default_factory=dict)
    temperature: float = 1.0
    flip: bool = False

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for RGB images already at the model's size.

        Args:
            images: (N, S, S, 3) uint8 or float 0-255 RGB: an array, or an array-like read by
                slices (data.ResizedImages).
            batch_size: images per forward pass.

        Returns:
            float32 (N, num_classes) probabilities, calibrated by the model's temperature.

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
        out = [temper(self._probs(images[i:i + batch_size]), self.temperature)
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _probs(self, batch) -> np.ndarray:
        """The model's probabilities for one batch, averaged with its mirror image's under ``flip``."""
        probs = np.asarray(self._forward(batch), np.float32)
        if self.flip:
            probs = (probs + np.asarray(self._forward(mirror(batch)), np.float32)) / 2
        return probs

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
        batch: list[tuple[str, np.ndarray | str]] = []  # (path, pixels or the reason it failed)
        for path in paths:
            try:
                batch.append((str(path), resize(read_image(path, self.max_pixels), self.image_size)))
            except BadImage as exc:
                batch.append((str(path), str(exc)))  # stays in its place: output in input order
            if len(batch) == batch_size:
                yield from self._emit(batch, k)
                batch = []
        if batch:
            yield from self._emit(batch, k)

    def _emit(self, batch, k):
        images = [image for _, image in batch if not isinstance(image, str)]
        probs = iter(self.predict_arrays(np.stack(images)) if images else [])
        for path, image in batch:
            if isinstance(image, str):
                yield {"path": path, "top": [], "error": image}
            else:
                yield {"path": path, "top": top_k(next(probs), self.class_names, k), "error": None}


def load(source: str | Path, num_threads: int | None = None) -> Classifier:
    """Load a finished run or an exported model for prediction, behind one interface.

    Args:
        source: a run directory (or its ``model.keras``); or an exported model of any format in
            ``imgclf.deploy.formats`` (see ``imgclf export``). Class names come from the run, the
            record stored with the model, or a ``labels.txt`` beside the file.
        num_threads: threads for LiteRT / ONNX Runtime (default: every CPU this process may use).

    Returns:
        A Classifier; ``clf.format`` says which kind of model it runs.

    Raises:
        ImgclfError: one line naming the file, for anything missing, corrupt or foreign; an
            interrupted run says how to resume it.

    Example:
        >>> load("runs/fashion").class_names[:2]
        ['ankle_boot', 'bag']
        >>> load("runs/fashion/export/model_int8.tflite").format
        'tflite-int8'
    """
    source = Path(source)
    if not source.exists():
        raise ImgclfError(f"{source}: no such run directory or model file")
    if source.is_dir() and not (source / "saved_model.pb").is_file():
        record = RunRecord(source)
        if not (record.config_path.is_file() or record.model_path.is_file()):
            raise ImgclfError(f"{source}: neither a run directory (no model.keras) nor a SavedModel "
                              f"(no saved_model.pb)")
        return _load_run(record)
    if source.name == "model.keras" and RunRecord(source.parent).config_path.is_file():
        return _load_run(RunRecord(source.parent))  # a run's own model is the run (and must be complete)
    fmt = format_for(source)
    runtime = fmt.open(source, num_threads)
    info = fmt.read_record(source, runtime)
    runtime.format = info.get("format") if info.get("format") in family(fmt) else fmt.name
    names = info.get("class_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        names = load_labels(source.parent / LABELS_FILE)
        if names is None:
            raise ImgclfError(f"{source}: no class names (no imgclf record and no readable labels.txt "
                              f"beside it); export models with `imgclf export`")
    _check_classes(source, runtime.num_classes, names)
    in_graph = info.get("temperature_in_graph") is True  # folded into the weights; older exports were not
    return Classifier(runtime, names, runtime.image_size, source, format=runtime.format, info=info,
                      temperature=1.0 if in_graph else float(info.get("temperature", 1.0)),
                      flip=info.get("flip") is True and info.get("flip_in_graph") is not True)


def _load_run(record: RunRecord) -> Classifier:
    record = RunRecord.finished(record.path)
    model = load_keras_model(record.model_path)
    class_names = record.read_labels()
    _check_classes(record.path, model.output_shape[-1], class_names)
    config = record.read_config()
    calibration = record.read_run_info().get("calibration") or {}
    temperature, flip = float(calibration.get("temperature", 1.0)), (calibration.get("flip") or {}).get("flip") is True
    return Classifier(model, class_names, int(model.input_shape[1]), record.path, config.data.max_pixels,
                      info={"backbone": config.model.backbone, "temperature": temperature, "flip": flip},
                      temperature=temperature, flip=flip)


def _check_classes(source: Path, num_outputs: int, class_names: list[str]) -> None:
    if num_outputs != len(class_names):
        raise ImgclfError(f"{source}: {len(class_names)} class names but the model outputs {num_outputs}")
    if len(set(class_names)) != len(class_names):
        duplicate = next(name for name in class_names if class_names.count(name) > 1)
        raise ImgclfError(f"{source}: class name '{duplicate}' appears twice in its labels")
