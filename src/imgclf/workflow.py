"""The Python API: train a run end to end, resume one, evaluate one. The CLI is a thin layer over this.

This is the one module (with the CLI) that joins the stages: data -> training -> evaluation,
with the run record keeping every file. ``imgclf train`` is, in order: load and check the data,
build the network, create the run and write its inputs, load the images, build the feature
cache (or the plain pipelines), fit the two phases (history and checkpoints each epoch), save
the model, evaluate the test split, write run.json and the report, mark the run complete.

Example:
    >>> result = train("data/fashion", epochs=3, fine_tune_epochs=2, image_size=96)
    >>> result.metrics["accuracy"]
    0.83
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import data as data_mod
from imgclf.config import RunConfig, config_to_dict
from imgclf.options import resolve_config
from imgclf.record import RunRecord
from imgclf.training.distribute import Cluster, make_strategy, strategy_info
from imgclf.training.exchange import WorkerShards
from imgclf.training.prepare import Job, prepare


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path | None  # None on a non-chief worker, which writes nothing
    model: Any  # keras.Model with the best weights
    class_names: list[str]
    history: list[dict]
    metrics: dict | None  # test-set metrics, None when there is no test split


def train(data: str | Path | None = None, *, config: str | Path | None = None, verbose: bool = True,
          budget: str | float | None = None, mlflow: bool = False, **overrides: Any) -> TrainResult:
    """Train a classifier on a folder (or CSV) of labelled images, evaluate it, write the run.

    Args:
        data: the dataset path (folder per class, train/val/test root, or CSV).
        config: an optional YAML config file; keyword overrides win over it.
        verbose: progress bars and per-epoch lines on stdout.
        budget: the whole run's time, ``"90s"``, ``"10m"``, ``"1h"`` or seconds; None: the
            default budget (train.budget_s in the config, else planner.default_budget).
        mlflow: log the finished run to MLflow (also when ``$MLFLOW_TRACKING_URI`` is set).
        **overrides: any config key by its own name (``epochs=3``, ``backbone="resnet50"``).

    Returns:
        TrainResult with the run directory, the model, history and test metrics.

    Example:
        >>> train("data/fashion", epochs=3, image_size=96).run_dir
        PosixPath('runs/fashion')
    """
    started = time.monotonic()
    if budget is not None:
        from imgclf.options import parse_duration
        overrides["budget_s"] = parse_duration(budget, "budget")
    return run_training(resolve_config(data, config, **overrides), verbose=verbose, started=started, mlflow=mlflow)


def run_training(cfg: RunConfig, verbose: bool = True, cluster: Cluster | None = None,
                 started: float | None = None, show_plan: bool | None = None, mlflow: bool = False) -> TrainResult:
    """Everything ``imgclf train`` does, from a resolved config. See train().

    Every check that can fail on the user's input runs before the run directory is created.
    One process on the cached path is planned to the budget, counted from ``started``
    (time.monotonic(); default now); the plan is printed when ``show_plan`` (default: verbose).
    The complete run is then logged to MLflow when ``mlflow`` or $MLFLOW_TRACKING_URI asks.
    With a multi-worker ``cluster`` (imgclf.training.distribute) every worker runs this with the same config and the former
    fixed defaults (a plan from each worker's own timings could differ); only the chief creates
    and writes the run directory.
    """
    started = started or time.monotonic()
    cluster = cluster or Cluster()
    strategy = make_strategy(cluster)
    with strategy.scope():
        job = prepare(cfg, started=started, plan=cluster.size == 1, share=WorkerShards(cluster, strategy),
                      verbose=verbose if show_plan is None else show_plan)
    if not cluster.is_chief:
        return _as_worker(job, verbose, strategy, cluster)
    from imgclf.health import train_checks
    health = train_checks(job.dataset, job.cfg.data.path, strict=job.cfg.data.strict)
    record = RunRecord.create(job.cfg.runs_dir, job.cfg.name)
    if verbose:
        print(f"run directory: {record.path}" + (f" ({cluster.describe()})" if cluster.size > 1 else ""))
        print(job.dataset.report.format_text())
    record.write_config(job.cfg)
    record.write_labels(job.dataset.class_names)
    record.write_split(job.dataset.split_rows())
    record.write_data_report({**job.dataset.report.to_dict(), "health": health.to_dict()})
    deadline = None
    if job.plan is not None:
        from imgclf.training.deadline import Deadline
        record.write_plan({"plan": job.plan.to_dict()})
        deadline = Deadline.for_plan(job.plan, started)
    return _tracked(_execute(job, record, verbose, strategy=strategy, cluster=cluster, deadline=deadline), mlflow)


def resume_training(run_dir: str | Path, verbose: bool = True, cluster: Cluster | None = None,
                    mlflow: bool = False) -> TrainResult:
    """Continue an interrupted run from its last checkpoint, in either phase.

    The run's own config.yaml and split.csv are used, so the data, split and settings are those
    it started with; the caches are rebuilt (deterministically, from the same seed). Under
    multi-worker training every worker resumes from the chief's run directory (a shared path),
    and only the chief writes to it.

    Args:
        run_dir: the run directory of an interrupted ``imgclf train``.
        verbose: progress bars and per-epoch lines.
        cluster: this process's place among the workers (imgclf.training.distribute); None: one
            process.

    Returns:
        The TrainResult, as if the run had never stopped.

    Example:
        >>> resume_training("runs/fashion").metrics["accuracy"]
        0.85
    """
    from imgclf.training.checkpoint import load_checkpoint
    record = RunRecord.interrupted(run_dir)
    state = load_checkpoint(record)
    cluster = cluster or Cluster()
    strategy = make_strategy(cluster)
    with strategy.scope():
        job = prepare(record.read_config(), source=record.split_path, plan=False, share=WorkerShards(cluster, strategy))
    if verbose:
        print(f"resuming {record.path} after {len(state.rows)} epochs ({state.phase} phase)")
    if not cluster.is_chief:
        return _as_worker(job, verbose, strategy, cluster, resume=state)
    return _tracked(_execute(job, record, verbose, resume=state, strategy=strategy, cluster=cluster), mlflow)


def _tracked(result: TrainResult, mlflow: bool) -> TrainResult:
    from imgclf.evaluation.tracking import track  # after the run is whole; a failure only warns
    track(result.run_dir, mlflow)
    return result


def _as_worker(job: Job, verbose, strategy, cluster, resume=None) -> TrainResult:
    """A non-chief worker: the same training step for step, in a scratch directory that is
    removed afterwards; the chief writes the run."""
    with tempfile.TemporaryDirectory(prefix="imgclf-worker-") as scratch:
        return _execute(job, RunRecord(scratch), verbose, resume, strategy, cluster)


def _execute(job: Job, record: RunRecord, verbose: bool, resume=None, strategy=None,
             cluster: Cluster = Cluster(), deadline=None) -> TrainResult:
    """Train, save, evaluate, report, mark complete: the part of a run that resume repeats.
    A non-chief worker (``record`` is then a scratch folder) stops after training, the test
    predictions and (on the cached path) its share of the figures, sent to the chief, and waits
    for the chief to write the run."""
    from imgclf.evaluation.calibration import held_out_probs
    from imgclf.evaluation.evaluator import FIGURES, figure_share, send_figures
    from imgclf.training.distribute import lost_peers
    from imgclf.training.history import HistoryWriter
    from imgclf.training.phases import fit_two_phase
    from imgclf.training.prepare import load_split_images, phase_data_for
    cfg, dataset, started = job.cfg, job.dataset, time.time()
    shards = WorkerShards(cluster, strategy)
    arrays = load_split_images(job, record, shards)
    phase_data, cache_stats = phase_data_for(job, arrays, record.cache_dir, verbose, deadline, cluster, strategy)
    weights = (data_mod.class_weights(dataset.labels["train"], dataset.num_classes)
               if cfg.train.class_weights == "balanced" else None)
    with HistoryWriter(record, verbose, resume.rows if resume else []) as log, \
            lost_peers(cluster, record.path if cluster.is_chief else "RUN"):
        history = fit_two_phase(job.net, cfg.train, phase_data, log, weights, checkpoint=record,
                                resume=resume, strategy=strategy, deadline=deadline)
    probs = held_out_probs(lambda images, mirrored: phase_data.predict(images, flip=mirrored), arrays,
                           dataset.labels["val"], cfg) if cache_stats else None
    shared = probs is not None and cluster.size > 1  # every worker has the test probabilities
    figures = figure_share(cluster.index, cluster.size) if shared else FIGURES
    if not cluster.is_chief:
        with lost_peers(cluster, "RUN"):
            if shared:  # its share of the figures; its metrics go, so bootstrap intervals (0.85 s on
                # 10,000 images) only for the per-class bars that show them
                _evaluate_test(job, record, arrays, probs, figures, intervals="per_class" in figures)
                send_figures(record, figures, shards.gather, chief=False)
            shards.barrier()  # the chief writes the run meanwhile
        return TrainResult(None, job.net.model, dataset.class_names, history, None)
    record.save_model(job.net.model)
    evaluation, calibration = _evaluate_test(job, record, arrays, probs, figures)
    if shared:
        with lost_peers(cluster, record.path):
            send_figures(record, (), shards.gather, chief=True)
    info = {"seconds": round(time.time() - started, 1), "image_size": cfg.data.image_size, "calibration": calibration,
            "backbone": job.net.spec.name, "path": "cached" if cache_stats else "plain", **(cache_stats or {}),
            **({"eval_runtime": evaluation.runtime, "eval_seconds": evaluation.seconds} if evaluation else {}),
            "resumed": resume is not None, **strategy_info(strategy)}
    metrics = evaluation.metrics if evaluation else None
    if job.plan is not None:
        from imgclf.training.deadline import actual_stages
        record.write_plan({"plan": job.plan.to_dict(), "actual": actual_stages(job.started, info, history)})
    _finish(record, cfg, history, metrics, info, verbose)
    shards.barrier(gone_ok=True)  # the run is whole: the other workers may go
    return TrainResult(record.path, job.net.model, dataset.class_names, history, metrics)


def _finish(record: RunRecord, cfg: RunConfig, history, metrics, info: dict, verbose: bool) -> None:
    """run.json, the report, COMPLETE; then the checkpoint and the cache folder (images and
    feature caches over the memory budget, which only this run's resume could reuse) go."""
    from imgclf.evaluation import format_metrics
    from imgclf.evaluation.report import write_run_report
    record.write_run_info(info)
    write_run_report(record, config_to_dict(cfg), history, metrics, info)
    record.mark_complete()
    record.remove_resume_state()
    if verbose and metrics:
        print(format_metrics(metrics))
        print(f"report: {record.report_path}")


def _evaluate_test(job: Job, record: RunRecord, arrays, probs, figures=None, intervals: bool = True):
    """Choose the test-time flip, fit the temperature and the abstain thresholds on the
    validation split, then evaluate the calibrated model on the test split (None without one),
    saved into the run with the ``figures`` named (None: all) and, with ``intervals``, bootstrap
    intervals; returns (evaluation, run.json's "calibration"). On the cached path ``probs`` holds
    what held_out_probs gave (features.CachedData.predict: the frozen part on the compiled forward
    the caches used, the rest as a tf.function, each worker its shard); otherwise the
    Classifier's Keras model predicts, as ``imgclf evaluate`` does.
    """
    from imgclf.deploy.predict import Classifier
    from imgclf.evaluation import evaluate_on, save_evaluation
    from imgclf.evaluation.calibration import abstain_thresholds, fit_temperature, held_out_probs, temper
    from imgclf.evaluation.evaluator import FIGURES
    from imgclf.ranking import mirror
    from imgclf.runtime import choose_runtime
    cfg, images, labels = job.cfg, arrays["test"], job.dataset.labels
    clf = Classifier(job.net.model, job.dataset.class_names, cfg.data.image_size, record.path, cfg.data.max_pixels)
    runtime = choose_runtime(cfg.train.runtime, len(images)) + "+tf" if probs is not None else None
    if probs is None:  # by batches: the images may be read from disk
        probs = held_out_probs(lambda x, mirrored: np.concatenate(
            [clf.predict_arrays(mirror(x[i:i + 256]) if mirrored else x[i:i + 256]) for i in range(0, len(x), 256)]),
            arrays, labels["val"], cfg)
    calibration, val_probs = {"fitted_on": "val", "val_images": len(arrays["val"]), "flip": probs["flip"]}, None
    if probs["val"] is not None:  # validation only: the test split never touches the flip or the temperature
        clf.temperature = fit_temperature(probs["val"], labels["val"])
        val_probs = temper(probs["val"], clf.temperature)
    clf.flip, calibration["temperature"] = probs["flip"]["flip"], clf.temperature
    if not len(images):
        return None, calibration
    evaluation = evaluate_on(clf, images, labels["test"], top_k=cfg.train.top_k, predict=lambda _: probs["test"],
                             runtime=runtime, intervals=intervals)
    evaluation.seconds = round(evaluation.seconds + probs["test_seconds"], 2)  # the predictions were made before
    save_evaluation(evaluation, images, record, model=job.net.model, figures=FIGURES if figures is None else figures)
    if val_probs is not None:  # chosen on validation; the test columns are only reported
        calibration["thresholds"] = abstain_thresholds(val_probs, labels["val"], evaluation.probs, evaluation.labels)
    return evaluation, calibration


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, verbose: bool = True,
                 intervals: bool = True) -> dict:
    """Evaluate a finished run on its held-out test split, or on any labelled dataset.

    Args:
        run_dir: a finished run directory.
        data: a labelled dataset (every image in it is used); None for the run's own test split.
        verbose: print the metrics table.
        intervals: 95% bootstrap intervals beside the metrics (False: ``imgclf evaluate --no-ci``).

    Returns:
        The metrics dict (also written to metrics.json: in the run directory, or in
        ``run_dir/eval-<data name>/`` for another dataset).

    Example:
        >>> evaluate_run("runs/fashion")["accuracy"]
        0.83
    """
    from imgclf.deploy.predict import load
    from imgclf.evaluation import evaluate_on, format_metrics, held_out_split, save_evaluation
    from imgclf.evaluation.report import write_run_report
    record = RunRecord.finished(run_dir, writing=True)  # stale temps of a killed evaluate go
    clf, cfg = load(record.path), record.read_config()
    if data is None:
        dataset, out = data_mod.load_dataset(record.split_path, max_pixels=cfg.data.max_pixels), record
        splits = [held_out_split(dataset, record)]
    else:
        dataset = data_mod.load_dataset(data, val_fraction=0.0, test_fraction=0.0, seed=cfg.seed,
                                        max_pixels=cfg.data.max_pixels)
        splits, out = list(data_mod.SPLITS), record.evaluation(Path(data).stem)
    paths = [p for split in splits for p in dataset.paths[split]]
    labels = np.concatenate([dataset.labels_for(clf.class_names, split) for split in splits])
    images = data_mod.load_images(paths, clf.image_size, max_pixels=cfg.data.max_pixels)
    evaluation = evaluate_on(clf, images, labels, top_k=cfg.train.top_k, intervals=intervals)
    save_evaluation(evaluation, images, out, model=clf.model)
    if data is None:
        write_run_report(record, config_to_dict(cfg), record.read_history(), evaluation.metrics,
                         record.read_run_info())
    if verbose:
        print(format_metrics(evaluation.metrics))
        print(f"metrics: {out.metrics_path}")
    return evaluation.metrics
