"""The Python API: train a run end to end, evaluate a run. The CLI is a thin layer over this.

Example:
    >>> result = train("data/fashion", epochs=3, fine_tune_epochs=2, image_size=96)
    >>> result.metrics["accuracy"]
    0.83
"""
from __future__ import annotations

import dataclasses
import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import data as data_mod
from imgclf.backbones import get_spec
from imgclf.config import RunConfig, config_to_dict, load_config, save_config
from imgclf.distribute import Cluster, make_strategy
from imgclf.errors import ImgclfError
from imgclf.runs import (COMPLETE, atomic_path, check_complete, unique_run_dir, write_json_atomic,
                         write_labels, write_text_atomic)


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path | None  # None on a non-chief worker, which writes nothing
    model: Any  # keras.Model with the best weights
    class_names: list[str]
    history: list[dict]
    metrics: dict | None  # test-set metrics, None when there is no test split


def _short_keys() -> dict[str, str]:
    """Map each config leaf's own name (``epochs``) to its dotted key (``train.epochs``)."""
    keys: dict[str, str] = {}

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            else:
                keys.setdefault(f.name, f"{prefix}{f.name}")
    walk(RunConfig, "")
    return keys


def resolve_config(data: str | Path | None = None, config: str | Path | None = None,
                   **overrides: Any) -> RunConfig:
    """Defaults <- YAML file <- keyword overrides (short names like ``epochs`` or dotted keys).

    Example:
        >>> resolve_config("photos", epochs=2).train.epochs
        2
    """
    short = _short_keys()
    dotted = {}
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if "." not in key and key not in short:
            raise ImgclfError(f"unknown option '{key}' (valid: {', '.join(sorted(short))})")
        dotted[short.get(key, key)] = value
    if data is not None:
        dotted["data.path"] = str(data)
    return load_config(config, dotted)


def train(data: str | Path | None = None, *, config: str | Path | None = None, verbose: bool = True,
          **overrides: Any) -> TrainResult:
    """Train a classifier on a folder (or CSV) of labelled images, evaluate it, write the run.

    Args:
        data: the dataset path (folder per class, train/val/test root, or CSV).
        config: an optional YAML config file; keyword overrides win over it.
        verbose: progress bars and per-epoch lines on stdout.
        **overrides: any config key by its own name (``epochs=3``, ``backbone="resnet50"``).

    Returns:
        TrainResult with the run directory, the model, history and test metrics.

    Example:
        >>> train("data/fashion", epochs=3, image_size=96).run_dir
        PosixPath('runs/fashion')
    """
    return run_training(resolve_config(data, config, **overrides), verbose=verbose)


def choose_image_size(requested: int, spec, report) -> int:
    """The input side: as asked, else the images' median side rounded up to a multiple of 32,
    at least 96 and at most the backbone's default (28 px images do not need 224)."""
    if requested:
        if requested < spec.min_size:
            raise ImgclfError(f"data.image_size={requested} is too small for {spec.name} "
                              f"(minimum {spec.min_size})")
        return requested
    sizes = (report.to_dict().get("sizes") or {})
    median = max((sizes.get("width") or {}).get("median", 0), (sizes.get("height") or {}).get("median", 0))
    if not median:
        return spec.default_size
    return int(min(spec.default_size, max(96, spec.min_size, 32 * math.ceil(median / 32))))


def run_training(cfg: RunConfig, verbose: bool = True, cluster: Cluster | None = None) -> TrainResult:
    """Everything ``imgclf train`` does, from a resolved config. See train().

    Every check that can fail on the user's input runs before the run directory is created.
    With a multi-worker ``cluster`` (imgclf.distribute) every worker runs this with the same
    config; only the chief creates and writes the run directory.
    """
    cluster = cluster or Cluster()
    strategy = make_strategy(cluster)
    with strategy.scope():
        cfg, spec, dataset, model = _prepare(cfg)
    if not cluster.is_chief:
        return _as_worker(cfg, spec, dataset, model, verbose, strategy, cluster)
    run_dir = unique_run_dir(cfg.runs_dir, cfg.name)
    if verbose:
        print(f"run directory: {run_dir}" + (f" ({cluster.describe()})" if cluster.size > 1 else ""))
        print(dataset.report.format_text())
    _write_run_inputs(run_dir, cfg, dataset)
    return _execute(cfg, spec, dataset, model, run_dir, verbose, strategy=strategy, cluster=cluster)


