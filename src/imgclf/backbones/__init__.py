"""The backbone registry: it only collects the specs each family declares.

Owns: the list of backbones and looking one up by name (once, when a model is built; the spec
then travels with the model). Each family module declares its own ``SPECS`` (sizes, features,
preprocessing, weights source and check, block grouping) and builds its own graph:
``efficientnet_lite`` (+ ``lite_graph``, ``torch_legacy``) and ``keras_apps``; ``layers`` holds
the custom Keras layers saved models refer to, ``imagenet`` the sample-photo check. May import:
``imgclf.errors``, ``imgclf.files``, ``imgclf.ranking``. Importing this package is cheap: Keras
is imported only when a model is built.

Adding a backbone to a family is one ``BackboneSpec`` in its ``SPECS``; a new family is a module
with a builder, a weights check and ``SPECS``, named in ``_FAMILIES``.

Example:
    >>> from imgclf import backbones
    >>> spec = backbones.get_spec("efficientnet_lite0")
    >>> [len(b) for b in spec.layer_blocks(spec.build(224))][:3]
    [2, 4, 6]
"""
from __future__ import annotations

from pathlib import Path

from imgclf.backbones import efficientnet_lite, keras_apps
from imgclf.backbones.spec import BackboneSpec
from imgclf.errors import ImgclfError

_FAMILIES = (efficientnet_lite, keras_apps)  # registry order: the default backbone first
_SPECS = {spec.name: spec for family in _FAMILIES for spec in family.SPECS}

__all__ = ["BackboneSpec", "list_backbones", "get_spec", "build_backbone", "weights_available", "layer_blocks",
           "format_table", "verify", "format_verify", "imagenet_class_names", "sample_photos"]


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, default first.

    Example:
        >>> list_backbones()[0].name
        'efficientnet_lite0'
    """
    return list(_SPECS.values())


def get_spec(name: str | BackboneSpec) -> BackboneSpec:
    """The spec of one backbone (a spec is returned as it is).

    Args:
        name: a registered name, e.g. ``"resnet50"``.

    Raises:
        ImgclfError: unknown name (the message lists the valid ones).

    Example:
        >>> get_spec("resnet50").feature_dim
        2048
    """
    if isinstance(name, BackboneSpec):
        return name
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise ImgclfError(f"model.backbone: unknown backbone '{name}'; choose one of {', '.join(_SPECS)}") from None


def build_backbone(name: str | BackboneSpec, image_size: int, weights: str | Path = "imagenet",
                   include_top: bool = False):
    """``get_spec(name).build(image_size, weights, include_top)``; see BackboneSpec.build.

    Example:
        >>> build_backbone("efficientnet_lite0", 224).output.shape
        (None, 7, 7, 1280)
    """
    return get_spec(name).build(image_size, weights=weights, include_top=include_top)


def weights_available(name: str | BackboneSpec, include_top: bool = False) -> bool:
    """Whether ``build_backbone(name, ..., weights="imagenet")`` works offline.

    Example:
        >>> weights_available("efficientnet_lite0")
        True
    """
    return get_spec(name).weights_available(include_top)


def layer_blocks(name: str | BackboneSpec, base) -> list[list]:
    """``get_spec(name).layer_blocks(base)``; see BackboneSpec.layer_blocks.

    Example:
        >>> [layer.name for layer in layer_blocks("resnet50", build_backbone("resnet50", 64, "none"))[-1]][:1]
        ['conv5_block3_1_conv']
    """
    return get_spec(name).layer_blocks(base)


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
         s.preprocessing, s.weights_source, "yes" if s.weights_available() else "no")
        for s in (specs if specs is not None else list_backbones())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# The ImageNet check lives in its own module; imported last, as it uses the registry above.
from imgclf.backbones.imagenet import format_verify, imagenet_class_names, sample_photos, verify  # noqa: E402
