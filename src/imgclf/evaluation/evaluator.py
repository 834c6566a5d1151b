"""The one evaluator: a classifier on labelled images -> predictions, metrics, figures.

Training (on its test split), ``imgclf evaluate`` (on the test split or other data) and the
export check (an exported model against the trained one) all evaluate through
``evaluate_on``; ``save_evaluation`` writes what the report shows, through the run record.

Example:
    >>> result = evaluate_on(classifier, images, labels, top_k=5)
    >>> result.metrics["accuracy"], result.runtime
    (0.855, 'keras')
    >>> save_evaluation(result, images, RunRecord("runs/fashion"))
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imgclf.errors import ImgclfError
from imgclf.evaluation.calibration import calibration_metrics
from imgclf.evaluation.metrics import compute_metrics, mistakes
from imgclf.ranking import temper
from imgclf.record import RunRecord

MISTAKES_SHOWN = 25  # the mistakes grid's size
# save_evaluation's figures, dearest first: the mistakes grid with Grad-CAM took 3.2 s of 5.4 on
# 300 photos at 160 px (2026-12-08), the confusion matrix 1.4, reliability 0.5, per-class 0.2
FIGURES = ("mistakes", "confusion", "reliability", "per_class")


@dataclass
class Evaluation:
    """One model on one set of labelled images: its probabilities and every metric."""

    labels: np.ndarray  # (N,) true class indices, in the model's class order
    probs: np.ndarray = field(repr=False)  # (N, C) probabilities
    metrics: dict = field(repr=False)  # compute_metrics' dict
    runtime: str  # what computed the probabilities ("keras", "tflite+tf", "tflite-int8"...)
    seconds: float  # how long that took

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def evaluate_on(classifier, images, labels: np.ndarray, *, top_k: int = 5,
                predict: Callable | None = None, runtime: str | None = None, intervals: bool = True) -> Evaluation:
    """Predict ``images`` with ``classifier`` and score the predictions against ``labels``.

    Args:
        classifier: anything with ``class_names`` and ``predict_arrays(images)`` (imgclf.deploy's
            Classifier, for a run or any exported model).
        images: (N, S, S, 3) 0-255 RGB at the model's size (an array or array-like read by slices).
        labels: (N,) class indices in the classifier's class order.
        top_k: k of top-k accuracy.
        predict: another way to compute the same probabilities (the feature cache's fast path),
            before the classifier's temperature, which is applied to them; default
            ``classifier.predict_arrays`` (which applies it itself).
        runtime: what ``predict`` runs on, for the record (default: the classifier's format).
        intervals: add 95% bootstrap intervals to the metrics (``imgclf evaluate --no-ci`` skips them).

    Returns:
        Evaluation with probabilities, metrics and timing.

    Example:
        >>> evaluate_on(clf, images, labels).metrics["macro"]["f1"]
        0.854
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    start = time.perf_counter()
    temperature = float(getattr(classifier, "temperature", 1.0))
    # predict_arrays applies the classifier's temperature itself; another ``predict`` does not
    probs = classifier.predict_arrays(images) if predict is None else temper(predict(images), temperature)
    probs = np.asarray(probs, np.float32)
    seconds = round(time.perf_counter() - start, 2)
    metrics = compute_metrics(labels, probs, classifier.class_names, top_k=top_k, intervals=intervals)
    metrics["calibration"] = calibration_metrics(probs, labels, temperature)
    return Evaluation(labels, probs, metrics, runtime or getattr(classifier, "format", "keras"), seconds)


def save_evaluation(evaluation: Evaluation, images, record: RunRecord, model=None,
                    figures: tuple[str, ...] = FIGURES) -> None:
    """Write metrics.json and the metric figures (confusion matrix, per-class scores, the
    reliability diagram, the most confident mistakes) into ``record`` (a run, or its ``evaluation(name)`` folder).

    Args:
        evaluation: what ``evaluate_on`` returned.
        images: the images it was computed on.
        record: where to write.
        model: the trained Keras model, to draw Grad-CAM maps of the predicted class over the
            mistakes grid (imgclf.evaluation.saliency; the grid's images only); None, or a model
            without imgclf's base and head: no maps.
        figures: which figures to draw (keys of FIGURES); the workers of a multi-worker run
            draw their shares (figure_share) and send them to the chief (send_figures).

    Example:
        >>> save_evaluation(evaluate_on(clf, images, labels), images, RunRecord("runs/fashion"), clf.model)
    """
    from imgclf.evaluation import plots
    from imgclf.evaluation.image_plots import plot_mistakes
    metrics, names = evaluation.metrics, evaluation.metrics["class_names"]
    record.write_metrics(metrics)
    if "confusion" in figures:
        plots.plot_confusion(np.array(metrics["confusion_matrix"]), names, record.plot_path("confusion"))
    if "per_class" in figures:
        plots.plot_per_class(metrics, record.plot_path("per_class"))
    if metrics.get("calibration") and "reliability" in figures:
        from imgclf.evaluation.calibration_plots import plot_reliability
        plot_reliability(metrics["calibration"], record.plot_path("reliability"))
    if "mistakes" not in figures:
        return
    wrong = mistakes(evaluation.labels, evaluation.probs, limit=MISTAKES_SHOWN)
    pred, probs = evaluation.predictions, evaluation.probs
    shown = np.asarray(images[wrong]) if wrong else np.zeros((0, 1, 1, 3), np.uint8)
    heatmaps = None
    if model is not None and wrong:
        from imgclf.evaluation.saliency import explainable, grad_cam
        heatmaps = grad_cam(model, shown, pred[wrong]) if explainable(model) else None
    plot_mistakes(shown, evaluation.labels[wrong], pred[wrong], probs[wrong, pred[wrong]] if wrong else np.zeros(0),
                  names, record.plot_path("mistakes"), heatmaps=heatmaps)


def figure_share(index: int, count: int) -> tuple[str, ...]:
    """The figures worker ``index`` of ``count`` draws: each worker after the chief one of the
    dearest, the chief (0) the rest, as well as metrics.json and the report, which need no figure
    of the others until the end. One worker draws them all.

    Example:
        >>> figure_share(0, 2), figure_share(1, 2)
        (('confusion', 'reliability', 'per_class'), ('mistakes',))
    """
    others = FIGURES[:max(0, count - 1)]
    return tuple(f for f in FIGURES if f not in others) if index == 0 else others[index - 1:index]


def send_figures(record: RunRecord, keys, gather, chief: bool) -> int:
    """Bring every worker's figures into the chief's run: each other worker sends the figures
    ``keys`` it drew into its own (scratch) ``record``, the chief writes them into its run.
    ``gather`` is training.exchange.WorkerShards.gather: a collective, so every worker calls
    this. Returns the figures written (the chief) or sent.

    Example:
        >>> send_figures(record, figure_share(1, 2), shards.gather, chief=False)
        1
    """
    import base64

    from imgclf.files import write_bytes_atomic
    mine = {} if chief else {key: base64.b64encode(record.plot_path(key).read_bytes()).decode("ascii")
                             for key in keys if record.plot_path(key).is_file()}
    received = gather(mine)
    if not chief:
        return len(mine)
    for part in received:
        for key, text in part.items():
            record.plot_path(key).parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(record.plot_path(key), base64.b64decode(text))
    return sum(len(part) for part in received)


def compare(reference: Evaluation, other: Evaluation) -> dict:
    """How another model (an export) answers on the same images as the reference (the trained
    model): both accuracies, the paired accuracy change with its 95% interval and McNemar's
    test (imgclf.evaluation.intervals.paired_comparison), a per-class table of the change,
    top-1 agreement and the largest probability difference.

    Example:
        >>> c = compare(evaluate_on(keras_clf, x, y), evaluate_on(int8_clf, x, y))
        >>> c["agreement"], c["accuracy_change"], c["accuracy_change_ci"]
        (0.962, 0.0127, [-0.0063, 0.0316])
    """
    from imgclf.evaluation.intervals import paired_comparison
    if not np.array_equal(reference.labels, other.labels):
        raise ValueError("compare needs two evaluations on the same images")
    ref, exp = reference.predictions, other.predictions
    acc, keras_acc = float(np.mean(exp == other.labels)), float(np.mean(ref == reference.labels))
    names = reference.metrics["class_names"]
    paired = paired_comparison(reference.labels, ref, exp, len(names))
    per_class = [{**row, "class": names[row["class"]]} for row in paired["per_class"]]
    return {"n": int(len(ref)), "accuracy": round(acc, 4), "keras_accuracy": round(keras_acc, 4),
            "accuracy_change": round(acc - keras_acc, 4), "accuracy_change_ci": paired["change_ci"],
            "accuracy_drop_lower": paired["drop_lower"], "mcnemar_p": paired["mcnemar_p"],
            "discordant": paired["discordant"], "level": paired["level"],
            "agreement": round(float(np.mean(exp == ref)), 4),
            "max_abs_diff": round(float(np.abs(other.probs - reference.probs).max()), 6), "per_class": per_class}


def held_out_split(dataset, record: RunRecord, splits: tuple[str, ...] = ("test",)) -> str:
    """The first of ``splits`` the dataset has images in; a one-line error naming the run if none.

    Example:
        >>> held_out_split(load_dataset(record.split_path), record, ("test", "val"))
        'test'
    """
    for split in splits:
        if len(dataset.paths[split]):
            return split
    if splits == ("test",):
        raise ImgclfError(f"{record.path}: the run has no test split; pass --data DIR to evaluate on other data")
    raise ImgclfError(f"{record.path}: the run has no {' or '.join(splits)} images to check an export on")