def resume_training(run_dir: str | Path, verbose: bool = True, cluster: Cluster | None = None) -> TrainResult:
    """Continue an interrupted run from its last checkpoint, in either phase.

    The run's own config.yaml and split.csv are used, so the data, split and settings are those
    it started with; the caches are rebuilt (deterministically, from the same seed). Under
    multi-worker training every worker resumes from the chief's run directory (a shared path),
    and only the chief writes to it.

    Args:
        run_dir: the run directory of an interrupted ``imgclf train``.
        verbose: progress bars and per-epoch lines.
        cluster: this process's place among the workers (imgclf.distribute); None: one process.

    Returns:
        The TrainResult, as if the run had never stopped.

    Example:
        >>> resume_training("runs/fashion").metrics["accuracy"]
        0.85
    """
    from imgclf.checkpoint import load_checkpoint
    run_dir = Path(run_dir)
    if (run_dir / COMPLETE).is_file():
        raise ImgclfError(f"{run_dir}: run is already complete; nothing to resume")
    if not (run_dir / "config.yaml").is_file():
        raise ImgclfError(f"{run_dir}: no config.yaml; not a run directory")
    state = load_checkpoint(run_dir / "checkpoint.npz")
    cluster = cluster or Cluster()
    strategy = make_strategy(cluster)
    with strategy.scope():
        cfg, spec, dataset, model = _prepare(load_config(run_dir / "config.yaml"), source=run_dir / "split.csv")
    if verbose:
        print(f"resuming {run_dir} after {len(state.rows)} epochs ({state.phase} phase)")
    if not cluster.is_chief:
        return _as_worker(cfg, spec, dataset, model, verbose, strategy, cluster, resume=state)
    return _execute(cfg, spec, dataset, model, run_dir, verbose, resume=state, strategy=strategy, cluster=cluster)


def _as_worker(cfg, spec, dataset, model, verbose, strategy, cluster, resume=None) -> TrainResult:
    """A non-chief worker: the same training step for step, in a scratch directory that is
    removed afterwards; the chief writes the run."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="imgclf-worker-") as scratch:
        return _execute(cfg, spec, dataset, model, Path(scratch), verbose, resume, strategy, cluster)


def _execute(cfg, spec, dataset, model, run_dir: Path, verbose: bool, resume=None, strategy=None,
             cluster: Cluster = Cluster()) -> TrainResult:
    """Train, save, evaluate, report, mark complete: the part of a run that resume repeats.
    A non-chief worker (run_dir is then a scratch folder) stops after training."""
    from imgclf.distribute import lost_peers
    from imgclf.trainer import fit_two_phase
    started = time.time()
    arrays = _load_split_images(dataset, cfg, run_dir)
    phase_data, cache_stats = _phase_data(model, spec.name, cfg, arrays, dataset, run_dir, verbose)
    weights = (data_mod.class_weights(dataset.labels["train"], len(dataset.class_names))
               if cfg.train.class_weights == "balanced" else None)
    with _EpochWriter(run_dir, verbose, resume.rows if resume else []) as log, \
            lost_peers(cluster, run_dir if cluster.is_chief else "RUN"):
        history = fit_two_phase(model, cfg.train, spec.name, phase_data, log, weights,
                                checkpoint=run_dir / "checkpoint.npz", resume=resume, strategy=strategy)
    if not cluster.is_chief:
        return TrainResult(None, model, dataset.class_names, history, None)
    with atomic_path(run_dir / "model.keras", ".keras") as tmp:
        model.save(tmp)
    from imgclf.predict import Classifier
    clf = Classifier(model, dataset.class_names, cfg.data.image_size, run_dir, cfg.data.max_pixels)
    metrics, evaluation = None, {}
    if len(dataset.paths["test"]):
        probs, evaluation = _predict_test(clf, phase_data if cache_stats else None, arrays["test"], cfg)
        metrics = _assess(clf, arrays["test"], dataset.labels["test"], run_dir, cfg.train.top_k, probs=probs)
    info = {"seconds": round(time.time() - started, 1), "image_size": cfg.data.image_size,
            "backbone": spec.name, "path": "cached" if cache_stats else "plain", **(cache_stats or {}), **evaluation,
            "resumed": resume is not None, **_strategy_info(strategy)}
    write_json_atomic(run_dir / "run.json", info)
    write_report_for(run_dir, cfg, dataset.report.to_dict(), history, metrics, info)
    write_text_atomic(run_dir / COMPLETE, time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    (run_dir / "checkpoint.npz").unlink(missing_ok=True)  # the run is whole; the model is saved
    if verbose and metrics:
        from imgclf.evaluate import format_metrics
        print(format_metrics(metrics))
        print(f"report: {run_dir / 'report.html'}")
    return TrainResult(run_dir, model, dataset.class_names, history, metrics)


def _strategy_info(strategy) -> dict:
    """How the run was distributed, for run.json: the strategy's class and replica count."""
    import tensorflow as tf
    strategy = strategy or tf.distribute.get_strategy()
    public = ("MultiWorkerMirroredStrategy", "MirroredStrategy")  # TF's classes have other names
    name = next((n for n in public if isinstance(strategy, getattr(tf.distribute, n))), "default")
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}


