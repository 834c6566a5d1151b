"""augment.py: the right layers, seeded, 0-255 in and out."""
from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.augment import build_augmenter
from imgclf.config import AugmentConfig

ALL = AugmentConfig(rotation=0.1, flip="horizontal_and_vertical", zoom=0.2, translation=0.1,
                    contrast=0.3, brightness=0.3)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).uniform(0, 255, (4, 24, 24, 3)).astype(np.float32)


def test_nothing_to_do_gives_none():
    assert build_augmenter(AugmentConfig(rotation=0, flip="none", zoom=0), seed=0) is None


def test_layers_follow_the_config():
    names = [type(layer).__name__ for layer in build_augmenter(ALL, seed=0).layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                     "RandomContrast", "RandomBrightness", "Lambda"]
    default = [type(layer).__name__ for layer in build_augmenter(AugmentConfig(), seed=0).layers]
    assert default == ["RandomFlip", "RandomRotation", "RandomZoom", "Lambda"]
    rotation = build_augmenter(ALL, seed=0).layers[1]
    assert rotation.fill_mode == "reflect"


def test_output_is_float_0_255_same_shape_and_changed(batch):
    out = np.asarray(build_augmenter(ALL, seed=1)(batch, training=True))
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, batch)


def test_same_seed_same_result_other_seed_other_result(batch):
    a = np.asarray(build_augmenter(ALL, seed=7)(batch, training=True))
    b = np.asarray(build_augmenter(ALL, seed=7)(batch, training=True))
    c = np.asarray(build_augmenter(ALL, seed=8)(batch, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_inference_mode_leaves_images_alone(batch):
    out = np.asarray(build_augmenter(ALL, seed=1)(batch, training=False))
    np.testing.assert_allclose(out, batch)
