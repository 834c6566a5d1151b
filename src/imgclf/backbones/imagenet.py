"""The ImageNet check: classify scikit-image's sample photos with each backbone's full model
(``imgclf backbones --verify``); a correct backbone says chelsea is a cat.

Example:
    >>> verify(["efficientnet_lite0"])[0]["predictions"]["chelsea"][0][0]
    'Egyptian cat'
"""
from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

from imgclf.backbones import get_spec, list_backbones
from imgclf.errors import ImgclfError
from imgclf.ranking import top_k

SAMPLE_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")  # scikit-image's sample data


@functools.lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    text = resources.files("imgclf.backbones").joinpath("imagenet_classes.json").read_text()
    return tuple(json.loads(text))


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard index order.

    Returns:
        A new list; index 0 'tench', 282 'tiger cat', 967 'espresso', 999 'toilet tissue'.

    Example:
        >>> imagenet_class_names()[285]
        'Egyptian cat'
    """
    return list(_class_names())


def sample_photos(image_size: int) -> dict[str, np.ndarray]:
    """scikit-image's sample photos squashed to (S, S, 3) float32 0-255 with Pillow.

    Args:
        image_size: S.

    Returns:
        ``{"chelsea": ..., "coffee": ..., "rocket": ..., "astronaut": ...}``.

    Example:
        >>> sample_photos(224)["chelsea"].shape
        (224, 224, 3)
    """
    try:
        import skimage.data
        from PIL import Image
    except ImportError:
        raise ImgclfError("backbones --verify needs scikit-image's sample photos: pip install scikit-image") from None
    size = (image_size, image_size)
    return {name: np.asarray(Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.BILINEAR),
                             dtype=np.float32) for name in SAMPLE_PHOTOS}


def verify(names: list[str] | None = None, top: int = 5) -> list[dict]:
    """Classify the sample photos with each backbone's full ImageNet model.

    Args:
        names: backbones to check (default: all); those without offline weights are skipped.
        top: how many (label, probability) pairs to keep per photo.

    Returns:
        One dict per backbone: ``{"name", "status": "ok", "image_size", "predictions":
        {photo: [(label, prob), ...]}}``, or ``{"name", "status": "skipped"|"failed", "reason"}``.

    Example:
        >>> verify(["efficientnet_lite0"])[0]["predictions"]["coffee"][0][0]
        'espresso'
    """
    specs = [get_spec(n) for n in names] if names else list_backbones()
    labels, results = imagenet_class_names(), []
    for spec in specs:
        reason = spec.missing_weights(include_top=True)
        if reason:
            results.append({"name": spec.name, "status": "skipped", "reason": reason})
            continue
        try:
            model = spec.build(spec.default_size, "imagenet", include_top=True)
        except ImgclfError as e:  # e.g. a damaged weights file: report it, check the others
            results.append({"name": spec.name, "status": "failed", "reason": str(e)})
            continue
        photos = sample_photos(spec.default_size)
        probs = np.asarray(model(np.stack(list(photos.values())), training=False))
        predictions = {photo: top_k(p, labels, top) for photo, p in zip(photos, probs)}
        results.append({"name": spec.name, "status": "ok", "image_size": spec.default_size,
                        "predictions": predictions})
    return results


def format_verify(result: dict) -> str:
    """One ``verify()`` result as text for ``imgclf backbones --verify``.

    Args:
        result: an element of ``verify()``'s list.

    Returns:
        A header line, then one line per photo with its top labels and probabilities; or one
        line saying why the backbone was skipped or failed.

    Example:
        >>> print(format_verify({"name": "resnet50", "status": "skipped", "reason": "no file"}))
        resnet50: skipped (no file)
    """
    if result["status"] != "ok":
        return f"{result['name']}: {result['status']} ({result['reason']})"
    width = max(map(len, result["predictions"]))
    lines = [f"{result['name']} ({result['image_size']} px)"] + [
        f"  {photo.ljust(width)}  " + ", ".join(f"{label} {prob:.3f}" for label, prob in top)
        for photo, top in result["predictions"].items()]
    return "\n".join(lines)