def _prepare(cfg: RunConfig, source: Path | None = None):
    """Load the dataset (from ``source``, else the config's path), settle the image size and
    name, build the model, check the fine-tune depth."""
    import keras

    from imgclf.model import build_classifier, select_top
    if not cfg.data.path:
        raise ImgclfError("no data given: pass a dataset folder or CSV (or set data.path in the config)")
    spec = get_spec(cfg.model.backbone)
    keras.utils.set_random_seed(cfg.seed)
    dataset = data_mod.load_dataset(source or cfg.data.path, val_fraction=cfg.data.val_fraction,
                                    test_fraction=cfg.data.test_fraction, seed=cfg.seed,
                                    max_pixels=cfg.data.max_pixels)
    size = choose_image_size(cfg.data.image_size, spec, dataset.report)
    name = cfg.name or Path(cfg.data.path).stem or "run"
    cfg = dataclasses.replace(cfg, name=name, data=dataclasses.replace(cfg.data, image_size=size))
    model = build_classifier(spec.name, len(dataset.class_names), size, weights=cfg.model.weights,
                             dropout=cfg.model.dropout, hidden_units=cfg.model.hidden_units, seed=cfg.seed)
    if cfg.train.fine_tune_epochs:
        select_top(model, spec.name, layers=cfg.train.fine_tune_layers, blocks=cfg.train.fine_tune_blocks)
    return cfg, spec, dataset, model


def _write_run_inputs(run_dir: Path, cfg: RunConfig, dataset) -> None:
    save_config(cfg, run_dir / "config.yaml")
    write_labels(run_dir, dataset.class_names)
    data_mod.save_split(dataset, run_dir / "split.csv")
    write_json_atomic(run_dir / "data_report.json", dataset.report.to_dict())


def _load_split_images(dataset, cfg: RunConfig, run_dir: Path) -> dict[str, np.ndarray]:
    """Each split's images at the run's size. A split whose images load_dataset kept decoded
    (small images) stays so, resized a batch at a time when read (data.ResizedImages: 0.2 GB
    instead of 1.9 GB for Fashion-MNIST at 96 px); the others are decoded and resized now."""
    cache_dir = run_dir / "cache" if cfg.data.cache == "disk" else None
    arrays = {split: data_mod.load_images(dataset.paths[split], cfg.data.image_size, max_pixels=cfg.data.max_pixels,
                                          cache_dir=cache_dir, decoded=dataset.decoded, lazy=True)
              for split in ("train", "val", "test")}
    dataset.decoded.clear()
    return arrays


