"""Load a trained run and predict on image files or arrays.

Example:
    >>> clf = load("runs/fashion")
    >>> for row in clf.predict_paths(["shoe.png"], top_k=3):
    ...     print(row["path"], row["top"][0])
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from imgclf.config import load_config
from imgclf.errors import ImgclfError
from imgclf.images import BadImage, read_image, resize
from imgclf.runs import check_complete, read_labels


@dataclass
class Classifier:
    """A trained model with its class names and input size; the one interface for predicting."""

    model: object  # keras.Model
    class_names: list[str]
    image_size: int
    source: Path
    max_pixels: int = 64_000_000

    def predict_arrays(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities for RGB images already at the model's size.

        Args:
            images: (N, S, S, 3) uint8 or float 0-255 RGB.
            batch_size: images per forward pass.

        Returns:
            float32 (N, num_classes) probabilities.

        Example:
            >>> clf.predict_arrays(np.zeros((2, 96, 96, 3), np.uint8)).shape
            (2, 10)
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ImgclfError(f"expected images of shape (N, {self.image_size}, {self.image_size}, 3), "
                              f"got {images.shape}")
        out = [np.asarray(self._forward(images[i:i + batch_size].astype(np.float32)))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _forward(self, batch):
        if not hasattr(self, "_compiled"):
            import tensorflow as tf
            self._compiled = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        return self._compiled(batch)

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


def load(source: str | Path) -> Classifier:
    """Load a finished run directory (or its ``model.keras``) for prediction.

    Args:
        source: a run directory, or a ``.keras`` file inside one.

    Returns:
        A Classifier.

    Example:
        >>> load("runs/fashion").class_names[:2]
        ['ankle_boot', 'bag']
    """
    source = Path(source)
    run_dir = source.parent if source.suffix == ".keras" else source
    check_complete(run_dir)
    import keras
    import imgclf.backbones.layers  # noqa: F401  registers the custom layers saved models refer to

    try:
        model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise ImgclfError(f"{run_dir / 'model.keras'}: cannot load model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    class_names = read_labels(run_dir)
    image_size = int(model.input_shape[1])
    if model.output_shape[-1] != len(class_names):
        raise ImgclfError(f"{run_dir}: labels.txt has {len(class_names)} classes but the model "
                          f"outputs {model.output_shape[-1]}")
    config = load_config(run_dir / "config.yaml")
    return Classifier(model, class_names, image_size, run_dir, config.data.max_pixels)
