"""Fine-tuning step time on cached activations: 1x1 convolutions as TensorFlow convolutions
against PointwiseConv2D's matmul, in one run.

Builds the classifier (EfficientNet-Lite0, ImageNet weights, 10 classes), cuts it where the top K
blocks begin (as the feature cache does), and times imgclf's own train step (trainer._Steps) on
random activations of the cut's shape, for each K and batch size, once with every
PointwiseConv2D computing as a plain Conv2D ("conv") and once as itself ("matmul"). Prints
milliseconds per step, images per second, the time of one 54,000-image epoch, and the ratio.

Example:
    python benchmarks/fine_tune_step.py --image-size 96 --blocks 3 7 --batch-sizes 32
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def time_steps(blocks: int, image_size: int, batch_size: int, steps: int) -> float:
    """Seconds per train step of the top ``blocks`` blocks on cached activations."""
    import keras
    import tensorflow as tf
    from imgclf.features import fine_tune_trainee, split_base
    from imgclf.model import build_classifier, freeze_base, unfreeze_top
    from imgclf.trainer import _Steps
    model = build_classifier("efficientnet_lite0", 10, image_size, weights="imagenet", dropout=0.2,
                             hidden_units=0, seed=0)
    bottom, top = split_base(model, "efficientnet_lite0", blocks=blocks)
    freeze_base(model)
    unfreeze_top(model, "efficientnet_lite0", blocks=blocks)
    trainee = fine_tune_trainee(model, top, bottom.output_shape[1:])  # what imgclf trains
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(trainee.trainable_variables)
    step = _Steps(trainee, optimizer, keras.losses.CategoricalCrossentropy(reduction="none"),
                  tf.constant([], tf.float32), 5, tf.distribute.get_strategy()).train
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (batch_size, *bottom.output_shape[1:])).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size)]
    for _ in range(3):  # trace and warm up
        float(step(x, y)["loss"])
    start = time.perf_counter()
    for _ in range(steps):
        float(step(x, y)["loss"])
    return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 7])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    import keras
    from imgclf.backbones.layers import PointwiseConv2D
    matmul_call = PointwiseConv2D.call
    print(f"{'blocks':>6} {'batch':>5} {'conv ms':>8} {'matmul ms':>9} {'ratio':>6} {'img/s':>6} {'54k epoch s':>11}")
    for blocks in args.blocks:
        for batch in args.batch_sizes:
            PointwiseConv2D.call = lambda self, inputs, training=None: keras.layers.Conv2D.call(self, inputs)
            conv = time_steps(blocks, args.image_size, batch, args.steps)
            PointwiseConv2D.call = matmul_call
            matmul = time_steps(blocks, args.image_size, batch, args.steps)
            print(f"{blocks:>6} {batch:>5} {conv * 1000:>8.1f} {matmul * 1000:>9.1f} {conv / matmul:>5.2f}x "
                  f"{batch / matmul:>6.0f} {54_000 / (batch / matmul):>11.0f}")


if __name__ == "__main__":
    main()
