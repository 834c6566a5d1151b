"""Export a run to the formats people deploy, each proven to answer like the trained model.

Every exported graph takes raw 0-255 RGB at the model's size (the preprocessing is inside) and
returns class probabilities, calibrated: the run's temperature (fitted on validation) is folded
into the final layer's weights (``temperature_in_graph`` in the record), so the raw .tflite or
.onnx answers like ``imgclf predict`` without imgclf (a run that predicts with the test-time flip
has the flip in its graph, ``flip_in_graph``, and its temperature in the record, applied by
``imgclf.load``: the same answers, calibrated only inside imgclf); its class names travel with it. Before a model takes its final
name it runs on the run's test split (the validation split if there is no test split), through
the same evaluator as training, and it is judged by what it loses: it is refused, and not left
behind, only when its accuracy drop against the Keras model on those same images is
significantly larger than ``max_accuracy_drop`` (default 0.01, one point): precisely, when the
one-sided 95% lower bound of the drop (paired bootstrap, stratified by class:
imgclf.evaluation.intervals.paired_comparison) exceeds it. Agreement on close calls is recorded
but decides nothing. Default layout of
``RUN/export/`` (file names from the format table, imgclf.deploy.formats)::

    model.keras, saved_model/, model.tflite, model_dynamic.tflite, model_int8.tflite, model.onnx
    labels.txt             class names, one per line, beside every exported model
    <name>.json            beside each model (model_int8.tflite.json...): the record, with
                           format, image size, class names, input, and the check's results
    metrics.json           per format: accuracy, Keras accuracy, the paired accuracy change with its
                           interval and McNemar's p, a per-class table of the change,
                           agreement, max_accuracy_drop, passed

Example:
    >>> export_run("runs/fashion", "tflite-int8").metrics["accuracy_change_ci"]
    [-0.0063, 0.0316]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.data import load_dataset, load_images
from imgclf.deploy.formats import ExportFormat, ExportJob, get_format
from imgclf.deploy.predict import Classifier, load
from imgclf.errors import ImgclfError
from imgclf.evaluation import compare, evaluate_on, held_out_split
from imgclf.files import (LABELS_FILE, atomic_dir, atomic_path, load_labels, remove_stale_temps, save_labels,
                          write_json_atomic)
from imgclf.record import RunRecord

MAX_ACCURACY_DROP = 0.01  # an export may lose at most this much test accuracy (significantly)


@dataclass
class ExportResult:
    """One checked export: where it is and how it compares with the Keras model."""

    format: str
    path: Path
    metrics: dict


def export_run(run_dir: str | Path, format: str = "tflite", out: str | Path | None = None, *,
               max_accuracy_drop: float = MAX_ACCURACY_DROP, calibration_images: int = 200,
               num_threads: int | None = None, verbose: bool = False) -> ExportResult:
    """Export a finished run, check the export on held-out images, and record the check.

    Args:
        run_dir: a finished run directory.
        format: a name in imgclf.deploy.formats.FORMATS (keras, savedmodel, tflite, ...).
        out: the model file (or SavedModel folder); default ``RUN/export/<default name>``.
        max_accuracy_drop: refuse the export when its accuracy drop against the Keras model is
            significantly larger than this (one-sided 95% paired-bootstrap lower bound of the
            drop above it); 0-1, default 0.01.
        calibration_images: training images (seeded sample) that calibrate int8 ranges.
        num_threads: LiteRT / ONNX Runtime threads for the check (default: every CPU).
        verbose: print what it is doing.

    Returns:
        ExportResult; its metrics are also written to ``RUN/export/metrics.json``.

    Raises:
        ImgclfError: unknown format, bad destination, or an accuracy drop significantly above
            ``max_accuracy_drop`` (the export is then removed, and the failed check recorded).

    Example:
        >>> export_run("runs/fashion", "savedmodel").path
        PosixPath('runs/fashion/export/saved_model')
    """
    return Exporter(run_dir, num_threads).export(format, out, max_accuracy_drop=max_accuracy_drop,
                                                 calibration_images=calibration_images, verbose=verbose)


class Exporter:
    """Exports one run to any number of formats, loading the run and its test split once.

    Example:
        >>> exporter = Exporter("runs/fashion")
        >>> [exporter.export(f).metrics["accuracy_change"] for f in ("tflite", "tflite-int8")]
        [0.0, 0.0127]
    """

    def __init__(self, run_dir: str | Path, num_threads: int | None = None):
        self.record = RunRecord.finished(run_dir, writing=True)  # stale temps of a killed export go
        self.num_threads = num_threads
        self.cfg = self.record.read_config()
        self._clf = self._dataset = self._held_out = self._tempered = None

    @property
    def clf(self) -> Classifier:
        """The run's Classifier, loaded on first use (a bad request fails before that)."""
        if self._clf is None:
            self._clf = load(self.record.path)
        return self._clf

    def export(self, format: str, out: str | Path | None = None, *, max_accuracy_drop: float = MAX_ACCURACY_DROP,
               calibration_images: int = 200, verbose: bool = False) -> ExportResult:
        """Export to ``format``; see :func:`export_run` for the arguments."""
        fmt = get_format(format)
        max_drop = float(max_accuracy_drop)
        if not 0.0 <= max_drop <= 1.0:
            raise ImgclfError(f"--max-accuracy-drop {max_drop}: must be between 0 and 1")
        dest = Path(out) if out else self.record.export_dir / fmt.file_name
        _check_destination(dest, fmt, self.record.read_labels())
        reference, images, split = self.held_out()  # a run with nothing to check on fails before converting
        record, started = _record(fmt, self.clf, self.cfg, self.record), time.time()
        if verbose:
            print(f"{fmt.name}: converting ({dest})", flush=True)
        remove_stale_temps(dest.parent, [dest.name, f"{dest.name}.json", LABELS_FILE])  # of an export killed before
        with (atomic_dir(dest) if fmt.is_dir else atomic_path(dest, fmt.suffix)) as tmp:
            calibration = self.calibration(calibration_images) if fmt.calibrated else None
            model, folded = self.tempered()
            record["temperature_in_graph"], record["flip_in_graph"] = folded, self.clf.flip
            fmt.convert(ExportJob(model, tmp, record, list(self.clf.class_names), calibration,
                                  None if model is not self.clf.model else self.record.model_path))
            if verbose:
                print(f"{fmt.name}: checking on {len(images)} {split} images", flush=True)
            exported = Classifier(fmt.open(tmp, self.num_threads), self.clf.class_names, self.clf.image_size,
                                  tmp, format=fmt.name, temperature=1.0 if folded else self.clf.temperature)
            checked = evaluate_on(exported, images, reference.labels, intervals=False)
            metrics = {**compare(reference, checked), "split": split}
            metrics.update(path=str(dest), max_accuracy_drop=max_drop, rule="refused when the one-sided 95% "
                           "lower bound of the accuracy drop exceeds max_accuracy_drop",
                           passed=metrics["accuracy_drop_lower"] <= max_drop,
                           bytes=_size(tmp), seconds=round(time.time() - started, 1),
                           created=time.strftime("%Y-%m-%dT%H:%M:%S"))
            if calibration is not None:
                metrics["calibration_images"] = len(calibration)
            if not metrics["passed"]:
                self._record_check(fmt.name, metrics)
                lo, hi = metrics["accuracy_change_ci"]
                raise ImgclfError(f"{dest}: {fmt.name} export loses accuracy: {metrics['accuracy_change']:+.1%} "
                                  f"[{lo:+.1%}, {hi:+.1%}] against the Keras model on {metrics['n']} {split} images, "
                                  f"significantly more than the {max_drop:.1%} allowed; not written "
                                  f"(--max-accuracy-drop raises it)")
            # what a model needs to load (its class names, its record) is in place before it takes its
            # name, so a kill at any point leaves no model at its final path without them
            save_labels(dest.parent, self.clf.class_names)
            write_json_atomic(dest.parent / f"{dest.name}.json", {**record, "check": metrics})  # one per model
        self._record_check(fmt.name, metrics)
        return ExportResult(fmt.name, dest, metrics)

    def tempered(self):
        """(the model to convert, whether the run's temperature is folded into it): a second copy
        of the run's model whose final layer divides by T (imgclf.training.model.fold_temperature),
        so every exported graph returns calibrated probabilities even outside imgclf; the run's
        own model when T is 1. A run that predicts with the test-time flip gets the flip in its
        graph instead (fold_flip: the mean of the raw probabilities on the image and its mirror
        image) and keeps T in its record: imgclf calibrates the mean, and T folded into each
        half would calibrate each half before the mean, which is not the same. Loaded once."""
        if self._tempered is None:
            self._tempered = (self.clf.model, False)
            if self.clf.flip:
                from imgclf.training.model import fold_flip
                self._tempered = (fold_flip(self.clf.model), False)
            elif self.clf.temperature != 1.0:
                from imgclf.runtime import load_keras_model
                from imgclf.training.model import fold_temperature
                model = load_keras_model(self.record.model_path)
                if fold_temperature(model, self.clf.temperature):
                    self._tempered = (model, True)
        return self._tempered

    def _record_check(self, format: str, metrics: dict) -> None:
        """Record a check in export/metrics.json and show it in the run's report.html."""
        self.record.update_export_metrics(format, metrics)
        self._refresh_report()

    @property
    def dataset(self):
        """The run's split (split.csv), read on first use."""
        if self._dataset is None:
            self._dataset = load_dataset(self.record.split_path, max_pixels=self.cfg.data.max_pixels)
        return self._dataset

    def held_out(self):
        """(the Keras model's Evaluation, the images, the split's name) on the test split, or
        the validation split without one; computed once."""
        if self._held_out is None:
            split = held_out_split(self.dataset, self.record, ("test", "val"))
            labels = self.dataset.labels_for(self.clf.class_names, split)
            images = load_images(self.dataset.paths[split], self.clf.image_size, max_pixels=self.cfg.data.max_pixels)
            reference = evaluate_on(self.clf, images, labels, top_k=self.cfg.train.top_k, intervals=False)
            self._held_out = (reference, images, split)
        return self._held_out

    def _refresh_report(self) -> None:
        """Rewrite the run's report.html so its export section shows every check so far."""
        from imgclf.config import config_to_dict
        from imgclf.evaluation.report import write_run_report
        write_run_report(self.record, config_to_dict(self.cfg), self.record.read_history(),
                         self.record.read_metrics() or None, self.record.read_run_info())

    def calibration(self, count: int) -> np.ndarray:
        """A seeded sample of at most ``count`` training images (int8 calibration)."""
        paths = self.dataset.paths["train"]
        rng = np.random.default_rng(self.cfg.seed)
        chosen = sorted(rng.choice(len(paths), size=min(max(1, count), len(paths)), replace=False)) if paths else []
        return load_images([paths[i] for i in chosen], self.clf.image_size, max_pixels=self.cfg.data.max_pixels)