def _phase_data(model, backbone: str, cfg: RunConfig, arrays, dataset, run_dir: Path, verbose: bool):
    """The fast cached path when enabled and it fits, else the plain path; and cache statistics."""
    from imgclf.trainer import PlainData
    if cfg.train.feature_cache:
        from imgclf.features import CachedData
        try:
            data = CachedData(model, backbone, cfg, (arrays["train"], dataset.labels["train"]),
                              (arrays["val"], dataset.labels["val"]), run_dir / "cache",
                              predict_count=len(arrays["test"]))
        except MemoryError as exc:
            print(f"imgclf: {exc}; training on the plain path instead")
        else:
            if verbose:
                s = data.stats
                print(f"feature cache: {s['views']} views, {s['cache_mb']:.0f} MB "
                      f"({s['cache_mb_on_disk']:.0f} MB on disk), built in {s['cache_seconds']:.1f} s")
            return data, data.stats
    return PlainData(model, *_pipelines(arrays, dataset, cfg)), None


def _pipelines(arrays, dataset, cfg: RunConfig):
    n = len(dataset.class_names)
    train_ds = data_mod.make_pipeline(arrays["train"], dataset.labels["train"], n, cfg.data.batch_size,
                                      shuffle=True, seed=cfg.seed, augment=cfg.data.augment)
    val_ds = None
    if len(arrays["val"]):
        val_ds = data_mod.make_pipeline(arrays["val"], dataset.labels["val"], n, cfg.data.batch_size)
    return train_ds, val_ds


class _EpochWriter:
    """Writes history.csv (rewritten atomically each epoch) and TensorBoard scalars."""

    def __init__(self, run_dir: Path, verbose: bool, rows: list[dict]):
        self.run_dir, self.verbose, self.rows = run_dir, verbose, list(rows)

    def __enter__(self):
        import tensorflow as tf
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        return self

    def on_epoch(self, row: dict) -> None:
        import tensorflow as tf
        from imgclf.trainer import HISTORY_KEYS
        self.rows.append(row)
        lines = [",".join(HISTORY_KEYS)]
        for r in self.rows:
            lines.append(",".join(_csv_value(r.get(k, "")) for k in HISTORY_KEYS))
        write_text_atomic(self.run_dir / "history.csv", "\n".join(lines) + "\n")
        with self.writer.as_default(step=row["epoch"]):
            for key, value in row.items():
                if isinstance(value, float) and key not in ("epoch",):
                    tf.summary.scalar(key, value)
        self.writer.flush()

    def __exit__(self, *exc):
        self.writer.close()
        return False


