"""The probe: a few seconds of measurement that tell the planner what things cost on this machine.

It times, on the network built at the probe size, one forward pass of the frozen base and a few
fine-tuning steps of the top, and (for images that are not kept decoded) the decoding of a
sample. Other sizes and depths are scaled by their multiply-adds, which the network's layers
give exactly: EfficientNet-Lite's forward rate on this CPU follows them closely (224 px: 100
images/s, 96 px: 544, a ratio of 5.4 for 5.4 times the work; ../shared/NOTES.md). A fine-tuning
step across sizes does not (full Fashion-MNIST, 3 blocks: 96 px took 1.2x of 64 px, for 2.25x
the multiply-adds; benchmarks/probe_scaling.py), so a price at another size is an upper bound
above the probe size and a lower one below; the default budget probes the recipe it prices at
its own size (imgclf.training.budget.plan_run), and the run's deadline corrects the rest.

Example:
    >>> costs = probe(net, dataset, cfg)
    >>> round(costs.fine_tune_epoch(96, 3, 1000), 1)
    1.1
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

PROBE_BATCH = 32
FORWARD_CALLS, STEP_CALLS = 5, 5
# LiteRT + XNNPACK against a tf.function on EfficientNet-Lite's bottom (6 blocks cut), batches of
# 64: 2.7x at 96 and 160 px, 3.7x at 224 px (TensorFlow slows at 224 px; LiteRT follows the
# multiply-adds), 2026-12-03; earlier 1.7-2.9x
LITERT_SPEEDUP = 2.7
# converting the frozen bottom and the features' top to TFLite through a frozen graph: 2.1 s
# (1.7 + 0.4) at 64-224 px on a quiet day, 2026-12-06; from_keras_model took 6.9 s that day and
# 13 + 3 s on a slow one, so 5 s allows for such days
CONVERSION_S = 5.0
HEAD_STEP_S = 0.002  # one head step on pooled features (a 1280 x classes matmul and Adam)
PHASE_START_S = 2.5  # tracing a phase's train and evaluation steps
FINISH_S = 8.0  # saving the model, metrics, four plots, Grad-CAM, the report (7 s at 224 px, 2026-12-03)


def layer_flops(layer) -> float:
    """Multiply-adds of one forward pass of ``layer`` for one image (0 for layers without weights)."""
    import keras
    if not layer.weights:
        return 0.0
    out = layer.output.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return float(out[1] * out[2] * out[3] * kh * kw)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return float(out[1] * out[2] * out[3] * kh * kw * layer.input.shape[-1] / layer.groups)
    if isinstance(layer, keras.layers.Dense):
        return float(layer.input.shape[-1] * out[-1])
    return float(np.prod([d for d in out[1:] if d]))  # BatchNorm and the like: one op a value


@dataclass
class MeasuredCosts:
    """The planner's Costs from measured rates; sizes and depths other than the probe's are
    scaled by their multiply-adds (imgclf.training.planner.Costs)."""

    probe_size: int
    block_flops: list  # multiply-adds per block at the probe size, stem first
    forward_rate: float  # multiply-adds per second of the frozen base in a tf.function
    step_s_per_flop: float  # seconds of a fine-tuning step per multiply-add of the top, per image
    step_s_fixed: float  # and what it takes per image whatever the depth (pooling, head, Adam)
    decode_s: float  # decoding and resizing one image (0: kept decoded)
    augment_s: float  # augmenting one image at the probe size
    build_s: float  # building the network once more at another size
    litert_available: bool
    batch_size: int
    converted: set = field(default_factory=set)  # (size, blocks) whose conversions are cached

    def _flops(self, size: int, blocks: slice) -> float:
        return sum(self.block_flops[blocks]) * (size / self.probe_size) ** 2

    @property
    def runtimes(self) -> tuple:
        return ("tf", "tflite") if self.litert_available else ("tf",)

    def _rate(self, runtime: str) -> float:
        return self.forward_rate * (LITERT_SPEEDUP if runtime == "tflite" else 1.0)

    def fixed(self, recipe) -> float:
        seconds = FINISH_S + 2 * PHASE_START_S
        if recipe.image_size != self.probe_size:
            seconds += self.build_s
        return seconds


    def load(self, size: int, count: int) -> float:
        return self.decode_s * count

    def cache(self, size: int, blocks: int, count: int, augmented: int, runtime: str) -> float:
        seconds = count * self._flops(size, slice(None)) / self._rate(runtime)
        seconds += augmented * self.augment_s * (size / self.probe_size) ** 2
        if runtime == "tflite" and (size, blocks) not in self.converted:
            seconds += CONVERSION_S  # the frozen bottom, and the top for the features pass
        return seconds

    def head_epoch(self, count: int) -> float:
        return -(-count // self.batch_size) * HEAD_STEP_S

    def fine_tune_epoch(self, size: int, blocks: int, count: int) -> float:
        if not blocks:
            return 0.0
        scale = (size / self.probe_size) ** 2
        return count * (self._flops(size, slice(-blocks, None)) * self.step_s_per_flop + self.step_s_fixed * scale)

    def predict(self, size: int, blocks: int, count: int, runtime: str) -> float:
        bottom = self._flops(size, slice(None, -blocks) if blocks else slice(None))
        top = self._flops(size, slice(-blocks, None)) if blocks else 0.0
        return count * (bottom / self._rate(runtime) + top / self._rate("tf"))


def probe(net, decode_sample: list[str], cfg, build_s: float, blocks: int) -> MeasuredCosts:
    """Measure the rates the planner needs, on ``net`` (built at the probe size).

    Args:
        net: the Network at the probe size.
        decode_sample: image paths to time decoding on ([] when the images are kept decoded).
        cfg: the run config (batch size, runtime).
        build_s: what building ``net`` took.
        blocks: the fine-tuning depth to time a step at.

    Returns:
        MeasuredCosts.
    """
    import tensorflow as tf

    from imgclf.runtime import choose_runtime
    size = int(net.model.input_shape[1])
    block_flops = [sum(layer_flops(layer) for layer in block) for block in net.spec.layer_blocks(net.base)]
    x = np.random.default_rng(0).uniform(0, 255, (PROBE_BATCH, size, size, 3)).astype(np.float32)
    forward = tf.function(lambda batch: net.base(batch, training=False))
    per_image = _median_seconds(lambda: forward(x), FORWARD_CALLS) / PROBE_BATCH
    per_flop, fixed = _step_costs(net, blocks, cfg.data.batch_size, block_flops)
    return MeasuredCosts(size, block_flops, sum(block_flops) / per_image, per_flop, fixed,
                         _decode_seconds(decode_sample, size), _augment_seconds(cfg, x), build_s,
                         choose_runtime("auto", 10**9) == "tflite", cfg.data.batch_size,
                         _converted(net, blocks))


def _median_seconds(call, times: int) -> float:
    """The median seconds of ``call`` over ``times`` calls, after one to trace it: oneDNN's first
    calls of a new shape are slower (measured: 250 images/s for the second, 370 later)."""
    call()
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def _step_costs(net, blocks: int, batch_size: int, block_flops: list) -> tuple[float, float]:
    """(seconds per multiply-add of the top, seconds whatever the depth), per image, fitted
    through a step timed at ``blocks`` and at one block: the time does not scale with the
    multiply-adds alone (at 224 px one block took half what its share of six predicted)."""
    deep, top = _time_step(net, blocks, batch_size), sum(block_flops[-blocks:])
    if blocks <= 1:
        return deep / top, 0.0
    shallow, one = _time_step(net, 1, batch_size), block_flops[-1]
    per_flop = max(0.0, (deep - shallow) / (top - one))
    fixed = max(0.0, deep - per_flop * top)
    return (per_flop, fixed) if fixed > 0 else (deep / top, 0.0)


def _time_step(net, blocks: int, batch_size: int) -> float:
    """Seconds per image of a fine-tuning step of the top ``blocks`` (traced first, then timed)."""
    import keras
    import tensorflow as tf

    from imgclf.training.steps import FusedAdam, Steps
    bottom, top = net.split_base(blocks=blocks)
    net.freeze_base()
    net.unfreeze_top(blocks=blocks)
    trainee = net.top_trainee(top, bottom.output_shape[1:])
    weights = [np.array(w) for w in net.model.get_weights()]
    optimizer = FusedAdam(1e-6)
    optimizer.build(trainee.trainable_variables)
    steps = Steps(trainee, optimizer, keras.losses.CategoricalCrossentropy(reduction="none"),
                  tf.constant([], tf.float32), 1, tf.distribute.get_strategy())
    shape = (batch_size, *bottom.output_shape[1:])
    acts = np.random.default_rng(0).uniform(0, 6, shape).astype(np.float32)
    labels = np.eye(int(net.head.output_shape[-1]), dtype=np.float32)[np.zeros(batch_size, int)]
    seconds = _median_seconds(lambda: float(steps.train(acts, labels)["loss"]), STEP_CALLS) / batch_size
    net.model.set_weights(weights)  # the probe must not have trained anything
    net.freeze_base()
    return seconds


def _augment_seconds(cfg, batch: np.ndarray) -> float:
    """Seconds to augment one image of ``batch``'s size, as the cache's views are made."""
    import tensorflow as tf

    from imgclf.data.augment import build_augmenter
    augmenter = build_augmenter(cfg.data.augment, cfg.seed)
    if augmenter is None:
        return 0.0
    augment = tf.function(lambda x: augmenter(x, training=True))
    return _median_seconds(lambda: augment(batch), 3) / len(batch)


def _decode_seconds(paths: list[str], size: int) -> float:
    if not paths:
        return 0.0
    from imgclf.data import load_images
    start = time.perf_counter()
    load_images(paths, size)
    return (time.perf_counter() - start) / len(paths)


def _converted(net, blocks: int) -> set:
    """{(size, blocks)} when the conversions of the probe network's frozen bottom are cached."""
    from imgclf.files import user_cache_dir
    from imgclf.runtime import model_key
    bottom, _ = net.split_base(blocks=blocks)
    cached = (user_cache_dir() / "tflite" / f"{model_key(bottom)}.tflite").is_file()
    return {(int(net.model.input_shape[1]), blocks)} if cached else set()
