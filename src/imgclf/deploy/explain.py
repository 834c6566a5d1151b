"""``imgclf explain``: where in each image the trained model looked for its answer.

Each image is read and resized as ``predict`` does, answered with the run's calibrated
probabilities, and drawn beside its Grad-CAM map of the answer (imgclf.evaluation.saliency,
imgclf.evaluation.image_plots) as one PNG per image. Every image is decoded before anything is
written, so an unreadable one stops the command with one line and no partial output.

Example:
    >>> rows = explain("runs/fashion", ["shoe.png"], "why")
    >>> rows[0]["label"], rows[0]["output"]
    ('sneaker', PosixPath('why/shoe.gradcam.png'))
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from imgclf.data.images import BadImage, read_image, resize
from imgclf.deploy.predict import load
from imgclf.errors import ImgclfError

SUFFIX = ".gradcam.png"


def _output_names(paths: Sequence[Path]) -> list[str]:
    """``<stem>.gradcam.png`` per image; a stem that repeats gets ``-2``, ``-3``... in input order."""
    names, seen = [], {}
    for path in paths:
        count = seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(f"{path.stem}{'' if count == 1 else f'-{count}'}{SUFFIX}")
    return names


def explain(source: str | Path, images: Sequence[str | Path], out_dir: str | Path) -> list[dict]:
    """Write one Grad-CAM overlay per image, of the class the run predicts for it.

    Args:
        source: a finished run directory (or its model.keras): Grad-CAM needs the Keras model's
            gradients, which exported .tflite / .onnx / SavedModel files do not carry.
        images: image files.
        out_dir: the folder to write ``<stem>.gradcam.png`` files into (created if missing).

    Returns:
        One ``{"path", "label", "confidence", "output"}`` per image, in input order.

    Raises:
        ImgclfError: one line for a missing or unfinished run, an exported model, an unreadable
            image or an output folder that is a file; nothing is written then.

    Example:
        >>> explain("runs/fashion", ["a.png", "b.png"], "why")[1]["confidence"]
        0.87
    """
    import keras
    from imgclf.evaluation.image_plots import plot_explanation
    from imgclf.evaluation.saliency import grad_cam
    out_dir, paths = Path(out_dir), [Path(p) for p in images]
    if out_dir.exists() and not out_dir.is_dir():
        raise ImgclfError(f"{out_dir}: exists and is not a folder (--out takes a folder for the overlays)")
    clf = load(source)
    if not isinstance(clf.model, keras.Model):
        raise ImgclfError(f"{source}: explain needs a run directory (runs/NAME): Grad-CAM differentiates the "
                          f"trained Keras model, and a {clf.format} export has no gradients")
    pixels = []
    for path in paths:
        if path.is_dir():
            raise ImgclfError(f"{path}: is a folder; explain takes image files")
        try:
            pixels.append(resize(read_image(path, clf.max_pixels), clf.image_size))
        except BadImage as exc:
            raise ImgclfError(f"{path}: cannot explain ({exc.reason})") from None
    batch = np.stack(pixels) if pixels else np.zeros((0, clf.image_size, clf.image_size, 3), np.uint8)
    probs = clf.predict_arrays(batch)
    answers = probs.argmax(axis=1)
    maps = grad_cam(clf.model, batch, answers)
    rows = []
    for path, name, image, heat, answer, prob in zip(paths, _output_names(paths), batch, maps, answers, probs):
        label, confidence = clf.class_names[answer], float(prob[answer])
        output = plot_explanation(image, heat, label, confidence, out_dir / name, source=path.name)
        rows.append({"path": str(path), "label": label, "confidence": round(confidence, 4), "output": output})
    return rows