def _csv_value(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _predict_test(clf, cached, images: np.ndarray, cfg: RunConfig) -> tuple[np.ndarray, dict]:
    """Test-set probabilities, and how they were computed (run.json's eval_runtime, eval_seconds).

    On the cached path (``cached``: the run's features.CachedData) the frozen part runs on the
    compiled forward the caches used (LiteRT: 3-5x Keras predict) and the rest as a tf.function;
    otherwise the Classifier's Keras model, as ``imgclf evaluate`` does.
    """
    from imgclf.forward import choose_runtime
    start = time.perf_counter()
    if cached is None:
        probs, runtime = clf.predict_arrays(images), "keras"
    else:
        probs, runtime = cached.predict(images), choose_runtime(cfg.train.runtime, len(images)) + "+tf"
    return probs, {"eval_runtime": runtime, "eval_seconds": round(time.perf_counter() - start, 2)}


def _assess(clf, images: np.ndarray, labels: np.ndarray, out_dir: Path, top_k: int,
            class_names: list[str] | None = None, probs: np.ndarray | None = None) -> dict:
    """Predict (unless ``probs`` are given), compute metrics, write metrics.json and the metric
    plots into out_dir."""
    import imgclf.evaluate as evaluate
    import imgclf.plots as plots
    if probs is None:
        probs = clf.predict_arrays(images)
    names = class_names or clf.class_names
    metrics = evaluate.compute_metrics(labels, probs, names, top_k=top_k)
    write_json_atomic(out_dir / "metrics.json", metrics)
    plot_dir = out_dir / "plots"
    plots.plot_confusion(np.array(metrics["confusion_matrix"]), names, plot_dir / "confusion_matrix.png")
    plots.plot_per_class(metrics, plot_dir / "per_class.png")
    wrong = evaluate.mistakes(labels, probs, limit=25)
    pred = probs.argmax(axis=1)
    plots.plot_mistakes(np.asarray(images[wrong]) if len(wrong) else np.zeros((0, 1, 1, 3), np.uint8),
                        labels[wrong], pred[wrong], probs[wrong, pred[wrong]] if len(wrong) else np.zeros(0),
                        names, plot_dir / "mistakes.png")
    return metrics


def write_report_for(run_dir: Path, cfg: RunConfig, data_report: dict, history: list[dict],
                     metrics: dict | None, info: dict) -> Path:
    """Draw the history plot and write report.html from what the run has written."""
    import imgclf.plots as plots
    import imgclf.report as report
    plot_dir = run_dir / "plots"
    if history:
        plots.plot_history(history, plot_dir / "training_curves.png")
    found = {p.stem: p for p in sorted(plot_dir.glob("*.png"))}
    return report.write_report(run_dir / "report.html", title=run_dir.name, config=config_to_dict(cfg),
                               data_report=data_report, metrics=metrics, history=history, plots=found,
                               run_info=info)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, verbose: bool = True) -> dict:
    """Evaluate a finished run on its held-out test split, or on any labelled dataset.

    Args:
        run_dir: a finished run directory.
        data: a labelled dataset (every image in it is used); None for the run's own test split.
        verbose: print the metrics table.

    Returns:
        The metrics dict (also written to metrics.json: in the run directory, or in
        ``run_dir/eval-<data name>/`` for another dataset).

    Example:
        >>> evaluate_run("runs/fashion")["accuracy"]
        0.83
    """
    from imgclf.predict import load
    run_dir = check_complete(run_dir)
    clf = load(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    if data is None:
        dataset = data_mod.load_dataset(run_dir / "split.csv", max_pixels=cfg.data.max_pixels)
        paths, labels, out_dir = dataset.paths["test"], dataset.labels["test"], run_dir
        if not len(paths):
            raise ImgclfError(f"{run_dir}: the run has no test split; pass --data DIR to evaluate on other data")
    else:
        paths, labels, out_dir = _other_data(data, clf.class_names, cfg, run_dir)
    images = data_mod.load_images(paths, clf.image_size, max_pixels=cfg.data.max_pixels)
    metrics = _assess(clf, images, labels, out_dir, cfg.train.top_k)
    if data is None:
        history = _read_history(run_dir)
        report_dict = _read_json(run_dir / "data_report.json")
        write_report_for(run_dir, cfg, report_dict, history, metrics, _read_json(run_dir / "run.json"))
    if verbose:
        from imgclf.evaluate import format_metrics
        print(format_metrics(metrics))
        print(f"metrics: {out_dir / 'metrics.json'}")
    return metrics


def _other_data(data, class_names, cfg, run_dir):
    dataset = data_mod.load_dataset(data, val_fraction=0.0, test_fraction=0.0, seed=cfg.seed,
                                    max_pixels=cfg.data.max_pixels)
    unknown = sorted(set(dataset.class_names) - set(class_names))
    if unknown:
        raise ImgclfError(f"{data}: class '{unknown[0]}' is not one the model knows "
                          f"({', '.join(class_names)})")
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for split in ("train", "val", "test"):
        paths += list(dataset.paths[split])
        labels += [index[dataset.class_names[j]] for j in dataset.labels[split]]
    return paths, np.array(labels, dtype=np.int64), run_dir / f"eval-{Path(data).stem}"


def _read_json(path: Path) -> dict:
    import json
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_history(run_dir: Path) -> list[dict]:
    import csv
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            rows.append({k: (v if k == "phase" else (float(v) if v else math.nan)) for k, v in row.items()})
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return rows
