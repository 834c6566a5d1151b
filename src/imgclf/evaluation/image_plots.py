"""Figures of images: the report's grid of mistakes and the overlays of ``imgclf explain``, both
with Grad-CAM heat maps (imgclf.evaluation.saliency) drawn over the pixels when given.

Drawing only, on the same Agg figures as ``plots`` (no pyplot, atomic PNGs).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from imgclf.evaluation.plots import _cut, _new_figure, _save

HEAT_CMAP = "jet"
HEAT_ALPHA = 0.6  # opacity of the hottest pixel; cold pixels are transparent, so the image shows


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image.astype(np.uint8)


def _show(ax, image, heatmap=None) -> None:
    ax.imshow(_as_rgb(image))
    if heatmap is not None:
        heat = np.clip(np.asarray(heatmap, np.float32), 0, 1)
        ax.imshow(heat, cmap=HEAT_CMAP, vmin=0, vmax=1, alpha=HEAT_ALPHA * heat, interpolation="bilinear")
    ax.axis("off")


def plot_mistakes(images, y_true, y_pred, confidence, class_names: Sequence[str],
                  path: str | Path, max_images: int = 25, heatmaps=None) -> Path:
    """A grid of misclassified images, each titled with the true and predicted class.

    Args:
        images: uint8 (N, H, W, 3) (grey (N, H, W) also works), in the order to show them
            (e.g. most confident mistakes first, from ``evaluate.mistakes``).
        y_true, y_pred: labels, shape (N,); samples where they agree are skipped.
        confidence: the probability of the predicted class, shape (N,).
        class_names: names in label-index order.
        path: the PNG to write.
        max_images: at most this many images.
        heatmaps: optional (N, H, W) Grad-CAM maps in [0, 1] (of the predicted class), drawn over
            each image.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_mistakes(imgs, [0, 1], [1, 0], [.9, .7], ["cat", "dog"], "mistakes.png")
        PosixPath('mistakes.png')
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:max_images]
    if len(shown) == 0:
        fig = _new_figure(6, 2)
        fig.text(0.5, 0.5, "No misclassified test images", ha="center", va="center",
                 fontsize=14, color="#166534")
        return _save(fig, path)
    cols = min(5, len(shown))
    rows = math.ceil(len(shown) / cols)
    # A fixed grid needs no constrained layout, which took 40% of this figure's 2.2 s.
    height = 2.55 * rows + 0.75  # the top 0.75 inch: the heading, clear of the first row's titles
    fig = _new_figure(2.3 * cols, height, layout=None)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.8 / height, wspace=0.12,
                        hspace=0.62 / 2.0)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, shown):
        _show(ax, images[i], None if heatmaps is None else heatmaps[i])
        ax.set_title(f"true: {_cut(str(class_names[y_true[i]]), 18)}\n"
                     f"pred: {_cut(str(class_names[y_pred[i]]), 14)} ({confidence[i]:.0%})",
                     fontsize=9, color="#7f1d1d")
    extra = f" (first {len(shown)} of {len(wrong)})" if len(wrong) > len(shown) else ""
    why = "\nheat: Grad-CAM of the predicted class (red: what spoke for it)" if heatmaps is not None else ""
    fig.suptitle(f"Misclassified test images{extra}{why}", fontsize=12, y=1 - 0.08 / height, va="top")
    return _save(fig, path)


def plot_explanation(image, heatmap, label: str, confidence: float, path: str | Path,
                     source: str = "") -> Path:
    """One image beside itself under its Grad-CAM map, titled with the label and its confidence.

    Args:
        image: (H, W, 3) uint8 RGB, as the model saw it.
        heatmap: (H, W) map in [0, 1] for ``label``.
        label: the class explained (the model's answer).
        confidence: its calibrated probability.
        path: the PNG to write.
        source: the image's file name, shown under the title.

    Returns:
        ``path`` as a Path.

    Example:
        >>> plot_explanation(img, maps[0], "sneaker", 0.93, "out/shoe.gradcam.png")
        PosixPath('out/shoe.gradcam.png')
    """
    fig = _new_figure(6.2, 3.6, layout=None)
    plain, heat = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.80, wspace=0.06)
    _show(plain, image)
    _show(heat, image, heatmap)
    plain.set_title("input (as the model sees it)", fontsize=9)
    heat.set_title("Grad-CAM", fontsize=9)
    fig.suptitle(f"{_cut(label, 40)}: {confidence:.1%}" + (f"\n{_cut(source, 60)}" if source else ""),
                 fontsize=12)
    return _save(fig, path)
