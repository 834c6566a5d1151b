"""The fast path: run the frozen part of the network once, cache its output, train on the cache.

While the base is frozen (phase 1) every epoch would run the same base on the same images; while
only its top trains (phase 2) every epoch would run the same frozen bottom again. Instead each
training image is pushed through the frozen part once per *view* (view 0 unaugmented, views
1..K-1 augmented), and the results are cached: the bottom's activations at the cut below the
first unfrozen block, and the pooled features the head sees. Epoch e trains on view e mod K.
The trained layers are the classifier's own (sub-models share them), so the result is the same
Keras model as the plain path and saves, evaluates and exports the same way.

Example:
    >>> data = CachedData(model, "efficientnet_lite0", cfg, images, labels, val_images, val_labels)
    >>> trainee, batches, val = data.head_phase()
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from imgclf.config import RunConfig
from imgclf.model import base_of, head_of, select_top


def cut_tensor(model, backbone: str, layers: int = 0, blocks: int = 0):
    """The tensor where fine-tuning's trainable part begins: the input of the block holding the
    lowest layer to unfreeze (a cut inside a block would sever its residual connection)."""
    from imgclf.backbones import layer_blocks
    base = base_of(model)
    lowest = select_top(model, backbone, layers=layers, blocks=blocks)[0]
    for group in layer_blocks(backbone, base):
        if lowest in group:
            return group[0].input
    raise AssertionError(f"{lowest.name} is in no block")  # layer_blocks covers every layer


def split_base(model, backbone: str, layers: int = 0, blocks: int = 0):
    """(bottom, top) sub-models of the base around the fine-tuning cut, sharing its layers.

    Example:
        >>> bottom, top = split_base(model, "efficientnet_lite0", blocks=3)
        >>> bottom.output_shape
        (None, 3, 3, 192)
    """
    import keras
    base = base_of(model)
    cut = cut_tensor(model, backbone, layers, blocks)
    return keras.Model(base.input, cut, name="bottom"), keras.Model(cut, base.output, name="top")


def compile_forward(model, runtime: str = "tf", batch_size: int = 64, threads: int | None = None):
    """A fast function from float32 batches to the frozen model's outputs.

    "tflite" converts the model to TFLite and runs it under LiteRT's XNNPACK delegate, measured
    1.7-1.9x faster than TensorFlow on this kind of CPU for EfficientNet-Lite; batches are padded
    to ``batch_size`` so the interpreter is sized once. "tf" is a tf.function of the Keras model.

    Args:
        model: a frozen Keras model (bottom of the base, or base + pooling).
        runtime: "tf" or "tflite".
        batch_size: the largest batch it will be given.
        threads: interpreter threads; None for every core.

    Returns:
        A function ``f(x: float32 (B, ...)) -> np.ndarray``.

    Example:
        >>> f = compile_forward(bottom, "tflite")
        >>> f(np.zeros((3, 96, 96, 3), np.float32)).shape
        (3, 3, 3, 192)
    """
    import tensorflow as tf
    if runtime == "tf":
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    import os
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=tflite_bytes(model), num_threads=threads or os.cpu_count())
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], [batch_size, *inp["shape"][1:]])
    interpreter.allocate_tensors()

    def forward(x):
        x = np.asarray(x, np.float32)
        n = len(x)
        if n < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), np.float32)])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])[:n].copy()
    return forward


def tflite_bytes(model) -> bytes:
    """The model converted to TFLite, cached under the user cache dir by a hash of its structure
    and weights: the frozen part of a backbone is the same run after run, and converting it costs
    7-20 s on two cores.

    Example:
        >>> len(tflite_bytes(bottom)) > 1000
        True
    """
    import contextlib
    import hashlib
    import io
    import json

    import tensorflow as tf

    from imgclf.backbones.efficientnet_lite import cache_dir
    from imgclf.runs import write_bytes_atomic
    config = {k: v for k, v in model.get_config().items() if k != "name"}  # names vary by process
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    path = cache_dir() / "tflite" / f"{digest.hexdigest()[:32]}.tflite"
    if path.is_file():
        return path.read_bytes()
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its whole signature
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    write_bytes_atomic(path, data)
    return data


def choose_runtime(requested: str, count: int) -> str:
    """"tflite" for large jobs when LiteRT is installed (conversion costs a few seconds), else "tf".

    Example:
        >>> choose_runtime("auto", 100)
        'tf'
    """
    if requested != "auto":
        return requested
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tf"
    return "tflite" if count >= 2000 else "tf"


def allocate(shape: tuple, budget_bytes: int, path: Path) -> np.ndarray:
    """A float32 array in memory when it fits the budget, else a memmap at ``path``.

    Example:
        >>> allocate((4, 100, 1280), 2**30, Path("/tmp/f.npy")).dtype
        dtype('float32')
    """
    size = 4 * math.prod(shape)
    if size <= budget_bytes:
        return np.empty(shape, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if size > free * 0.9:
        raise MemoryError(f"cache of {size / 2**20:.0f} MB fits neither the memory budget nor the disk")
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def run_views(fn, images: np.ndarray, views: int, augmenter, out: np.ndarray, batch_size: int = 64) -> None:
    """Fill ``out[v, i]`` with ``fn(view v of image i)``; view 0 is the image itself.

    Args:
        fn: a compiled function from float32 0-255 image batches to outputs.
        images: uint8 (N, S, S, 3).
        views: number of views K; out has shape (K, N, ...).
        augmenter: a Keras augmentation model for views 1..K-1, or None (then all views equal).
        out: the array to fill.
        batch_size: images per forward pass.
    """
    for v in range(views):
        for start in range(0, len(images), batch_size):
            x = np.asarray(images[start:start + batch_size], np.float32)
            if v and augmenter is not None:
                x = augmenter(x, training=True)
            out[v, start:start + len(x)] = np.asarray(fn(x))


class ViewBatches:
    """(x, one-hot y) batches from a (K, N, ...) cache: epoch e reads view e mod K, in a seeded
    order that changes every epoch (or in order, for validation)."""

    def __init__(self, cache: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 seed: int = 0, shuffle: bool = True):
        self.cache, self.batch_size, self.seed, self.shuffle = cache, batch_size, seed, shuffle
        self.onehot = np.eye(num_classes, dtype=np.float32)[labels]

    def __len__(self) -> int:
        return math.ceil(len(self.onehot) / self.batch_size)

    def epoch(self, index: int = 0):
        """The batches of epoch ``index`` (0-based)."""
        view = self.cache[index % self.cache.shape[0]]
        n = len(self.onehot)
        order = np.random.default_rng([self.seed, index]).permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield np.asarray(view[idx]), self.onehot[idx]


class CachedData:
    """Builds the caches for a run and hands each phase its trainee and batches.

    Args:
        model: the classifier (its base, pool and head are used and trained in place).
        backbone: registry name, for the block structure.
        cfg: the run config (train.views, train.cache_memory_mb, fine-tune depth, batch size,
            augmentation, seed).
        train, val: (uint8 images, int labels) pairs; val may hold zero images.
        cache_dir: where caches over the memory budget go.

    Example:
        >>> data = CachedData(model, "efficientnet_lite0", cfg, (x, y), (vx, vy), Path("runs/a/cache"))
        >>> data.stats["cache_mb"]
        75.9
    """

    def __init__(self, model, backbone: str, cfg: RunConfig, train, val, cache_dir: Path):
        self.model, self.cfg, self.cache_dir = model, cfg, cache_dir
        self.labels, self.val_labels = train[1], val[1]
        self.num_classes = int(head_of(model).output_shape[-1])
        self.budget = cfg.train.cache_memory_mb * 2**20
        self.stats = {"views": cfg.train.views, "cache_mb": 0.0, "cache_mb_on_disk": 0.0}
        self.runtime = choose_runtime(cfg.train.runtime, cfg.train.views * len(train[0]) + len(val[0]))
        self.stats["runtime"] = self.runtime
        start = time.perf_counter()
        self._build(backbone, train[0], val[0])
        self.stats["cache_seconds"] = round(time.perf_counter() - start, 2)

    def _alloc(self, name: str, shape: tuple) -> np.ndarray:
        array = allocate(shape, self.budget, self.cache_dir / f"{name}.npy")
        mb = array.nbytes / 2**20
        self.stats["cache_mb"] += mb
        if isinstance(array, np.memmap):
            self.stats["cache_mb_on_disk"] += mb
        else:
            self.budget -= array.nbytes
        return array

    def _build(self, backbone: str, images: np.ndarray, val_images: np.ndarray) -> None:
        import tensorflow as tf
        from imgclf.augment import build_augmenter
        t, views = self.cfg.train, self.cfg.train.views
        augmenter = build_augmenter(self.cfg.data.augment, self.cfg.seed)
        pool, base = self.model.get_layer("pool"), base_of(self.model)
        dim = int(head_of(self.model).input_shape[-1])
        if t.fine_tune_epochs:
            bottom, self.top = split_base(self.model, backbone, t.fine_tune_layers, t.fine_tune_blocks)
            shape = tuple(bottom.output_shape[1:])
            self.acts = self._alloc("train_activations", (views, len(images)) + shape)
            self.val_acts = self._alloc("val_activations", (1, len(val_images)) + shape)
            to_acts = compile_forward(bottom, self.runtime)
            run_views(to_acts, images, views, augmenter, self.acts)
            run_views(to_acts, val_images, 1, None, self.val_acts)
            to_features = tf.function(lambda a: pool(self.top(a, training=False)), reduce_retracing=True)
            self.feats = self._alloc("train_features", (views, len(images), dim))
            self.val_feats = self._alloc("val_features", (1, len(val_images), dim))
            for acts, feats in ((self.acts, self.feats), (self.val_acts, self.val_feats)):
                for v in range(acts.shape[0]):
                    run_views(to_features, acts[v], 1, None, feats[v:v + 1])
        else:
            import keras
            to_features = compile_forward(keras.Model(base.input, pool(base.output)), self.runtime)
            self.feats = self._alloc("train_features", (views, len(images), dim))
            self.val_feats = self._alloc("val_features", (1, len(val_images), dim))
            run_views(to_features, images, views, augmenter, self.feats)
            run_views(to_features, val_images, 1, None, self.val_feats)

    def _phase(self, trainee, cache, val_cache):
        from imgclf.trainer import Phase
        bs, seed = self.cfg.data.batch_size, self.cfg.seed
        train = ViewBatches(cache, self.labels, self.num_classes, bs, seed)
        val = ViewBatches(val_cache, self.val_labels, self.num_classes, bs, shuffle=False)
        return Phase(trainee, train.epoch, (lambda: val.epoch(0)) if len(self.val_labels) else None,
                     len(train))

    def head_phase(self):
        """Phase 1: the head alone, on pooled features."""
        return self._phase(head_of(self.model), self.feats, self.val_feats)

    def fine_tune_phase(self):
        """Phase 2: the base's top, pooling and head, on the bottom's activations."""
        import keras
        acts = keras.Input(self.acts.shape[2:], name="activations")
        pooled = self.model.get_layer("pool")(self.top(acts))
        trainee = keras.Model(acts, head_of(self.model)(pooled), name="fine_tune_trainee")
        return self._phase(trainee, self.acts, self.val_acts)
