"""The EfficientNet-Lite graph in Keras 3, and the copy of lukemelas-named torch weights into it.

Keras is imported here, not in ``efficientnet_lite`` (the family's declaration), so listing the
registry stays light. The weights (lukemelas naming, converted from the TF originals) need
TF-style 'same' padding, which Keras 'same' is, and BatchNorm epsilon 1e-3.

Example:
    >>> build_graph("efficientnet_lite0", 224).output.shape
    (None, 1000)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from imgclf.backbones.efficientnet_lite import VARIANTS, LiteVariant
from imgclf.backbones.layers import PointwiseConv2D
from imgclf.errors import ImgclfError

BN_EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280  # fixed in Lite: not scaled by width
# EfficientNet-B0 stages: (kernel, stride, expand ratio, in filters, out filters, repeats)
STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1))


@dataclass(frozen=True)
class BlockPlan:
    """One MBConv block: its Keras name prefix and the index of its weights in the torch file."""

    name: str
    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    # The TF reference rounding: to a multiple of 8, never more than 10% below the scaled width.
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_plans(variant: LiteVariant) -> list[BlockPlan]:
    """The MBConv blocks of a variant in forward order.

    Args:
        variant: an entry of ``VARIANTS``.

    Returns:
        One ``BlockPlan`` per block, named ``block1a``, ``block2a``, ``block2b``...

    Example:
        >>> len(block_plans(VARIANTS["efficientnet_lite0"]))
        16
    """
    plans = []
    for stage, (kernel, stride, expand, f_in, f_out, repeats) in enumerate(STAGES):
        f_in, f_out = _round_filters(f_in, variant.width), _round_filters(f_out, variant.width)
        if 0 < stage < len(STAGES) - 1:  # Lite keeps the first and last stage at one block
            repeats = int(math.ceil(variant.depth * repeats))
        for j in range(repeats):
            plans.append(BlockPlan(f"block{stage + 1}{chr(ord('a') + j)}", len(plans), kernel,
                                   stride if j == 0 else 1, expand, f_in if j == 0 else f_out, f_out))
    return plans


def _conv_bn_relu6(x, filters, kernel, stride, name, activate=True, depthwise=False):
    # ``name`` is a prefix: "stem_" gives stem_conv, stem_bn, stem_activation.
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}dwconv")(x)
    elif kernel == 1 and stride == 1:  # the block's expand and project, and the head
        x = PointwiseConv2D(filters, use_bias=False, name=f"{name}conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}bn")(x)
    if activate:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}activation")(x)
    return x


def _mbconv(x, plan: BlockPlan):
    """Inverted residual block: 1x1 expand, depthwise, 1x1 project, identity skip if shapes allow."""
    inputs, p = x, f"{plan.name}_"
    if plan.expand != 1:
        x = _conv_bn_relu6(x, plan.filters_in * plan.expand, 1, 1, f"{p}expand_")
    x = _conv_bn_relu6(x, None, plan.kernel, plan.stride, p, depthwise=True)
    x = _conv_bn_relu6(x, plan.filters_out, 1, 1, f"{p}project_", activate=False)
    if plan.stride == 1 and plan.filters_in == plan.filters_out:
        x = keras.layers.Add(name=f"{p}add")([x, inputs])  # no drop-connect: inference-time graph
    return x


def build_graph(name: str, image_size: int) -> keras.Model:
    """The full EfficientNet-Lite classifier (1000-way softmax), randomly initialised.

    Args:
        name: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        image_size: input height and width; the weights fit any size.

    Returns:
        A functional model, raw 0-255 RGB in, ImageNet probabilities out; the feature map is
        the output of the layer ``head_activation``.

    Example:
        >>> build_graph("efficientnet_lite0", 224).output.shape
        (None, 1000)
    """
    variant = VARIANTS[name]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="stem_normalize")(inputs)
    x = _conv_bn_relu6(x, STEM_FILTERS, 3, 2, "stem_")
    for plan in block_plans(variant):
        x = _mbconv(x, plan)
    x = _conv_bn_relu6(x, HEAD_FILTERS, 1, 1, "head_")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(variant.dropout, name="top_dropout")(x)
    x = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _torch_names(name: str) -> dict[str, str]:
    """Keras layer name -> torch module prefix, for every layer that has weights."""
    mapping = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
               "head_bn": "_bn1", "predictions": "_fc"}
    for plan in block_plans(VARIANTS[name]):
        t, k = f"_blocks.{plan.index}.", f"{plan.name}_"
        mapping.update({f"{k}expand_conv": f"{t}_expand_conv", f"{k}expand_bn": f"{t}_bn0",
                        f"{k}dwconv": f"{t}_depthwise_conv", f"{k}bn": f"{t}_bn1",
                        f"{k}project_conv": f"{t}_project_conv", f"{k}project_bn": f"{t}_bn2"})
    return mapping


def _converted(layer, state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """A layer's weights from torch arrays, in Keras order and layout."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    w = state[f"{prefix}.weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [w.transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return [w.transpose(2, 3, 1, 0)]  # OIHW -> HWIO
    return [w.T, state[f"{prefix}.bias"]]  # Dense: (out, in) -> (in, out)


def assign_torch_weights(model: keras.Model, state: dict[str, np.ndarray], source: str) -> None:
    """Copy a lukemelas-named state dict into ``model``, checking every name and shape.

    Args:
        model: from ``build_graph`` (with top).
        state: from ``load_legacy_state_dict``.
        source: the file, for error messages.

    Raises:
        ImgclfError: a tensor is missing, left over, or has the wrong shape.

    Example:
        >>> assign_torch_weights(build_graph("efficientnet_lite0", 224), sd, "lite0.pth")
    """
    mapping = _torch_names(model.name)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = mapping[layer.name]
        try:
            arrays = _converted(layer, state, prefix)
        except KeyError as e:
            raise ImgclfError(f"{source}: no tensor {e.args[0]} for layer {layer.name}; not {model.name} weights?") from None
        for var, arr in zip(layer.weights, arrays):
            if tuple(var.shape) != arr.shape:
                raise ImgclfError(f"{source}: {prefix} has shape {arr.shape}, {model.name} layer "
                                  f"{layer.name} needs {tuple(var.shape)}; not {model.name} weights?")
        layer.set_weights(arrays)
        used.update(k for k in state if k.startswith(prefix + "."))
    extra = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if extra:
        raise ImgclfError(f"{source}: {len(extra)} tensors fit no layer of {model.name} (e.g. {extra[0]})")
