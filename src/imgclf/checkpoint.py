"""Per-epoch training checkpoints, so an interrupted run resumes where it stopped.

One ``.npz`` file holds everything needed to continue: the model's weights, the optimizer's
state, the best weights early stopping has kept, and (as JSON) the phase, the epochs done in it,
the history so far, and the early-stopping and schedule state. It is written atomically after
every epoch, so a kill at any moment leaves the previous checkpoint intact.

Example:
    >>> save_checkpoint(run_dir / "checkpoint.npz", state)
    >>> load_checkpoint(run_dir / "checkpoint.npz").phase
    'head'
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.runs import atomic_path

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


def save_checkpoint(path: str | Path, state: TrainState) -> None:
    """Write the state atomically (temporary file, then rename).

    Example:
        >>> save_checkpoint("runs/a/checkpoint.npz", state)
    """
    meta = {k: v for k, v in asdict(state).items() if k not in ("weights", "optimizer", "best_weights")}
    meta["format"] = FORMAT
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for prefix, values in (("w", state.weights), ("opt", state.optimizer), ("best", state.best_weights or [])):
        arrays.update({f"{prefix}_{i:04d}": np.asarray(v) for i, v in enumerate(values)})
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_checkpoint(path: str | Path) -> TrainState:
    """Read a checkpoint written by save_checkpoint.

    Example:
        >>> load_checkpoint("runs/a/checkpoint.npz").phase_epochs
        3
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            lists = {prefix: [data[k] for k in sorted(data.files) if k.startswith(prefix + "_")]
                     for prefix in ("w", "opt", "best")}
    except FileNotFoundError:
        raise ImgclfError(f"{path}: no checkpoint to resume from (the run stopped before its first "
                          "epoch ended); start it again") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ImgclfError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if meta.pop("format", None) != FORMAT:
        raise ImgclfError(f"{path}: checkpoint from another version of imgclf")
    return TrainState(**meta, weights=lists["w"], optimizer=lists["opt"], best_weights=lists["best"] or None)
