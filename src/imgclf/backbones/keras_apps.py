"""Backbones from ``keras.applications``, each with its own preprocessing inside the graph.

Every model here takes raw 0-255 RGB: ResNet50 gets a ``CaffePreprocess`` layer, MobileNetV2 a
``Rescaling`` to [-1, 1]; MobileNetV3 and the EfficientNets carry their preprocessing already.

ImageNet weights are Keras's own files, in ``$KERAS_HOME/models`` (default ``~/.keras/models``).
We look there first and download only if the file is absent, so that offline use fails with a
message naming the exact file to put there (or to pass as ``weights=PATH``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from imgclf.backbones.spec import BackboneSpec
from imgclf.errors import ImgclfError, first_line

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class KerasApp:
    """How to build one application and where its ImageNet weight files come from.

    ``top_file``/``notop_file`` may contain ``{rows}`` (MobileNetV2 has one file per size);
    ``hashes`` are Keras's own (top, notop) checksums, None where Keras has none.
    """

    constructor: str
    origin: str
    top_file: str
    notop_file: str
    hashes: tuple
    preprocess: str  # "caffe", "tf" (x / 127.5 - 1) or "builtin"
    kwargs: tuple = ()


APPS = {
    "resnet50": KerasApp(
        "ResNet50", _GCS + "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"), "caffe"),
    "mobilenet_v2": KerasApp(
        "MobileNetV2", _GCS + "mobilenet_v2/",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5", (None, None), "tf"),
    "mobilenet_v3_small": KerasApp(
        "MobileNetV3Small", _GCS + "mobilenet_v3/", "weights_mobilenet_v3_small_224_1.0_float.h5",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ("8768d4c2e7dee89b9d02b2d03d65d862", "d3e8ec802a04aa4fc771ee12a9a9b836"), "builtin",
        (("include_preprocessing", True),)),
    "mobilenet_v3_large": KerasApp(
        "MobileNetV3Large", _GCS + "mobilenet_v3/", "weights_mobilenet_v3_large_224_1.0_float.h5",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        ("59e551e166be033d707958cf9e29a6a7", "07fb09a5933dd0c8eaafa16978110389"), "builtin",
        (("include_preprocessing", True),)),
    "efficientnet_b0": KerasApp(
        "EfficientNetB0", "https://storage.googleapis.com/keras-applications/",
        "efficientnetb0.h5", "efficientnetb0_notop.h5",
        ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"), "builtin"),
    "efficientnet_v2_b0": KerasApp(
        "EfficientNetV2B0", _GCS + "efficientnet_v2/", "efficientnetv2-b0.h5", "efficientnetv2-b0_notop.h5",
        ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"), "builtin",
        (("include_preprocessing", True),)),
}


def weights_file_name(name: str, image_size: int, include_top: bool) -> str:
    """The file name Keras gives the ImageNet weights of ``name``.

    Args:
        name: a key of ``APPS``.
        image_size: the input size (MobileNetV2 has files for 96, 128, 160, 192 and 224).
        include_top: the classifier's file, or the feature extractor's (notop).

    Returns:
        A bare file name, e.g. ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``.

    Example:
        >>> weights_file_name("mobilenet_v2", 160, False)
        'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5'
    """
    rows = image_size if image_size in (96, 128, 160, 192, 224) else 224  # as Keras chooses
    app = APPS[name]
    return (app.top_file if include_top else app.notop_file).format(rows=rows)


def keras_models_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Returns:
        The directory, read from the environment now (not at import).

    Example:
        >>> keras_models_dir()
        PosixPath('/home/me/.keras/models')
    """
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def weights_present(name: str, image_size: int = 224, include_top: bool = False) -> bool:
    """Whether the ImageNet weight file is already on disk (usable offline).

    Args:
        name: a key of ``APPS``.
        image_size: the input size the file must fit.
        include_top: the classifier's file, or the feature extractor's.

    Returns:
        True if ``keras_models_dir()`` holds the file.

    Example:
        >>> weights_present("resnet50")
        False
    """
    return (keras_models_dir() / weights_file_name(name, image_size, include_top)).is_file()


def build_keras_app(spec: BackboneSpec, image_size: int, weights: str = "imagenet",
                    include_top: bool = False):
    """A ``keras.applications`` model that takes raw 0-255 RGB (the family's
    ``BackboneSpec.builder``; call ``spec.build``).

    Args:
        spec: one of SPECS.
        image_size: input height and width (at least 32).
        weights: ``"imagenet"``, ``"none"`` (random) or a path to a Keras ``.h5`` weights file
            matching ``include_top``.
        include_top: True for the 1000-way ImageNet classifier, False for the last feature map.

    Returns:
        The model; its layers are flat (preprocessing first), so layers can be frozen one by one.

    Example:
        >>> build_keras_app(get_spec("resnet50"), 64, weights="none").output.shape
        (None, 2, 2, 2048)
    """
    import keras

    from imgclf.backbones.layers import CaffePreprocess
    name = spec.name
    app = APPS[name]
    path = None if weights == "none" else (
        fetch_imagenet(name, image_size, include_top) if weights == "imagenet" else Path(weights))
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if app.preprocess == "caffe":
        x = CaffePreprocess(name="caffe_preprocess")(x)
    elif app.preprocess == "tf":
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="tf_preprocess")(x)
    constructor = getattr(keras.applications, app.constructor)
    # input_tensor keeps our preprocessing in the same flat graph as the application's layers
    model = constructor(include_top=include_top, weights=None, input_tensor=x,
                        input_shape=(image_size, image_size, 3), **dict(app.kwargs))
    if path is not None:
        _load_weights(model, path, name, include_top)
    _set_imagenet_normalization(model)
    # Keras apps built on input_tensor expect a one-element list; rewrap so a bare tensor fits
    return keras.Model(inputs, model.output, name=model.name)


