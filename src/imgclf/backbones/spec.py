"""What imgclf knows about one backbone: ``BackboneSpec``, declared by its family's module.

A spec is built once (by the registry) and then travels with the model: it builds the base,
says whether its ImageNet weights are here, and groups the base's layers into blocks for
fine-tuning. Nothing looks a backbone up by name after that.

Example:
    >>> spec = get_spec("efficientnet_lite0")
    >>> base = spec.build(96, weights="none")
    >>> [len(block) for block in spec.layer_blocks(base)][:3]
    [2, 4, 6]
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imgclf.errors import ImgclfError


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: sizes, features, preprocessing, weights, and how its layers group into
    blocks. ``num_blocks``/``num_layers`` count the base without top as ``layer_blocks``
    groups it (the tests hold these numbers to the models).

    ``builder(spec, image_size, weights, include_top)`` builds the Keras model and
    ``weights_check(spec, include_top)`` returns why ImageNet weights cannot be had offline,
    or None; both come from the family's module.
    """

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
    builder: Callable | None = field(repr=False, compare=False, default=None)
    weights_check: Callable | None = field(repr=False, compare=False, default=None)

    def build(self, image_size: int, weights: str | Path = "imagenet", include_top: bool = False):
        """A model from raw 0-255 RGB float32 (S, S, 3) to the last feature map (no pooling)
        or, with ``include_top``, the 1000 ImageNet probabilities.

        Args:
            image_size: S, at least ``min_size``.
            weights: ``"imagenet"`` (offline-safe: a clear error if the file is missing),
                ``"none"`` (random init; what tests use), or a path to a weights file.
            include_top: the ImageNet classifier too.

        Raises:
            ImgclfError: image size too small, or weights missing or not fitting.

        Example:
            >>> get_spec("efficientnet_lite0").build(224).output.shape
            (None, 7, 7, 1280)
        """
        if not isinstance(image_size, numbers.Integral):
            raise ImgclfError(f"image size must be a whole number of pixels, got {image_size!r}")
        image_size = int(image_size)
        if image_size < self.min_size:
            raise ImgclfError(f"image size {image_size} is too small for {self.name} (minimum {self.min_size})")
        weights = str(weights) if weights is not None else "none"
        if weights not in ("imagenet", "none") and not Path(weights).is_file():
            raise ImgclfError(f"{weights}: no such weights file (model.weights is imagenet, none or a path)")
        return self.builder(self, image_size, weights=weights, include_top=include_top)

    def missing_weights(self, include_top: bool = False) -> str | None:
        """Why ImageNet weights cannot be had offline (what to install or put where), or None."""
        return self.weights_check(self, include_top)

    def weights_available(self, include_top: bool = False) -> bool:
        """Whether ``build(..., weights="imagenet")`` works offline."""
        return self.missing_weights(include_top) is None

    def layer_blocks(self, base) -> list[list]:
        """The base's layers that have weights, grouped into blocks in forward order.

        Stem first, then each block (``block3b``, ``conv5_block3``, ``block_16``...), then the
        head conv (and, with a top, the classifier last). Fine-tuning unfreezes "the top N
        layers" or "the top K blocks" from the end of this list.

        Example:
            >>> blocks = get_spec("resnet50").layer_blocks(get_spec("resnet50").build(64, "none"))
            >>> [layer.name for layer in blocks[-1]][:2]
            ['conv5_block3_1_conv', 'conv5_block3_1_bn']
        """
        blocks, keys = [], []
        for layer in base.layers:
            if not layer.weights:
                continue
            key = self._block_key(layer.name)
            if keys and keys[-1] == key:
                blocks[-1].append(layer)
            elif key in keys:  # a block interleaved with another: the patterns are wrong, a bug
                raise RuntimeError(f"{self.name}: layer {layer.name} returns to block {key}")
            else:
                keys.append(key)
                blocks.append([layer])
        return blocks

    def _block_key(self, layer_name: str) -> str:
        for pattern, key in self.block_patterns:
            match = re.match(pattern, layer_name)
            if match:
                return match.expand(key)
        raise RuntimeError(f"{self.name}: layer {layer_name} matches no block pattern")
