"""The classifier: a pretrained base, global average pooling, and a small head.

The model is ``image (raw 0-255 RGB) -> base -> pool -> head -> class probabilities``. The base
and the head are nested models named ``base`` and ``head``, so the head can also be trained alone
on pooled features, and the same Keras model is saved, evaluated and exported either way.

Example:
    >>> model = build_classifier("efficientnet_lite0", num_classes=3, image_size=96)
    >>> freeze_base(model)
    >>> unfreeze_top(model, "efficientnet_lite0", blocks=2)
"""
from __future__ import annotations

import keras

from imgclf.backbones import build_backbone, get_spec, layer_blocks
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


def build_classifier(backbone: str, num_classes: int, image_size: int, *, weights: str = "imagenet",
                     dropout: float = 0.2, hidden_units: int = 0, seed: int = 0) -> keras.Model:
    """Put a fresh head on a pretrained base.

    Args:
        backbone: a registry name (see ``imgclf backbones``).
        num_classes: number of classes.
        image_size: input side in pixels; the model takes (S, S, 3) raw 0-255 RGB.
        weights: "imagenet", "none" or a path to a weights file for the base.
        dropout, hidden_units, seed: see build_head.

    Returns:
        keras.Model named ``imgclf_<backbone>`` with nested ``base`` and ``head`` models.

    Example:
        >>> build_classifier("efficientnet_lite0", 5, 96).output_shape
        (None, 5)
    """
    if num_classes < 2:
        raise ImgclfError(f"a classifier needs at least 2 classes, got {num_classes}")
    base = build_backbone(backbone, image_size, weights=weights)
    base.name = "base"
    head = build_head(base.output_shape[-1], num_classes, dropout=dropout, hidden_units=hidden_units,
                      seed=seed)
    image = keras.Input((image_size, image_size, 3), name="image")
    # training=False keeps BatchNorm in inference mode when the base is called directly; fit-time
    # calls still pass training=True inside (keras-team/keras#20285), hence freeze_batchnorm below.
    x = base(image, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, head(x), name=f"imgclf_{backbone}")


def base_of(model: keras.Model) -> keras.Model:
    """The nested pretrained base of a classifier built by build_classifier.

    Example:
        >>> base_of(model).name
        'base'
    """
    return model.get_layer("base")


def head_of(model: keras.Model) -> keras.Model:
    """The nested head of a classifier built by build_classifier.

    Example:
        >>> head_of(model).name
        'head'
    """
    return model.get_layer("head")


def freeze_base(model: keras.Model) -> None:
    """Phase 1: nothing in the base trains; the head does.

    Example:
        >>> freeze_base(model); base_of(model).trainable
        False
    """
    base_of(model).trainable = False
    head_of(model).trainable = True


def select_top(model: keras.Model, backbone: str, *, layers: int = 0, blocks: int = 0) -> list:
    """The base's layers that fine-tuning would unfreeze (BatchNorm included), bottom to top.

    Args:
        model: a classifier from build_classifier.
        backbone: its registry name (for the block structure).
        layers: the top N weighted layers of the base ...
        blocks: ... or the top K blocks; both 0: the backbone's default block count.

    Returns:
        The selected keras layers; raises ImgclfError when the base has fewer.

    Example:
        >>> [layer.name for layer in select_top(model, "efficientnet_lite0", layers=2)]
        ['head_conv', 'head_bn']
    """
    groups = layer_blocks(backbone, base_of(model))
    if layers:
        weighted = [layer for group in groups for layer in group]
        if layers > len(weighted):
            raise ImgclfError(f"train.fine_tune_layers={layers} is more than {backbone} has "
                              f"({len(weighted)} layers with weights)")
        return weighted[-layers:]
    blocks = blocks or get_spec(backbone).default_fine_tune_blocks
    if blocks > len(groups):
        raise ImgclfError(f"train.fine_tune_blocks={blocks} is more than {backbone} has "
                          f"({len(groups)} blocks)")
    return [layer for group in groups[-blocks:] for layer in group]


def unfreeze_top(model: keras.Model, backbone: str, *, layers: int = 0, blocks: int = 0) -> list[str]:
    """Phase 2: unfreeze the top N weighted layers, or the top K blocks, of the base.

    BatchNormalization layers stay frozen (inference mode, moving statistics fixed) whatever is
    unfrozen, because Keras 3 passes training=True into nested models during training
    (keras-team/keras#20285) and batch statistics of small fine-tuning batches would drift.

    Args:
        model, backbone, layers, blocks: as for select_top.

    Returns:
        Names of the layers that now train, bottom to top.

    Example:
        >>> unfreeze_top(model, "efficientnet_lite0", layers=2)
        ['head_conv']
    """
    chosen = select_top(model, backbone, layers=layers, blocks=blocks)
    base = base_of(model)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = False
    names = []
    for layer in chosen:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
            names.append(layer.name)
    return names


def trainable_weight_count(model: keras.Model) -> int:
    """Number of scalars that the optimizer will update.

    Example:
        >>> trainable_weight_count(model)
        12810
    """
    return int(sum(int(w.numpy().size) for w in model.trainable_weights))
