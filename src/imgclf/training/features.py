"""The fast path: run the frozen part of the network once, cache its output, train on the cache.

While the base is frozen (phase 1) every epoch would run the same base on the same images; while
only its top trains (phase 2) every epoch would run the same frozen bottom again. Instead each
training image is pushed through the frozen part once per *view* (view 0 unaugmented, views
1..K-1 augmented), and the results are cached (float16): the bottom's activations at the cut
below the first unfrozen block, and the pooled features the head sees. Epoch e trains on view
e mod K. The trained layers are the classifier's own (sub-models share them), so the result is
the same Keras model as the plain path and saves, evaluates and exports the same way; its test
predictions reuse the compiled frozen part (``CachedData.predict``). Under several workers each
caches its shard and all are exchanged (training.exchange: every worker ends with this cache).

Example:
    >>> data = CachedData(net, cfg, (images, labels), (val_images, val_labels), Path("runs/a/cache"))
    >>> trainee, batches, val, steps = data.head_phase()
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from imgclf.config import RunConfig
from imgclf.ranking import mirror
from imgclf.runtime.forward import choose_runtime, compile_forward
from imgclf.training.model import Network
from imgclf.training.views import ViewBatches, choose_views, run_views

BATCH = 64  # images per forward pass while caching; the shards are whole batches of it


def allocate(shape: tuple, budget_bytes: int, path: Path, dtype=np.float16) -> np.ndarray:
    """An array in memory when it fits the budget, else a memmap at ``path``.

    Caches are float16 by default: half the memory and disk of float32, and the features and
    activations (ReLU6-bounded, or sums of a few such) keep 3 significant digits, far below
    what changes a trained head's predictions. Readers convert batches back to float32.

    Example:
        >>> allocate((4, 100, 1280), 2**30, Path("/tmp/f.npy")).dtype
        dtype('float16')
    """
    size = np.dtype(dtype).itemsize * math.prod(shape)
    if size <= budget_bytes:
        return np.empty(shape, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if size > free * 0.9:
        raise MemoryError(f"cache of {size / 2**20:.0f} MB fits neither the memory budget nor the disk")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def pooled_model(net: Network):
    """The frozen base and its pooling as one Keras model: image batch -> the features the head
    sees. The feature cache runs it when nothing of the base is fine-tuned; imgclf.health runs it
    to compare images.

    Example:
        >>> pooled_model(net).output_shape
        (None, 1280)
    """
    import keras
    return keras.Model(net.base.input, net.pool(net.base.output))


class CachedData:
    """Builds the caches for a run and hands each phase its trainee and batches.

    Args:
        net: the Network (its base, pool and head are used and trained in place).
        cfg: the run config (train.views (0: see choose_views), train.cache_memory_mb,
            fine-tune depth, batch size, augmentation, seed).
        train, val: (uint8 images, int labels) pairs; val may hold zero images.
        cache_dir: where caches over ``budget`` bytes (default: train.cache_memory_mb) go.
        predict_count: images ``predict`` will be given (the test split), so the frozen part's
            runtime is chosen for the whole job.
        deadline: an imgclf.training.deadline.Deadline, or None: fewer views are made when one more
            would leave too little time to train (a machine slower than the probe measured).
        shards: a multi-worker run's imgclf.training.exchange.WorkerShards, or None: this worker
            caches its shard of whole batches of each split and view, then all are exchanged, so
            each holds one process's cache (no deadline then: one clock must not decide for all).

    Example:
        >>> data = CachedData(net, cfg, (x, y), (vx, vy), Path("runs/a/cache"))
        >>> data.stats["cache_mb"]
        75.9
    """

    def __init__(self, net: Network, cfg: RunConfig, train, val, cache_dir: Path, predict_count: int = 0,
                 deadline=None, shards=None, budget: int | None = None):
        from imgclf.training.exchange import WorkerShards
        self.net, self.cfg, self.cache_dir, self.deadline = net, cfg, cache_dir, deadline
        self.shards = shards or WorkerShards()
        self._predictors: dict = {}  # (runtime, batch size) -> predict's compiled parts
        self.labels, self.val_labels = train[1], val[1]
        self.num_classes = int(net.head.output_shape[-1])
        self.budget = cfg.train.cache_memory_mb * 2**20 if budget is None else budget
        self.views = choose_views(cfg.train.views, len(train[0]), max(cfg.train.epochs, cfg.train.fine_tune_epochs))
        self.stats = {"views": self.views, "cache_mb": 0.0, "cache_mb_on_disk": 0.0, "cache_rows_built": 0}
        self.runtime = choose_runtime(cfg.train.runtime, self.views * len(train[0]) + len(val[0]) + predict_count)
        self.stats["runtime"] = self.runtime
        start = time.perf_counter()
        self._build(train[0], val[0])
        exchanged, tuned = time.perf_counter(), cfg.train.fine_tune_epochs  # every worker's shards, to all
        received = sum(self.shards.fill(arrays, BATCH, axis=1) for arrays in (
            [self.feats] + ([self.acts] if tuned else []), [self.val_feats] + ([self.val_acts] if tuned else [])))
        self.stats["cache_seconds"] = round(time.perf_counter() - start, 2)
        if self.shards.count > 1:
            self.stats["cache_exchange_seconds"] = round(time.perf_counter() - exchanged, 2)
            self.stats["cache_mb_received"] = round(received / 2**20, 1)

    def _alloc(self, name: str, shape: tuple) -> np.ndarray:
        array = allocate(shape, self.budget, self.cache_dir / f"{name}.npy")
        mb = array.nbytes / 2**20
        self.stats["cache_mb"] += mb
        if isinstance(array, np.memmap):
            self.stats["cache_mb_on_disk"] += mb
        else:
            self.budget -= array.nbytes
        return array

    def _build(self, images: np.ndarray, val_images: np.ndarray) -> None:
        import keras

        from imgclf.data.augment import build_augmenter
        t, views = self.cfg.train, self.views
        augmenter = build_augmenter(self.cfg.data.augment, self.cfg.seed)
        pool = self.net.pool
        dim = int(self.net.head.input_shape[-1])
        more = None if self.deadline is None or self.shards.count > 1 else (
            lambda v, view_s: not self.deadline.ends_views(v, views, view_s))
        span, val_span = self.shards.span(len(images), BATCH), self.shards.span(len(val_images), BATCH)
        self.stats["cache_rows_built"] = views * (span[1] - span[0]) + val_span[1] - val_span[0]
        if t.fine_tune_epochs:
            bottom, self.top = self.net.split_base(layers=t.fine_tune_layers, blocks=t.fine_tune_blocks)
            shape = tuple(bottom.output_shape[1:])
            self.acts = self._alloc("train_activations", (views, len(images)) + shape)
            self.val_acts = self._alloc("val_activations", (1, len(val_images)) + shape)
            self.frozen = bottom
            to_acts = self.forward = compile_forward(bottom, self.runtime)
            # the top is frozen too while the features are made, so the same runtime serves: LiteRT ran
            # the 7-block top 1.5x as fast as TensorFlow (96 px; 128 -> 96 s of caching, full Fashion-MNIST)
            acts_in = keras.Input(shape, name="activations")
            to_features = compile_forward(keras.Model(acts_in, pool(self.top(acts_in))), self.runtime)
            self.feats = self._alloc("train_features", (views, len(images), dim))
            self.val_feats = self._alloc("val_features", (1, len(val_images), dim))

            def features(acts, feats, rows):
                return lambda v: run_views(to_features, acts[v], 1, None, feats[v:v + 1], span=rows)
            made = run_views(to_acts, images, views, augmenter, self.acts, more=more, span=span,
                             after=features(self.acts, self.feats, span))
            run_views(to_acts, val_images, 1, None, self.val_acts, span=val_span,
                      after=features(self.val_acts, self.val_feats, val_span))
            self.acts = self.acts[:made]
        else:
            self.frozen = pooled_model(self.net)
            to_features = self.forward = compile_forward(self.frozen, self.runtime)
            self.feats = self._alloc("train_features", (views, len(images), dim))
            self.val_feats = self._alloc("val_features", (1, len(val_images), dim))
            made = run_views(to_features, images, views, augmenter, self.feats, more=more, span=span)
            run_views(to_features, val_images, 1, None, self.val_feats, span=val_span)
        self.feats = self.feats[:made]
        if made < views:
            self.views = self.stats["views"] = made
            self.stats["views_planned"] = views

    def _phase(self, trainee, cache, val_cache, agree=None):
        from imgclf.training.phases import Phase
        bs, seed = self.cfg.data.batch_size, self.cfg.seed
        train = ViewBatches(cache, self.labels, self.num_classes, bs, seed, mixup=self.cfg.train.mixup)
        val = ViewBatches(val_cache, self.val_labels, self.num_classes, bs, shuffle=False)
        return Phase(trainee, train.epoch, (lambda: val.epoch(0)) if len(self.val_labels) else None,
                     len(train), agree)

    def head_phase(self):
        """Phase 1: the head alone, on pooled features; with several workers each trains it
        whole (every worker holds the whole cache) and they agree once an epoch (Phase.agree)."""
        return self._phase(self.net.head, self.feats, self.val_feats,
                           self.shards.first if self.shards.count > 1 else None)

    def fine_tune_phase(self):
        """Phase 2: the base's top, pooling and head, on the bottom's activations."""
        trainee = self.net.top_trainee(self.top, self.acts.shape[2:])
        return self._phase(trainee, self.acts, self.val_acts)

    def predict(self, images: np.ndarray, batch_size: int = 64, flip: bool = False) -> np.ndarray:
        """The trained classifier's probabilities, computed the fast way: the frozen part on the
        compiled forward the caches were built with (LiteRT for large jobs), the rest (the base's
        top, pooling and head; or the head alone) as a tf.function of the model's own layers.
        With several workers each computes its shard and all get all rows (every worker calls
        it, with the same images). Call after training: only layers above the frozen part changed.

        Args:
            images: uint8 or float 0-255 RGB (N, S, S, 3).
            batch_size: images per forward pass.
            flip: predict each image's mirror image instead (a test-time flip's other half).

        Returns:
            float32 (N, num_classes), as ``model.predict`` gives to within LiteRT's rounding.

        Example:
            >>> data.predict(test_images).argmax(1)[:3]
            array([9, 2, 1])
        """
        forward, rest = self._predictor(choose_runtime(self.cfg.train.runtime, len(images)), batch_size)

        def run(part):
            out = np.empty((len(part), self.num_classes), np.float32)
            for start in range(0, len(part), batch_size):
                x = np.asarray(part[start:start + batch_size], np.float32)
                x = mirror(x) if flip else x
                out[start:start + len(x)] = rest(forward(x)).numpy()
            return out
        return self.shards.predict(run, images, batch_size)

    def _predictor(self, runtime: str, batch_size: int):
        """(the frozen part's forward, the rest as one tf.function) for ``predict``, made once per
        runtime and batch size: val, test and their mirror images reuse them (a tf.function made
        anew at every call traced anew, and TensorFlow warned about it)."""
        import tensorflow as tf
        if (runtime, batch_size) not in self._predictors:
            sized = runtime == self.runtime and (runtime == "tf" or batch_size <= 64)  # sized by _build
            forward = self.forward if sized else compile_forward(self.frozen, runtime, batch_size)
            head, pool, top = self.net.head, self.net.pool, self.top if self.cfg.train.fine_tune_epochs else None
            rest = tf.function(lambda a: head(pool(top(a, training=False)) if top is not None else a, training=False),
                               reduce_retracing=True)
            self._predictors[runtime, batch_size] = (forward, rest)
        return self._predictors[runtime, batch_size]
