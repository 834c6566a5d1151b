"""Per-epoch training checkpoints, so an interrupted run resumes where it stopped.

One ``checkpoint.npz`` (written and read by the run record, atomically) holds everything needed
to continue: the model's weights, the optimizer's state, the best weights early stopping has
kept, and (as JSON) the phase, the epochs done in it, the history so far, and the
early-stopping and schedule state. This module owns what those arrays mean.

Example:
    >>> save_checkpoint(RunRecord("runs/a"), state)
    >>> load_checkpoint(RunRecord("runs/a")).phase
    'head'
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.record import RunRecord

FORMAT = 1


@dataclass
class TrainState:
    """Where training stood at the end of an epoch."""

    phase: str  # "head" or "fine_tune": the phase of the last finished epoch
    phase_epochs: int  # epochs finished in that phase
    phase_done: bool  # that phase has ended (early stop or its last epoch)
    rows: list[dict]  # the history of both phases so far
    stopper: dict  # EarlyStopping's best, best_epoch, wait
    schedule: dict  # Schedule's current, best, wait
    weights: list[np.ndarray] = field(repr=False, default_factory=list)
    optimizer: list[np.ndarray] = field(repr=False, default_factory=list)
    best_weights: list[np.ndarray] | None = field(repr=False, default=None)


def save_checkpoint(record: RunRecord, state: TrainState) -> None:
    """Write the state into the run's checkpoint.npz, atomically.

    Example:
        >>> save_checkpoint(RunRecord("runs/a"), state)
    """
    meta = {k: v for k, v in asdict(state).items() if k not in ("weights", "optimizer", "best_weights")}
    meta["format"] = FORMAT
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for prefix, values in (("w", state.weights), ("opt", state.optimizer), ("best", state.best_weights or [])):
        arrays.update({f"{prefix}_{i:04d}": np.asarray(v) for i, v in enumerate(values)})
    record.write_checkpoint(arrays)


def load_checkpoint(record: RunRecord) -> TrainState:
    """The state save_checkpoint wrote; a one-line ImgclfError if the file is missing or bad.

    Example:
        >>> load_checkpoint(RunRecord("runs/a")).phase_epochs
        3
    """
    arrays = record.read_checkpoint()
    path = record.checkpoint_path
    try:
        meta = json.loads(bytes(arrays["meta"]).decode())
    except (KeyError, ValueError):
        raise ImgclfError(f"{path}: unreadable checkpoint (no readable meta record)") from None
    lists = {prefix: [arrays[k] for k in sorted(arrays) if k.startswith(prefix + "_")]
             for prefix in ("w", "opt", "best")}
    if not isinstance(meta, dict) or meta.pop("format", None) != FORMAT:
        raise ImgclfError(f"{path}: checkpoint from another version of imgclf")
    try:
        return TrainState(**meta, weights=lists["w"], optimizer=lists["opt"], best_weights=lists["best"] or None)
    except TypeError:
        raise ImgclfError(f"{path}: unreadable checkpoint (unexpected fields)") from None
