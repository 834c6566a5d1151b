"""Per-epoch training checkpoints, so an interrupted run resumes where it stopped.

One ``checkpoint.npz`` (written and read by the run record, atomically) holds everything needed
to continue: the model's weights, the optimizer's state, the best weights early stopping has
kept, and (as JSON) the phase, the epochs done in it and its epoch count (re-fitted by the
budget), the history so far, and the early-stopping and schedule state. This module owns what
those arrays mean.

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
from imgclf.training.deadline import MAX_STRETCH

FORMAT = 2  # 2: phase_total
MAX_EPOCHS = 100_000  # the bound on phase_epochs when the config leaves a phase's epochs open


@dataclass
class TrainState:
    """Where training stood at the end of an epoch."""

    phase: str  # "head" or "fine_tune": the phase of the last finished epoch
    phase_epochs: int  # epochs finished in that phase
    phase_done: bool  # that phase has ended (early stop or its last epoch)
    rows: list[dict]  # the history of both phases so far
    stopper: dict  # EarlyStopping's best, best_epoch, wait
    schedule: dict  # Schedule's current, best, wait
    phase_total: int  # that phase's epoch count (the budget may have re-fitted the configured one)
    weights: list[np.ndarray] = field(repr=False, default_factory=list)
    optimizer: list[np.ndarray] = field(repr=False, default_factory=list)
    best_weights: list[np.ndarray] | None = field(repr=False, default=None)
    source: str = field(repr=False, default="checkpoint.npz")  # the file it was read from


def save_checkpoint(record: RunRecord, state: TrainState) -> None:
    """Write the state into the run's checkpoint.npz, atomically.

    Example:
        >>> save_checkpoint(RunRecord("runs/a"), state)
    """
    meta = {k: v for k, v in asdict(state).items() if k not in ("weights", "optimizer", "best_weights", "source")}
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
        state = TrainState(**meta, weights=lists["w"], optimizer=lists["opt"], best_weights=lists["best"] or None,
                           source=str(path))
    except TypeError:
        raise ImgclfError(f"{path}: unreadable checkpoint (unexpected fields)") from None
    problem = _invalid(state, record.read_config().train if record.config_path.is_file() else None)
    if problem:
        raise ImgclfError(f"{path}: invalid checkpoint ({problem}); start the run again")
    return state


def _invalid(state: TrainState, train) -> str | None:
    """What is wrong with a loaded state's fields, or None: a checkpoint is input like any other."""
    limits = {"head": train and train.epochs, "fine_tune": train and train.fine_tune_epochs}
    if state.phase not in limits:
        return f"phase {state.phase!r} is not 'head' or 'fine_tune'"
    limit = MAX_STRETCH * limits[state.phase] if limits[state.phase] is not None else MAX_EPOCHS
    if type(state.phase_total) is not int or not 0 <= state.phase_total <= limit:
        return f"phase_total {state.phase_total!r} is not a whole number from 0 to {limit}"
    if type(state.phase_epochs) is not int or not 0 <= state.phase_epochs <= state.phase_total:
        return f"phase_epochs {state.phase_epochs!r} is not a whole number from 0 to {state.phase_total}"
    if type(state.phase_done) is not bool:
        return f"phase_done {state.phase_done!r} is not true or false"
    if not (isinstance(state.rows, list) and all(isinstance(row, dict) for row in state.rows)):
        return "rows is not a list of epochs"
    for name, keys in (("stopper", ("best", "best_epoch", "wait")), ("schedule", ("current", "best", "wait"))):
        value = getattr(state, name)
        if not (isinstance(value, dict) and all(isinstance(value.get(k), (int, float, type(None))) for k in keys)
                and all(k in value for k in keys)):
            return f"{name} lacks numbers for {', '.join(keys)}"
    return None


def check_arrays(state: TrainState, what: str, arrays: list, expected: list) -> None:
    """A one-line ImgclfError unless ``arrays`` have the shapes of ``expected`` (a model's
    weights or an optimizer's variables), one for one.

    Example:
        >>> check_arrays(state, "weights", state.weights, model.weights)
    """
    shapes = [tuple(np.shape(a)) for a in arrays]
    wanted = [tuple(int(d) for d in e.shape) for e in expected]
    if shapes != wanted:
        where = next((i for i, (a, b) in enumerate(zip(shapes, wanted)) if a != b), min(len(shapes), len(wanted)))
        raise ImgclfError(f"{state.source}: checkpoint {what} do not match this model ({len(shapes)} arrays for "
                          f"{len(wanted)}, first difference at #{where}); was the config changed?")
