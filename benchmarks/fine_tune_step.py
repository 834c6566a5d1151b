"""Fine-tuning step time on cached activations, in one run: what imgclf's two step-time changes
buy, PointwiseConv2D's matmul (against TensorFlow's 1x1 convolution) and FusedAdam (against
Keras' Adam).

Builds the classifier (EfficientNet-Lite0, ImageNet weights, 10 classes), cuts it where the top K
blocks begin (as the feature cache does), and times imgclf's own train step (trainer._Steps) on
random activations of the cut's shape, for each K and batch size, in three variants that train
the same model: "conv" (every PointwiseConv2D computed as a plain Conv2D, Keras' Adam: imgclf
before both changes), "matmul" (PointwiseConv2D as itself, Keras' Adam) and "imgclf" (matmul
and FusedAdam: today's step). The variants take turns, ``--rounds`` rounds of ``--steps`` steps
each, and each one's median round is reported, because on a 2-core machine the same step's time
drifts by 10-20% over a minute. Prints milliseconds per step, the ratios to "conv", images per
second and the time of one 54,000-image epoch for imgclf's step.

Example:
    python benchmarks/fine_tune_step.py --image-size 64 --blocks 10 --batch-sizes 32
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

VARIANTS = ("conv", "matmul", "imgclf")


def step_functions(blocks: int, image_size: int, batch_size: int):
    """The three variants' train steps on one trainee, and a batch of the cut's shape."""
    import keras
    import tensorflow as tf
    from imgclf.backbones.layers import PointwiseConv2D
    from imgclf.training.model import build_network
    from imgclf.training.steps import FusedAdam, Steps
    net = build_network("efficientnet_lite0", 10, image_size, weights="imagenet", dropout=0.2, hidden_units=0,
                        seed=0)
    bottom, top = net.split_base(blocks=blocks)
    net.freeze_base()
    net.unfreeze_top(blocks=blocks)
    trainee = net.top_trainee(top, bottom.output_shape[1:])  # what imgclf trains
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (batch_size, *bottom.output_shape[1:])).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size)]
    matmul_call, steps = PointwiseConv2D.call, {}
    for name in VARIANTS:
        optimizer = (FusedAdam if name == "imgclf" else keras.optimizers.Adam)(1e-4)
        optimizer.build(trainee.trainable_variables)
        step = Steps(trainee, optimizer, keras.losses.CategoricalCrossentropy(reduction="none"),
                      tf.constant([], tf.float32), 5, tf.distribute.get_strategy()).train
        if name == "conv":  # the layer's implementation is read when the step is traced
            PointwiseConv2D.call = lambda self, inputs, training=None: keras.layers.Conv2D.call(self, inputs)
        try:
            for _ in range(3):  # trace and warm up
                float(step(x, y)["loss"])
        finally:
            PointwiseConv2D.call = matmul_call
        steps[name] = step
    return steps, x, y


def time_variants(steps: dict, x, y, rounds: int, count: int) -> dict:
    """Median seconds per step of each variant over ``rounds`` interleaved rounds."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(count):
                float(step(x, y)["loss"])
            times[name].append((time.perf_counter() - start) / count)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--blocks", type=int, nargs="+", default=[3, 7])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'size':>4} {'blocks':>6} {'batch':>5} {'conv ms':>8} {'matmul ms':>9} {'imgclf ms':>9} "
          f"{'matmul x':>8} {'imgclf x':>8} {'img/s':>6} {'54k epoch s':>11}")
    for blocks in args.blocks:
        for batch in args.batch_sizes:
            t = time_variants(*step_functions(blocks, args.image_size, batch), args.rounds, args.steps)
            print(f"{args.image_size:>4} {blocks:>6} {batch:>5} {t['conv'] * 1000:>8.1f} {t['matmul'] * 1000:>9.1f} "
                  f"{t['imgclf'] * 1000:>9.1f} {t['conv'] / t['matmul']:>7.2f}x {t['conv'] / t['imgclf']:>7.2f}x "
                  f"{batch / t['imgclf']:>6.0f} {54_000 / (batch / t['imgclf']):>11.0f}", flush=True)


if __name__ == "__main__":
    main()
