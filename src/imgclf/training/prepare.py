"""From a config to what training needs: the dataset, the settled config and the network.

Every check that can fail on the user's input runs here, before a run directory exists: the
data, the backbone, the input size, the fine-tuning depth, and whether the budget can be met.

Example:
    >>> job = prepare(load_config(None, {"data.path": "photos"}), started=time.monotonic())
    >>> job.cfg.train.epochs, job.plan.recipe.epochs
    (8, 8)
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.config import RunConfig
from imgclf.errors import ImgclfError


@dataclass
class Job:
    """A run's settled config, its data, the network it trains (with its backbone spec) and,
    when it was planned, the Plan."""

    cfg: RunConfig
    dataset: Any  # imgclf.data.Dataset
    net: Any  # imgclf.training.model.Network
    plan: Any = None  # imgclf.training.planner.Plan
    started: float = 0.0  # time.monotonic() when the run began: the budget's clock


def prepare(cfg: RunConfig, source: Path | None = None, started: float | None = None, plan: bool = True,
            verbose: bool = False, share=None) -> Job:
    """Load the dataset (from ``source``, else the config's path), settle the name, plan what
    the user left open (``plan``; else the former fixed defaults), build the network at the
    settled size and check the fine-tuning depth.

    Args:
        cfg: the resolved config.
        source: a split.csv to load instead of the config's data (resume).
        started: time.monotonic() when the run began: the budget's clock.
        plan: plan to the budget (the cached path in one process); False: fixed defaults.
        verbose: print the plan.
        share: a multi-worker run's training.exchange.WorkerShards: each worker checks its
            shard of the files (data.load_dataset).
    """
    import keras

    from imgclf import data as data_mod
    from imgclf.backbones import get_spec
    from imgclf.training.budget import needs_plan, plan_run, unplanned
    from imgclf.training.model import build_network, choose_image_size
    if not cfg.data.path:
        raise ImgclfError("no data given: pass a dataset folder or CSV (or set data.path in the config)")
    spec = get_spec(cfg.model.backbone)
    keras.utils.set_random_seed(cfg.seed)
    dataset = data_mod.load_dataset(source or cfg.data.path, val_fraction=cfg.data.val_fraction,
                                    test_fraction=cfg.data.test_fraction, seed=cfg.seed,
                                    max_pixels=cfg.data.max_pixels, share=share)
    if cfg.data.image_size:
        choose_image_size(cfg.data.image_size, spec, dataset.report)  # a size too small fails here
    cfg = dataclasses.replace(cfg, name=cfg.name or Path(cfg.data.path).stem or "run")

    def build(size: int):
        return build_network(spec, dataset.num_classes, size, weights=cfg.model.weights,
                             dropout=cfg.model.dropout, hidden_units=cfg.model.hidden_units, seed=cfg.seed)
    the_plan, started = None, started or time.monotonic()
    if plan and cfg.train.feature_cache and needs_plan(cfg):
        cfg, net, the_plan = plan_run(cfg, spec, dataset, started, verbose, build)
    else:
        cfg = unplanned(cfg, spec)
        size = choose_image_size(cfg.data.image_size, spec, dataset.report)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size))
        net = build(size)
    if cfg.train.fine_tune_epochs:
        net.select_top(layers=cfg.train.fine_tune_layers, blocks=cfg.train.fine_tune_blocks)
    return Job(cfg, dataset, net, the_plan, started)


def load_split_images(job: Job, record, shards=None) -> dict:
    """Each split's images at the run's size. A split whose images load_dataset kept decoded
    (small images) stays so, resized a batch at a time when read (data.ResizedImages: 0.2 GB
    instead of 1.9 GB for Fashion-MNIST at 96 px; under several workers each resizes only the
    rows of its shards); the others are decoded and resized now: in memory while they fit
    ``train.cache_memory_mb`` beside the feature cache (which is read every epoch, the images
    once), else into the run's cache folder and read from there a batch at a time
    (data.DiskImages: 6,500 photos at 224 px are 0.98 GB). Under several workers
    (``shards``, a training.exchange.WorkerShards) on the cached path each decodes only the rows
    of its own shards, which are all it reads (data.shards.ShardImages decodes any other row
    when read: the chief's mistakes grid).

    Example:
        >>> load_split_images(job, record)["train"].shape
        (900, 96, 96, 3)
    """
    from imgclf import data as data_mod
    cfg, dataset = job.cfg, job.dataset
    size = cfg.data.image_size
    from imgclf.training.features import BATCH
    sharded = shards is not None and shards.count > 1 and cfg.train.feature_cache
    rows = {split: shards.span(len(paths), BATCH) if sharded and any(p not in dataset.decoded for p in paths)
            else (0, len(paths)) for split, paths in dataset.paths.items()}
    decoding = [p for split in data_mod.SPLITS for p in dataset.paths[split][slice(*rows[split])]
                if p not in dataset.decoded]
    streamed = len(decoding) * size * size * 3 > cfg.train.cache_memory_mb * 2**20 - cache_bytes(job)
    cache_dir = record.cache_dir if cfg.data.cache == "disk" or streamed else None
    arrays = {split: data_mod.load_images(dataset.paths[split], size, max_pixels=cfg.data.max_pixels,
                                          cache_dir=cache_dir, decoded=dataset.decoded, lazy=True, streamed=streamed,
                                          rows=rows[split])
              for split in data_mod.SPLITS}
    dataset.decoded.clear()
    return arrays


def cache_bytes(job: Job) -> int:
    """The feature cache's expected size (float16): pooled features, and with fine-tuning the
    activations at the cut, for every cached view of the training split and for validation."""
    import math

    from imgclf.training.views import choose_views
    t, counts = job.cfg.train, {s: len(p) for s, p in job.dataset.paths.items()}
    if not t.feature_cache:
        return 0
    views = choose_views(t.views, counts["train"], max(t.epochs or 1, t.fine_tune_epochs or 0))
    per_row = int(job.net.head.input_shape[-1])
    if t.fine_tune_epochs:
        per_row += math.prod(job.net.cut_tensor(layers=t.fine_tune_layers, blocks=t.fine_tune_blocks).shape[1:])
    return (views * counts["train"] + counts["val"]) * per_row * 2


def _held_bytes(arrays: dict) -> int:
    """Bytes of the images held in memory (not those read from disk or resized when read; of a
    worker's ShardImages, the rows it holds)."""
    import numpy as np
    held = [getattr(a, "held", a) for a in arrays.values()]
    return sum(a.nbytes for a in held if isinstance(a, np.ndarray) and not isinstance(a, np.memmap))


def phase_data_for(job: Job, arrays: dict, cache_dir: Path, verbose: bool, deadline=None, cluster=None,
                   strategy=None):
    """The fast cached path (fewer views if the deadline needs it; under several workers each
    caches its shards and all are exchanged: training.exchange), else the plain path; returns
    (phase data, cache stats or None).

    Example:
        >>> data, stats = phase_data_for(job, arrays, record.cache_dir, verbose=False)
    """
    from imgclf import data as data_mod
    from imgclf.training.phases import PlainData
    cfg, labels = job.cfg, job.dataset.labels
    if cfg.train.feature_cache:
        from imgclf.training.exchange import WorkerShards
        from imgclf.training.features import CachedData
        try:
            data = CachedData(job.net, cfg, (arrays["train"], labels["train"]), (arrays["val"], labels["val"]),
                              cache_dir, predict_count=len(arrays["test"]), deadline=deadline,
                              shards=WorkerShards(cluster, strategy),
                              budget=cfg.train.cache_memory_mb * 2**20 - _held_bytes(arrays))
        except MemoryError as exc:
            if cluster is not None and cluster.size > 1:  # the others would wait on the cached path's steps
                raise ImgclfError(f"{cluster.describe()}: {exc}; every worker must take the same path: free disk "
                                  "space on each, or train with --plain") from None
            print(f"imgclf: {exc}; training on the plain path instead")
        else:
            if verbose:
                s = data.stats
                print(f"feature cache: {s['views']} views, {s['cache_mb']:.0f} MB "
                      f"({s['cache_mb_on_disk']:.0f} MB on disk), built in {s['cache_seconds']:.1f} s"
                      + (f" (this worker's shard: {s['cache_rows_built']} rows; {s['cache_mb_received']:.0f} MB "
                         f"from the others in {s['cache_exchange_seconds']:.1f} s)" if "cache_mb_received" in s else ""))
            return data, data.stats
    n, batch = job.dataset.num_classes, cfg.data.batch_size
    train = data_mod.epoch_batches(arrays["train"], labels["train"], n, batch, seed=cfg.seed,
                                   augment=cfg.data.augment)
    val_ds = data_mod.make_pipeline(arrays["val"], labels["val"], n, batch) if len(arrays["val"]) else None
    return PlainData(job.net.model, train, val_ds), None
