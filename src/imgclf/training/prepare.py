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
            verbose: bool = False) -> Job:
    """Load the dataset (from ``source``, else the config's path), settle the name, plan what
    the user left open (``plan``; else the former fixed defaults), build the network at the
    settled size and check the fine-tuning depth.

    Args:
        cfg: the resolved config.
        source: a split.csv to load instead of the config's data (resume).
        started: time.monotonic() when the run began: the budget's clock.
        plan: plan to the budget (the cached path in one process); False: fixed defaults.
        verbose: print the plan.
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
                                    max_pixels=cfg.data.max_pixels)
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