def _record(fmt: ExportFormat, clf: Classifier, cfg, record: RunRecord) -> dict:
    from imgclf import __version__
    return {"format": fmt.name, "image_size": clf.image_size, "class_names": list(clf.class_names),
            "backbone": cfg.model.backbone, "output": "probabilities",
            "input": {"dtype": fmt.input_dtype, "range": [0, 255], "layout": "NHWC RGB",
                      "resize": "squash to image_size x image_size"},
            "temperature": clf.temperature,  # fitted on validation; in the graph when temperature_in_graph,
            # else applied to the outputs by imgclf.load
            "flip": clf.flip,  # test-time flip, chosen on validation; in the graph when flip_in_graph
            "run": str(record.path.resolve()), "imgclf_version": __version__}


def _check_destination(dest: Path, fmt: ExportFormat, class_names: list[str]) -> None:
    if not fmt.is_dir and dest.suffix.lower() != fmt.suffix:
        raise ImgclfError(f"{dest}: a {fmt.name} export must end in {fmt.suffix}")
    if fmt.is_dir and dest.exists() and not (dest / "saved_model.pb").is_file():
        if not dest.is_dir() or any(dest.iterdir()):
            raise ImgclfError(f"{dest}: exists and is not a SavedModel; not replacing it")
    labels = load_labels(dest.parent / LABELS_FILE)
    if labels is not None and labels != list(class_names):
        raise ImgclfError(f"{dest.parent / LABELS_FILE}: holds another model's class names; export to another folder")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
