"""The fast path: caches equal what the network computes, and train the same model."""
import dataclasses

import numpy as np
import pytest

from imgclf.config import RunConfig, TrainConfig
from imgclf.features import CachedData, ViewBatches, allocate, split_base
from imgclf.model import base_of, build_classifier, head_of, unfreeze_top
from imgclf.trainer import EpochLog, PlainData, fit_two_phase

SIZE, CLASSES, N = 32, 3, 24


def _arrays(n=N, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.integers(0, 90, (n, SIZE, SIZE, 3)).astype(np.uint8)
    images[np.arange(n), :, :, labels] += 150
    return images, labels


def _cfg(**train):
    train = {"epochs": 2, "fine_tune_epochs": 1, "views": 2, "fine_tune_blocks": 2, **train}
    return dataclasses.replace(RunConfig(), train=TrainConfig(**train))


@pytest.fixture(scope="module")
def model():
    return build_classifier("efficientnet_lite0", CLASSES, SIZE, seed=0)


def test_split_base_recomposes_the_base(model):
    bottom, top = split_base(model, "efficientnet_lite0", blocks=2)
    x = _arrays()[0][:4].astype(np.float32)
    np.testing.assert_allclose(top(bottom(x)).numpy(), base_of(model)(x).numpy(), atol=1e-5)
    # a cut by layer count that falls inside a block moves down to the block's start
    _, top_layers = split_base(model, "efficientnet_lite0", layers=2)
    assert any(layer.name.endswith("conv") for layer in top_layers.layers)


def test_cached_features_equal_the_networks_outputs(model, tmp_path):
    images, labels = _arrays()
    for fine_tune in (0, 1):
        data = CachedData(model, "efficientnet_lite0", _cfg(fine_tune_epochs=fine_tune),
                          (images, labels), (images[:6], labels[:6]), tmp_path)
        x = images.astype(np.float32)
        pooled = model.get_layer("pool")(base_of(model)(x)).numpy()
        np.testing.assert_allclose(data.feats[0], pooled, atol=1e-4)  # view 0: unaugmented
        np.testing.assert_allclose(data.val_feats[0], pooled[:6], atol=1e-4)
        assert not np.allclose(data.feats[1], data.feats[0])  # view 1: augmented
    bottom, _ = split_base(model, "efficientnet_lite0", blocks=2)
    np.testing.assert_allclose(data.acts[0], bottom(x).numpy(), atol=1e-4)


def test_cache_over_the_memory_budget_goes_to_disk(model, tmp_path):
    images, labels = _arrays()
    cfg = _cfg(cache_memory_mb=0)
    data = CachedData(model, "efficientnet_lite0", cfg, (images, labels), (images[:6], labels[:6]), tmp_path)
    assert isinstance(data.feats, np.memmap) and isinstance(data.acts, np.memmap)
    assert (tmp_path / "train_activations.npy").stat().st_size >= data.acts.nbytes
    assert data.stats["cache_mb"] > 0
    assert data.stats["cache_mb_on_disk"] == pytest.approx(data.stats["cache_mb"])
    small = allocate((2, 3), 1024, tmp_path / "never.npy")
    assert not isinstance(small, np.memmap) and not (tmp_path / "never.npy").exists()


def test_view_batches_rotate_views_and_reshuffle():
    cache = np.stack([np.zeros((10, 2)), np.ones((10, 2))]).astype(np.float32)
    batches = ViewBatches(cache, np.arange(10) % 2, 2, batch_size=4, seed=1)
    first = list(batches.epoch(0))
    assert len(batches) == 3 and [len(x) for x, _ in first] == [4, 4, 2]
    assert all((x == 0).all() for x, _ in first) and all((x == 1).all() for x, _ in batches.epoch(1))
    labels_0 = np.concatenate([y.argmax(1) for _, y in first])
    labels_2 = np.concatenate([y.argmax(1) for _, y in batches.epoch(2)])
    assert sorted(labels_0) == sorted(labels_2) and not np.array_equal(labels_0, labels_2)


def _weights(layers):
    return {f"{layer.name}/{i}": np.array(w) for layer in layers for i, w in enumerate(layer.get_weights())}


def test_cached_two_phases_train_the_same_kind_of_model(tmp_path):
    images, labels = _arrays(48)
    cached = build_classifier("efficientnet_lite0", CLASSES, SIZE, seed=0)
    plain = build_classifier("efficientnet_lite0", CLASSES, SIZE, seed=0)
    before = _weights(base_of(cached).layers)
    cfg = _cfg(epochs=3, fine_tune_epochs=2, lr=1e-2, patience=5)
    data = CachedData(cached, "efficientnet_lite0", cfg, (images, labels), (images[:12], labels[:12]), tmp_path)
    rows = fit_two_phase(cached, cfg.train, "efficientnet_lite0", data, EpochLog(verbose=False))
    assert {r["phase"] for r in rows} == {"head", "fine_tune"}
    after = _weights(base_of(cached).layers)
    changed = {k.split("/")[0] for k in before if not np.array_equal(before[k], after[k])}
    unfrozen = set(unfreeze_top(plain, "efficientnet_lite0", blocks=2))
    assert changed and changed <= unfrozen  # only unfrozen layers moved; no BatchNorm statistics
    assert [w.shape for w in cached.weights] == [w.shape for w in plain.weights]
    assert [layer.name for layer in cached.layers] == [layer.name for layer in plain.layers]
    probs = cached(images.astype(np.float32), training=False).numpy()
    assert (probs.argmax(1) == labels).mean() > 1 / CLASSES  # it learned something real
    path = tmp_path / "m.keras"
    cached.save(path)
    import keras
    import imgclf.backbones.layers  # noqa: F401
    reloaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded(images[:5].astype(np.float32)).numpy(), probs[:5], atol=1e-5)
    assert head_of(reloaded).output_shape == (None, CLASSES)


def test_plain_data_is_the_same_phase_for_both():
    sentinel = object()

    class Dataset:
        def cardinality(self):
            return 7
    data = PlainData(sentinel, Dataset(), None)
    assert data.head_phase().trainee is sentinel and data.fine_tune_phase().steps == 7
    assert data.head_phase().val is None


def test_tflite_forward_agrees_with_keras(model):
    from imgclf.features import compile_forward
    bottom, _ = split_base(model, "efficientnet_lite0", blocks=2)
    x = _arrays(5)[0].astype(np.float32)
    fast = compile_forward(bottom, "tflite", batch_size=4)
    out = np.concatenate([fast(x[:4]), fast(x[4:])])  # a short last batch is padded, then cut
    reference = bottom(x, training=False).numpy()
    assert out.shape == reference.shape
    np.testing.assert_allclose(out, reference, atol=2e-3 * np.abs(reference).max())


def test_runtime_choice():
    from imgclf.features import choose_runtime
    assert choose_runtime("auto", 10) == "tf" and choose_runtime("auto", 50_000) == "tflite"
    assert choose_runtime("tf", 50_000) == "tf"
