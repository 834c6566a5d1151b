"""The two training phases, with a train step of our own.

Phase 1 trains the head on a frozen base; phase 2 unfreezes the top of the base and continues at
a lower learning rate. The loop is ours rather than ``model.fit`` because Keras 3's ``fit`` fails
under MultiWorkerMirroredStrategy (keras-team/keras#20585) and the cached-feature paths need the
same loop; early stopping, schedules, class weights, checkpoints and logs are features of it.

Example:
    >>> rows = fit_two_phase(net, cfg.train, PlainData(net.model, tr, va), EpochLog())
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from imgclf.config import TrainConfig, keep_of
from imgclf.console import PhaseProgress
from imgclf.data.augment import reseed
from imgclf.record import RunRecord
from imgclf.training.checkpoint import TrainState, check_arrays, save_checkpoint
from imgclf.training.model import Network
from imgclf.training.schedule import EarlyStopping, Schedule
from imgclf.training.steps import FusedAdam, Steps, run_epoch

HISTORY_KEYS = ("phase", "epoch", "loss", "accuracy", "top_k_accuracy", "val_loss", "val_accuracy",
                "val_top_k_accuracy", "lr", "seconds")


@dataclass
class EpochLog:
    """Where each epoch's row goes: history.csv, TensorBoard, the terminal. Callables, so tests
    and the API can pass their own."""

    on_epoch: Callable[[dict], None] = lambda row: None
    verbose: bool = True


class Phase(NamedTuple):
    """What one phase trains and on what: ``trainee`` is the classifier or a sub-model sharing
    its layers; ``train(epoch)`` gives that epoch's batches; ``val()`` the validation batches
    (None: no validation data); ``steps`` batches per epoch, for the progress bar.

    ``agree``: the phase is cheap enough for every worker of a multi-worker run to train it
    whole, alone (the head on cached features: a step's arithmetic is well under a millisecond,
    a step's all-reduce over the network milliseconds); ``agree(values)`` returns worker 0's
    float64 ``values`` on every worker (training.exchange.WorkerShards.first), called once an
    epoch with the weights and the epoch's scores, so that every worker keeps the same weights
    and takes the same decisions (early stopping, schedule) even where machines round apart.
    None: the strategy splits every batch among the replicas, one collective a step."""

    trainee: keras.Model
    train: Callable[[int], Iterable]
    val: Callable[[], Iterable] | None
    steps: int | None
    agree: Callable[[np.ndarray], np.ndarray] | None = None


class PlainData:
    """The plain path: every epoch runs the whole classifier on freshly augmented images.

    ``train`` is a tf.data.Dataset, or ``imgclf.data.EpochBatches`` whose order and
    augmentation are those of the epoch asked for (phase 2's epochs count from
    FINE_TUNE_EPOCHS_FROM, so the two phases never see the same draws), which is what makes a
    resumed run train on the same batches as an uninterrupted one.
    """

    FINE_TUNE_EPOCHS_FROM = 1 << 16

    def __init__(self, model: keras.Model, train, val_ds: tf.data.Dataset | None):
        self.model, self.train, self.val_ds = model, train, val_ds

    def _phase(self, first_epoch: int) -> Phase:
        by_epoch = getattr(self.train, "epoch", None)
        dataset = getattr(self.train, "dataset", self.train)
        steps = int(dataset.cardinality())
        batches = (lambda epoch: by_epoch(first_epoch + epoch)) if by_epoch else (lambda epoch: dataset)
        return Phase(self.model, batches, (lambda: self.val_ds) if self.val_ds is not None else None,
                     steps if steps > 0 else None)

    def head_phase(self) -> Phase:
        return self._phase(0)

    def fine_tune_phase(self) -> Phase:
        return self._phase(self.FINE_TUNE_EPOCHS_FROM)


DEFAULT_PATIENCE = 3


def patience_of(cfg: TrainConfig) -> int:
    """train.patience, or 3 when it is not set."""
    return cfg.patience if cfg.patience is not None else DEFAULT_PATIENCE


def fit_two_phase(net: Network, cfg: TrainConfig, data, log: EpochLog,
                  class_weights: np.ndarray | None = None, checkpoint: RunRecord | None = None,
                  resume: TrainState | None = None, strategy=None, deadline=None) -> list[dict]:
    """The recipe: freeze the base, fit the head; unfreeze the top, fit again at a lower rate.

    Args:
        net: the Network from imgclf.training.model.build_network (its spec gives the blocks).
        cfg: the train section of the run config.
        data: PlainData, or imgclf.training.features.CachedData (the fast path); gives each phase its
            trainee and batches of (float32 inputs, one-hot labels).
        log: receives every epoch's row.
        class_weights: per-class loss weights, or None.
        checkpoint: the run whose checkpoint.npz gets the training state after every epoch, or None.
        resume: a state from imgclf.training.checkpoint.load_checkpoint to continue from, or None.
        strategy: a tf.distribute strategy whose scope built ``model`` (imgclf.training.distribute);
            None for the default. Every batch is a global batch, split among the replicas.
        deadline: an imgclf.training.deadline.Deadline: a phase ends early rather than overrun it
            (the head phase keeps time for one fine-tuning epoch, and always runs one epoch).

    Returns:
        One dict per epoch of both phases (keys HISTORY_KEYS); the model ends with the weights
        of the best validation loss (training loss when there is no validation data), or the
        last epoch's when config.keep_of says "last".

    Example:
        >>> rows = fit_two_phase(net, TrainConfig(epochs=2), PlainData(net.model, train_ds, val_ds),
        ...                      EpochLog())
    """
    stopper = EarlyStopping(patience_of(cfg), net.model, keep_of(cfg.keep, cfg.schedule))
    rows = _restore(resume, net.model, stopper)
    run = _PhaseRunner(cfg, stopper, log, class_weights, checkpoint, resume, rows, strategy, deadline)
    net.freeze_base()
    if resume is None or (resume.phase == "head" and not resume.phase_done):
        run(data.head_phase(), "head", cfg.lr, cfg.epochs)
    if cfg.fine_tune_epochs:
        if resume is None or resume.phase == "head":
            stopper.restore()  # fine-tune from the best head, not the last
            stopper.wait = 0
        net.unfreeze_top(layers=cfg.fine_tune_layers, blocks=cfg.fine_tune_blocks)
        run(data.fine_tune_phase(), "fine_tune", cfg.fine_tune_lr, cfg.fine_tune_epochs)
    stopper.restore()
    return rows


def _restore(resume: TrainState | None, model: keras.Model, stopper: EarlyStopping) -> list[dict]:
    if resume is None:
        return []
    check_arrays(resume, "weights", resume.weights, model.weights)
    if resume.best_weights is not None:
        check_arrays(resume, "best weights", resume.best_weights, model.weights)
    model.set_weights(resume.weights)
    stopper.best, stopper.best_epoch, stopper.wait = (resume.stopper[k] for k in ("best", "best_epoch", "wait"))
    stopper.best_weights = resume.best_weights
    return list(resume.rows)


class _PhaseRunner:
    """Runs fit_phase with what every phase shares; appends to the one history list."""

    def __init__(self, cfg, stopper, log, class_weights, checkpoint, resume, rows, strategy, deadline):
        self.cfg, self.stopper, self.log, self.class_weights = cfg, stopper, log, class_weights
        self.checkpoint, self.resume, self.rows, self.strategy = checkpoint, resume, rows, strategy
        self.deadline = deadline

    def __call__(self, phase: Phase, name: str, lr: float, epochs: int) -> None:
        resume = self.resume if self.resume is not None and self.resume.phase == name else None
        keep = self.deadline.epoch_s.get("fine_tune", 0.0) if self.deadline and name == "head" \
            and self.cfg.fine_tune_epochs else 0.0
        fit_phase(phase, name, self.cfg, lr, epochs, self.stopper, self.log, self.class_weights,
                  rows=self.rows, checkpoint=self.checkpoint, resume=resume, strategy=self.strategy,
                  deadline=self.deadline, keep_s=keep)


def fit_phase(phase: Phase, name: str, cfg: TrainConfig, lr: float, epochs: int, stopper: EarlyStopping,
              log: EpochLog, class_weights: np.ndarray | None, rows: list[dict] | None = None,
              checkpoint: RunRecord | None = None, resume: TrainState | None = None, strategy=None,
              deadline=None, keep_s: float = 0.0) -> list[dict]:
    """Train the trainee's trainable weights for up to ``epochs`` epochs with a fresh Adam (or
    the checkpointed one, when resuming this phase); appends each epoch's row to ``rows``.
    With a ``deadline`` the phase ends before an epoch that would not leave ``keep_s`` seconds
    (and the deadline's reserve) at its end, and after each epoch its count is re-fitted to the
    time left (Deadline.retarget: at most deadline.MAX_STRETCH times ``epochs``), the schedule spread over the new count."""
    rows = [] if rows is None else rows
    trainee, agreed = _local_copy(phase.trainee) if phase.agree else (phase.trainee, None)
    # a phase every worker trains alone runs on the default strategy (fit_two_phase runs outside any scope)
    strategy = tf.distribute.get_strategy() if phase.agree else strategy or tf.distribute.get_strategy()
    with strategy.scope():  # the optimizer's slots must be mirrored like the weights
        optimizer = FusedAdam(learning_rate=lr)
        optimizer.build(trainee.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing, reduction="none")
    weights = tf.constant(class_weights if class_weights is not None else [], tf.float32)
    steps = Steps(trainee, optimizer, loss_fn, weights, cfg.top_k, strategy)
    schedule = Schedule(cfg.schedule, lr, epochs, patience_of(cfg))
    done = resume.phase_epochs if resume else 0
    if resume is not None:
        _restore_optimizer(optimizer, resume, resume.optimizer)
        schedule.current, schedule.best, schedule.wait = (resume.schedule[k] for k in ("current", "best", "wait"))
    last = schedule.epochs = (done if resume.phase_done else resume.phase_total) if resume else epochs
    with PhaseProgress(name, last, phase.steps, log.verbose) as progress:
        i, stop, share = done, False, 1.0  # epochs of this phase done; share: of the next epoch's batches
        while i < last and not (deadline is not None and deadline.ends_phase(name, i, last, keep_s, share)):
            optimizer.learning_rate.assign(schedule.at_epoch(i))
            reseed(trainee, len(rows) + 1)  # dropout masks depend on the epoch, not on the process
            began = deadline.clock() if deadline else 0.0
            limit = None if share >= 1.0 else max(1, int(share * phase.steps))
            row = _epoch(phase, steps, name, i, last, len(rows) + 1, schedule, progress, limit)
            if agreed is not None:
                row = agreed(row, phase.agree)
            if deadline and limit is None:  # re-plan from what an epoch really takes here
                deadline.observe(name, deadline.clock() - began, steady=i > done)
            rows.append(row)
            monitored = row.get("val_loss", row["loss"])
            schedule.after_epoch(monitored)
            stop = stopper.update(monitored, row["epoch"])
            log.on_epoch(row)
            part = f" ({limit} of {phase.steps} batches)" if limit else ""
            progress.epoch_done(f"{name} {i + 1}/{last}{part}  " + _summary(row))
            if deadline is not None and not stop and limit is None:  # fewer or more epochs, the schedule re-spread
                last = schedule.epochs = deadline.retarget(name, i + 1, last, keep_s, epochs)
                if i + 1 == last and phase.steps:  # the phase's time left over: a part of one more epoch
                    share = deadline.part(name, last, keep_s, epochs)
                    if share:  # at the schedule's floor: the cosine ended with the whole epochs
                        last += 1
                progress.resize(last)
            if checkpoint is not None:
                _save(checkpoint, name, (i + 1, last), stop or i + 1 == last, rows, stopper, schedule, optimizer)
            if stop:
                progress.epoch_done(f"  early stop: no improvement for {stopper.patience} epochs "
                                    f"(best epoch {stopper.best_epoch})")
                break
            i += 1
    return rows


def _local_copy(trainee: keras.Model):
    """A copy of ``trainee`` with variables of its own, made outside any strategy's scope (so
    neither its weights nor its optimizer's slots are mirrored: no collective a step), and
    ``agreed(row, agree)``: after an epoch, worker 0's weights and scores, written into the copy
    and into ``trainee`` (which early stopping and the checkpoint read)."""
    local = keras.models.clone_model(trainee)
    local.set_weights(trainee.get_weights())

    def agreed(row: dict, agree) -> dict:
        arrays = local.get_weights()
        keys = [k for k, v in row.items() if isinstance(v, float)]
        flat = agree(np.concatenate([a.ravel().astype(np.float64) for a in arrays] + [[row[k] for k in keys]]))
        at, chosen = 0, []
        for a in arrays:
            chosen.append(flat[at:at + a.size].reshape(a.shape).astype(a.dtype))
            at += a.size
        local.set_weights(chosen)
        trainee.set_weights(chosen)
        return {**row, **{k: float(v) for k, v in zip(keys, flat[at:])}}
    return local, agreed


def _epoch(phase: Phase, steps: Steps, name: str, i: int, epochs: int, number: int, schedule: Schedule,
           progress, limit: int | None = None) -> dict:
    """Train one epoch (its first ``limit`` batches only, when given), validate, and return its history row."""
    start = time.perf_counter()
    batches = phase.train(i) if limit is None else itertools.islice(phase.train(i), limit)
    train = run_epoch(steps.train, batches, lambda loss, acc: progress.batch(i + 1, loss, acc))
    val = run_epoch(steps.evaluate, phase.val()) if phase.val is not None else {}
    return {"phase": name, "epoch": number, **train, **{f"val_{k}": v for k, v in val.items()},
            "lr": float(schedule.current), "seconds": time.perf_counter() - start}


def _restore_optimizer(optimizer, resume, values) -> None:
    check_arrays(resume, "optimizer state", values, optimizer.variables)
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)


def _save(record, name, progress, phase_done, rows, stopper, schedule, optimizer) -> None:
    save_checkpoint(record, TrainState(
        phase=name, phase_epochs=progress[0], phase_total=progress[1], phase_done=phase_done, rows=rows,
        stopper={"best": stopper.best, "best_epoch": stopper.best_epoch, "wait": stopper.wait},
        schedule={"current": schedule.current, "best": schedule.best, "wait": schedule.wait},
        weights=stopper.model.get_weights(), optimizer=[v.numpy() for v in optimizer.variables],
        best_weights=stopper.best_weights))


def _summary(row: dict) -> str:
    parts = [f"loss {row['loss']:.4f}", f"acc {row['accuracy']:.4f}"]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_accuracy']:.4f}"]
    parts += [f"lr {row['lr']:.2e}", f"{row['seconds']:.1f}s"]
    return "  ".join(parts)