def fetch_imagenet(name: str, image_size: int, include_top: bool) -> Path:
    """The local ImageNet weight file: found in the Keras cache, or downloaded into it.

    Args:
        name: a key of ``APPS``.
        image_size: the input size (picks MobileNetV2's file).
        include_top: the classifier's file, or the feature extractor's.

    Returns:
        The file's path (checked against Keras's hash where Keras has one).

    Raises:
        ImgclfError: absent and the download failed (offline); names the file to provide.

    Example:
        >>> fetch_imagenet("resnet50", 224, False).name
        'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
    """
    import keras
    app = APPS[name]
    file_name = weights_file_name(name, image_size, include_top)
    models_dir = keras_models_dir()
    try:
        # Keras silently falls back to /tmp/.keras when the cache dir is not writable yet
        models_dir.mkdir(parents=True, exist_ok=True)
        return Path(keras.utils.get_file(
            file_name, app.origin + file_name, file_hash=app.hashes[0 if include_top else 1],
            cache_subdir="models", cache_dir=str(models_dir.parent)))
    except Exception as e:  # keras raises a bare Exception for URL errors
        state = "is damaged" if (models_dir / file_name).exists() else "is not"
        raise ImgclfError(
            f"{name}: ImageNet weights file {file_name} {state} in {models_dir} and could not be "
            f"downloaded ({first_line(e, 160)}); put it there or pass --weights PATH") from None


def _load_weights(model, path: Path, name: str, include_top: bool) -> None:
    if not path.is_file():
        raise ImgclfError(f"{path}: no such weights file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a partial load must not pass silently
            model.load_weights(path)
    except Exception as e:
        kind = "with" if include_top else "without"
        raise ImgclfError(f"{path}: does not fit {name} {kind} top (want the Keras file like "
                          f"{weights_file_name(name, 224, include_top)}): {first_line(e, 200)}") from None


def _set_imagenet_normalization(model) -> None:
    """Make EfficientNet-B0's adaptable Normalization compute (x/255 - mean) / std exactly.

    Keras stores the ImageNet *std* as the layer's variance and, only for ``weights="imagenet"``,
    adds a second Rescaling to compensate. We load weights by path and random models get no
    adapt() call, so we set the statistics directly; the result is identical and saved with
    the model.
    """
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is None:
            layer.adapt_mean.assign(IMAGENET_MEAN_RGB)
            layer.adapt_variance.assign([s * s for s in IMAGENET_STD_RGB])
            layer.finalize_state()


def _weights_check(spec: BackboneSpec, include_top: bool) -> str | None:
    """Why the ImageNet weight file is not here (it names the file and the folder), or None."""
    if weights_present(spec.name, spec.default_size, include_top):
        return None
    return f"{weights_file_name(spec.name, spec.default_size, include_top)} is not in {keras_models_dir()}"


_EFFNET = ((r"^(normalization|rescaling)", "stem"), (r"^stem_", "stem"), (r"^(block\d+[a-z])_", r"\1"),
           (r"^top_", "head"), (r"^predictions$", "top"))
_RESNET = ((r"^conv1_", "stem"), (r"^(conv\d_block\d+)_", r"\1"), (r"^predictions$", "top"))
_MOBILENET_V2 = ((r"^(bn_)?Conv1$", "stem"), (r"^expanded_conv_", "block_0"), (r"^(block_\d+)_", r"\1"),
                 (r"^Conv_1(_bn)?$", "head"), (r"^predictions$", "top"))
_MOBILENET_V3 = ((r"^conv(_bn)?$", "stem"), (r"^(expanded_conv(_\d+)?)_", r"\1"),
                 (r"^conv_1(_bn)?$", "head"), (r"^(conv_2|logits)$", "top"))
_BUILTIN_IMAGENET = "x / 255, then (x - ImageNet mean) / ImageNet std (Keras built-in)"


def _spec(name, feature_dim, preprocessing, blocks, layers, patterns) -> BackboneSpec:
    return BackboneSpec(name, "keras_apps", 224, 32, feature_dim, preprocessing,
                        "keras.applications file in ~/.keras/models (downloaded when online)",
                        3, blocks, layers, patterns, builder=build_keras_app, weights_check=_weights_check)


SPECS = (
    _spec("resnet50", 2048, "caffe: RGB->BGR, minus ImageNet BGR mean (103.9, 116.8, 123.7)", 17, 106, _RESNET),
    _spec("mobilenet_v2", 1280, "x / 127.5 - 1 on 0-255 RGB", 19, 104, _MOBILENET_V2),
    _spec("mobilenet_v3_small", 576, "x / 127.5 - 1 on 0-255 RGB (Keras built-in)", 13, 86, _MOBILENET_V3),
    _spec("mobilenet_v3_large", 960, "x / 127.5 - 1 on 0-255 RGB (Keras built-in)", 17, 108, _MOBILENET_V3),
    _spec("efficientnet_b0", 1280, _BUILTIN_IMAGENET, 18, 131, _EFFNET),
    _spec("efficientnet_v2_b0", 1280, _BUILTIN_IMAGENET, 23, 150, _EFFNET),
)
