"""The network being trained: a pretrained base, global average pooling, and a small head,
carried together with the backbone spec that built it.

The model is ``image (raw 0-255 RGB) -> base -> pool -> head -> class probabilities``. The base
and the head are nested models named ``base`` and ``head``, so the head can also be trained alone
on pooled features, and the same Keras model is saved, evaluated and exported either way.
``Network`` holds the Keras model and its ``BackboneSpec``, so every question about the base's
blocks is asked of the spec that built it.

Example:
    >>> net = build_network("efficientnet_lite0", num_classes=3, image_size=96)
    >>> net.freeze_base()
    >>> net.unfreeze_top(blocks=2)[:2]
    ['block7a_expand_conv', 'block7a_dwconv']
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from imgclf.backbones import BackboneSpec, get_spec
from imgclf.errors import ImgclfError


def build_head(feature_dim: int, num_classes: int, *, dropout: float = 0.2, hidden_units: int = 0,
               seed: int = 0) -> keras.Model:
    """The classification head: [Dense(relu) + Dropout] + Dropout + Dense(softmax).

    Args:
        feature_dim: width of the pooled features it takes.
        num_classes: one softmax unit per class.
        dropout: dropout rate before each Dense layer.
        hidden_units: width of an optional hidden Dense layer; 0 for none.
        seed: seeds the initialisers and dropout.

    Returns:
        A keras.Model named ``head`` from (feature_dim,) to (num_classes,) probabilities.

    Example:
        >>> build_head(1280, 10).output_shape
        (None, 10)
    """
    features = keras.Input((feature_dim,), name="features")
    x = features
    if hidden_units:
        x = keras.layers.Dropout(dropout, seed=seed, name="hidden_dropout")(x)
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden",
                               kernel_initializer=keras.initializers.HeNormal(seed))(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
    return keras.Model(features, outputs, name="head")


def build_network(backbone: str | BackboneSpec, num_classes: int, image_size: int, *,
                  weights: str = "imagenet", dropout: float = 0.2, hidden_units: int = 0,
                  seed: int = 0) -> "Network":
    """Put a fresh head on a pretrained base.

    Args:
        backbone: a registry name (see ``imgclf backbones``) or its spec.
        num_classes: number of classes.
        image_size: input side in pixels; the model takes (S, S, 3) raw 0-255 RGB.
        weights: "imagenet", "none" or a path to a weights file for the base.
        dropout, hidden_units, seed: see build_head.

    Returns:
        A Network whose model is named ``imgclf_<backbone>``, with nested ``base`` and ``head``.

    Example:
        >>> build_network("efficientnet_lite0", 5, 96).model.output_shape
        (None, 5)
    """
    if num_classes < 2:
        raise ImgclfError(f"a classifier needs at least 2 classes, got {num_classes}")
    spec = get_spec(backbone)
    base = spec.build(image_size, weights=weights)
    base.name = "base"
    head = build_head(base.output_shape[-1], num_classes, dropout=dropout, hidden_units=hidden_units,
                      seed=seed)
    image = keras.Input((image_size, image_size, 3), name="image")
    # training=False keeps BatchNorm in inference mode when the base is called directly; fit-time
    # calls still pass training=True inside (keras-team/keras#20285), hence unfreeze_top below.
    x = base(image, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return Network(keras.Model(image, head(x), name=f"imgclf_{spec.name}"), spec)


@dataclass
class Network:
    """A classifier built by ``build_network`` and the backbone spec that built it.

    Example:
        >>> net = build_network("efficientnet_lite0", 3, 96)
        >>> net.base.name, net.head.name, net.spec.name
        ('base', 'head', 'efficientnet_lite0')
    """

    model: keras.Model
    spec: BackboneSpec

    @property
    def base(self) -> keras.Model:
        return self.model.get_layer("base")

    @property
    def head(self) -> keras.Model:
        return self.model.get_layer("head")

    @property
    def pool(self) -> keras.layers.Layer:
        return self.model.get_layer("pool")

    def freeze_base(self) -> None:
        """Phase 1: nothing in the base trains; the head does."""
        self.base.trainable = False
        self.head.trainable = True

    def select_top(self, *, layers: int = 0, blocks: int = 0) -> list:
        """The base's layers that fine-tuning would unfreeze (BatchNorm included), bottom to top.

        Args:
            layers: the top N weighted layers of the base ...
            blocks: ... or the top K blocks; both 0: the backbone's default block count.

        Returns:
            The selected keras layers; raises ImgclfError when the base has fewer.

        Example:
            >>> [layer.name for layer in net.select_top(layers=2)]
            ['head_conv', 'head_bn']
        """
        groups = self.spec.layer_blocks(self.base)
        if layers:
            weighted = [layer for group in groups for layer in group]
            if layers > len(weighted):
                raise ImgclfError(f"train.fine_tune_layers={layers} is more than {self.spec.name} has "
                                  f"({len(weighted)} layers with weights)")
            return weighted[-layers:]
        blocks = blocks or self.spec.default_fine_tune_blocks
        if blocks > len(groups):
            raise ImgclfError(f"train.fine_tune_blocks={blocks} is more than {self.spec.name} has "
                              f"({len(groups)} blocks)")
        return [layer for group in groups[-blocks:] for layer in group]

    def unfreeze_top(self, *, layers: int = 0, blocks: int = 0) -> list[str]:
        """Phase 2: unfreeze the top N weighted layers, or the top K blocks, of the base.

        BatchNormalization layers stay frozen (inference mode, moving statistics fixed) whatever
        is unfrozen, because Keras 3 passes training=True into nested models during training
        (keras-team/keras#20285) and batch statistics of small fine-tuning batches would drift.

        Returns:
            Names of the layers that now train, bottom to top.

        Example:
            >>> net.unfreeze_top(layers=2)
            ['head_conv']
        """
        chosen = self.select_top(layers=layers, blocks=blocks)
        base = self.base
        base.trainable = True
        for layer in base.layers:
            layer.trainable = False
        names = []
        for layer in chosen:
            if not isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
                names.append(layer.name)
        return names

    def cut_tensor(self, *, layers: int = 0, blocks: int = 0):
        """The tensor where fine-tuning's trainable part begins: the input of the block holding
        the lowest layer to unfreeze (a cut inside a block would sever its residual connection)."""
        lowest = self.select_top(layers=layers, blocks=blocks)[0]
        for group in self.spec.layer_blocks(self.base):
            if lowest in group:
                return group[0].input
        raise AssertionError(f"{lowest.name} is in no block")  # layer_blocks covers every layer

    def split_base(self, *, layers: int = 0, blocks: int = 0) -> tuple[keras.Model, keras.Model]:
        """(bottom, top) sub-models of the base around the fine-tuning cut, sharing its layers.

        Example:
            >>> bottom, top = net.split_base(blocks=3)
            >>> bottom.output_shape
            (None, 3, 3, 192)
        """
        cut = self.cut_tensor(layers=layers, blocks=blocks)
        return keras.Model(self.base.input, cut, name="bottom"), keras.Model(cut, self.base.output, name="top")

    def top_trainee(self, top: keras.Model, shape: tuple) -> keras.Model:
        """What phase 2 trains on cached activations: the base's top, the pooling and the head,
        sharing their layers (and so their weights) with the model.

        Args:
            top: the base's top, from ``split_base``.
            shape: one activation's shape (the bottom's output without the batch axis).

        Example:
            >>> net.top_trainee(top, (6, 6, 112)).output_shape
            (None, 10)
        """
        acts = keras.Input(tuple(shape), name="activations")
        return keras.Model(acts, self.head(self.pool(top(acts))), name="fine_tune_trainee")

    def trainable_weight_count(self) -> int:
        """Number of scalars that the optimizer will update."""
        return int(sum(int(w.numpy().size) for w in self.model.trainable_weights))


def fold_temperature(model: keras.Model, temperature: float) -> bool:
    """Put a calibration temperature into the graph: the final softmax Dense layer's kernel and
    bias are divided by T, since softmax((xW + b) / T) = softmax(x(W/T) + b/T). The model then
    returns calibrated probabilities by itself, in any format it is converted to, outside imgclf.

    Args:
        model: an imgclf model (nested ``head`` ending in a softmax Dense ``predictions``);
            changed in place, so pass a copy (e.g. freshly loaded) rather than the run's model.
        temperature: T > 0, fitted on validation (imgclf.evaluation.calibration).

    Returns:
        True when folded; False (model unchanged) when T is 1 or the model has no such layer.

    Example:
        >>> fold_temperature(load_keras_model("runs/fashion/model.keras"), 1.31)
        True
    """
    try:
        dense = model.get_layer("head").get_layer("predictions")
    except (ValueError, AttributeError):
        return False
    if temperature == 1.0 or not isinstance(dense, keras.layers.Dense) or \
            getattr(dense.activation, "__name__", "") != "softmax" or not dense.use_bias:
        return False
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / np.float32(temperature), bias / np.float32(temperature)])
    return True


def fold_flip(model: keras.Model) -> keras.Model:
    """Put a test-time flip into the graph: a model that returns the mean of ``model``'s
    probabilities on each image and on its mirror image (what imgclf.deploy.predict.Classifier
    does with ``flip`` before its temperature), so an export ranks the same outside imgclf.

    Args:
        model: an imgclf classifier (raw 0-255 RGB in, probabilities out); shared, not copied.

    Returns:
        A new keras.Model over ``model``, named ``<model.name>_flip``.

    Example:
        >>> fold_flip(net.model).output_shape
        (None, 10)
    """
    from imgclf.backbones.layers import Mirror
    image = keras.Input(model.input_shape[1:], name="image")
    both = [model(image), model(Mirror(name="mirror")(image))]
    return keras.Model(image, keras.layers.Average(name="flip_average")(both), name=f"{model.name}_flip")


def choose_image_size(requested: int, spec: BackboneSpec, report, least: int = 96) -> int:
    """The input side: as asked, else the images' median side rounded up to a multiple of 32,
    at least ``least`` and at most the backbone's default (28 px images do not need 224)."""
    if requested:
        if requested < spec.min_size:
            raise ImgclfError(f"data.image_size={requested} is too small for {spec.name} "
                              f"(minimum {spec.min_size})")
        return requested
    sizes = (report.to_dict().get("sizes") or {})
    median = max((sizes.get("width") or {}).get("median", 0), (sizes.get("height") or {}).get("median", 0))
    if not median:
        return spec.default_size
    return int(min(spec.default_size, max(least, spec.min_size, 32 * math.ceil(median / 32))))
