"""Per-epoch rules of a training phase: the learning-rate schedule and early stopping.

Example:
    >>> schedule = Schedule("cosine", 1e-3, epochs=10, patience=3)
    >>> round(schedule.at_epoch(5), 6)
    0.000505
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved for ``patience`` epochs; remember the best
    weights (``keep="last"``: restore nothing, the last epoch's weights are kept). The best value
    carries over between phases, so fine-tuning that never beats the head-only model ends with
    the head-only weights restored."""

    patience: int
    model: keras.Model  # the whole classifier: trainees may be sub-models sharing its layers
    keep: str = "best"
    best: float = math.inf
    best_weights: list | None = None
    best_epoch: int = 0
    wait: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch; return True when training should stop."""
        if value < self.best - 1e-6:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.keep == "best":
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


@dataclass
class Schedule:
    """Learning rate per epoch: reduce-on-plateau (halve after patience//2 flat epochs, down to
    lr/100), cosine decay to lr/100 over the phase, or constant."""

    kind: str
    lr: float
    epochs: int
    patience: int
    best: float = math.inf
    wait: int = 0
    current: float = field(init=False)

    def __post_init__(self):
        self.current = self.lr
        if self.kind == "auto":  # a config the planner did not resolve: the unplanned default
            self.kind = "plateau"

    def at_epoch(self, epoch: int) -> float:
        if self.kind == "cosine":
            floor = self.lr / 100
            self.current = floor + 0.5 * (self.lr - floor) * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.current

    def after_epoch(self, monitored: float) -> None:
        if self.kind != "plateau":
            return
        if monitored < self.best - 1e-6:
            self.best, self.wait = monitored, 0
            return
        self.wait += 1
        if self.wait >= max(1, self.patience // 2):
            self.current, self.wait = max(self.current * 0.5, self.lr / 100), 0
