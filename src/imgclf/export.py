"""Export a run to the formats people deploy, each proven to answer like the trained model.

Every exported graph takes raw 0-255 RGB at the model's size (the preprocessing is inside) and
returns class probabilities; its class names travel with it. Before a model takes its final
name it runs on the run's test split (the validation split if there is no test split), and it
is refused, and not left behind, when its top-1 agreement with the Keras model is below the
threshold. Default layout of ``RUN/export/``::

    model.keras            the Keras model, as trained
    saved_model/           serving_default: image float32 (N, S, S, 3) -> probabilities;
                           assets/labels.txt and assets/imgclf.json (the record)
    model.tflite           float32
    model_dynamic.tflite   dynamic-range quantised: int8 weights, float activations
    model_int8.tflite      full integer, calibrated on training images: uint8 input (raw
                           pixels), float32 probabilities out
    labels.txt             class names, one per line, beside every exported model
    <name>.json            beside each model (model_int8.tflite.json...): the record, with
                           format, image size, class names, input, and the check's results
    metrics.json           per format: accuracy, Keras accuracy, agreement, threshold, passed

A ``.tflite`` also carries the record inside, as TFLite metadata named ``imgclf``.

Example:
    >>> export_run("runs/fashion", "tflite-int8").metrics["agreement"]
    0.98
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from imgclf import convert
from imgclf import data as data_mod
from imgclf.config import load_config
from imgclf.errors import ImgclfError
from imgclf.runs import atomic_path, check_complete, read_labels, write_json_atomic, write_text_atomic

FORMATS = {"keras": "model.keras", "savedmodel": "saved_model", "tflite": "model.tflite",
           "tflite-dynamic": "model_dynamic.tflite", "tflite-int8": "model_int8.tflite"}
# Float formats must agree on (nearly) every image; quantised ones may flip a few close calls.
MIN_AGREEMENT = {"keras": 0.99, "savedmodel": 0.99, "tflite": 0.99, "tflite-dynamic": 0.97,
                 "tflite-int8": 0.97}
TFLITE_MODES = {"tflite": "float", "tflite-dynamic": "dynamic", "tflite-int8": "int8"}


@dataclass
class ExportResult:
    """One checked export: where it is and how it compares with the Keras model."""

    format: str
    path: Path
    metrics: dict


def export_run(run_dir: str | Path, format: str = "tflite", out: str | Path | None = None, *,
               min_agreement: float | None = None, calibration_images: int = 200,
               num_threads: int | None = None, verbose: bool = False) -> ExportResult:
    """Export a finished run, check the export on held-out images, and record the check.

    Args:
        run_dir: a finished run directory.
        format: keras, savedmodel, tflite, tflite-dynamic or tflite-int8.
        out: the model file (or SavedModel folder); default ``RUN/export/<default name>``.
        min_agreement: the least top-1 agreement with the Keras model to accept (0-1);
            default 0.99 for float formats, 0.97 for quantised ones.
        calibration_images: training images (seeded sample) that calibrate int8 ranges.
        num_threads: LiteRT threads for the check (default: every CPU).
        verbose: print what it is doing.

    Returns:
        ExportResult; its metrics are also written to ``RUN/export/metrics.json``.

    Raises:
        ImgclfError: unknown format, bad destination, or agreement below the threshold (the
            export is then removed, and the failed check recorded).

    Example:
        >>> export_run("runs/fashion", "savedmodel").path
        PosixPath('runs/fashion/export/saved_model')
    """
    return Exporter(run_dir, num_threads).export(format, out, min_agreement=min_agreement,
                                                 calibration_images=calibration_images, verbose=verbose)


class Exporter:
    """Exports one run to any number of formats, loading the run and its test split once.

    Example:
        >>> exporter = Exporter("runs/fashion")
        >>> [exporter.export(f).metrics["agreement"] for f in ("tflite", "tflite-int8")]
        [1.0, 0.98]
    """

    def __init__(self, run_dir: str | Path, num_threads: int | None = None):
        self.run_dir = check_complete(run_dir)
        self.num_threads = num_threads
        self.cfg = load_config(self.run_dir / "config.yaml")
        self._clf = self._dataset = self._reference = None

    @property
    def clf(self):
        """The run's Classifier, loaded on first use (a bad request fails before that)."""
        if self._clf is None:
            from imgclf.predict import load
            self._clf = load(self.run_dir)
        return self._clf

    def export(self, format: str, out: str | Path | None = None, *, min_agreement: float | None = None,
               calibration_images: int = 200, verbose: bool = False) -> ExportResult:
        """Export to ``format``; see :func:`export_run` for the arguments."""
        if format not in FORMATS:
            raise ImgclfError(f"unknown export format '{format}' (valid: {', '.join(FORMATS)})")
        threshold = MIN_AGREEMENT[format] if min_agreement is None else float(min_agreement)
        if not 0.0 <= threshold <= 1.0:
            raise ImgclfError(f"--min-agreement {threshold}: must be between 0 and 1")
        dest = Path(out) if out else self.run_dir / "export" / FORMATS[format]
        _check_destination(dest, format, read_labels(self.run_dir))
        self._held_out()  # a run with nothing to check on fails before converting
        record, started = _record(format, self.clf, self.cfg, self.run_dir), time.time()
        if verbose:
            print(f"{format}: converting ({dest})", flush=True)
        with _staged(dest, format == "savedmodel") as tmp:
            calibration = self._calibration(calibration_images, format)
            _write(format, self.clf, tmp, record, self.run_dir, calibration)
            metrics = self._check(format, tmp, verbose)
            metrics.update(path=str(dest), min_agreement=threshold, passed=metrics["agreement"] >= threshold,
                           bytes=_size(tmp), seconds=round(time.time() - started, 1),
                           created=time.strftime("%Y-%m-%dT%H:%M:%S"))
            if calibration is not None:
                metrics["calibration_images"] = len(calibration)
            _save_metrics(self.run_dir, format, metrics)
            if not metrics["passed"]:
                raise ImgclfError(f"{dest}: {format} export agrees with the Keras model on {metrics['agreement']:.1%} "
                                  f"of {metrics['n']} {metrics['split']} images, below the {threshold:.1%} "
                                  f"threshold; not written (--min-agreement lowers it)")
        _write_sidecars(dest, self.clf.class_names, {**record, "check": metrics})
        return ExportResult(format, dest, metrics)

    def _check(self, format: str, path: Path, verbose: bool) -> dict:
        """Run the exported model at ``path`` on the held-out images; compare with Keras."""
        from imgclf.predict import Classifier
        images, labels, split, reference = self._held_out()
        if verbose:
            print(f"{format}: checking on {len(images)} {split} images", flush=True)
        runtime = _open(format, path, self.num_threads)
        exported = Classifier(runtime, self.clf.class_names, self.clf.image_size, path, format=format)
        return {**compare(reference, exported.predict_arrays(images), labels), "split": split}

    def _held_out(self) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """Test images, labels (in the run's class order), split name, Keras probabilities (once)."""
        if self._reference is None:
            self._dataset = data_mod.load_dataset(self.run_dir / "split.csv", max_pixels=self.cfg.data.max_pixels)
            split = next((s for s in ("test", "val") if len(self._dataset.paths[s])), None)
            if split is None:
                raise ImgclfError(f"{self.run_dir}: the run has no test or validation images to check an export on")
            index = {name: i for i, name in enumerate(self.clf.class_names)}
            labels = np.array([index[self._dataset.class_names[j]] for j in self._dataset.labels[split]], np.int64)
            images = data_mod.load_images(self._dataset.paths[split], self.clf.image_size,
                                          max_pixels=self.cfg.data.max_pixels)
            self._reference = (images, labels, split, self.clf.predict_arrays(images))
        return self._reference

    def _calibration(self, count: int, format: str) -> np.ndarray | None:
        """A seeded sample of at most ``count`` training images (for int8 only)."""
        if format != "tflite-int8":
            return None
        paths = self._dataset.paths["train"]
        rng = np.random.default_rng(self.cfg.seed)
        chosen = sorted(rng.choice(len(paths), size=min(max(1, count), len(paths)), replace=False)) if paths else []
        return data_mod.load_images([paths[i] for i in chosen], self.clf.image_size,
                                    max_pixels=self.cfg.data.max_pixels)


def compare(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy of both models, and how often the exported one's top-1 class is the reference's.

    Args:
        reference: (N, C) probabilities of the trained Keras model.
        exported: (N, C) probabilities of the exported model on the same images.
        labels: (N,) true class indices.

    Returns:
        dict with n, accuracy, keras_accuracy, accuracy_delta, agreement, max_abs_diff.

    Example:
        >>> compare(np.eye(3), np.eye(3), np.arange(3))["agreement"]
        1.0
    """
    ref, exp = reference.argmax(axis=1), exported.argmax(axis=1)
    acc, keras_acc = float(np.mean(exp == labels)), float(np.mean(ref == labels))
    return {"n": int(len(labels)), "accuracy": round(acc, 4), "keras_accuracy": round(keras_acc, 4),
            "accuracy_delta": round(acc - keras_acc, 4), "agreement": round(float(np.mean(exp == ref)), 4),
            "max_abs_diff": round(float(np.abs(exported - reference).max()), 6)}


def _write(format: str, clf, tmp: Path, record: dict, run_dir: Path, calibration) -> None:
    if format == "keras":
        shutil.copyfile(run_dir / "model.keras", tmp)
    elif format == "savedmodel":
        convert.save_savedmodel(clf.model, tmp, clf.class_names, record)
    else:
        from imgclf.runtimes import add_tflite_metadata
        data = convert.convert_tflite(clf.model, TFLITE_MODES[format], calibration)
        tmp.write_bytes(add_tflite_metadata(data, record))


def _open(format: str, path: Path, num_threads: int | None):
    from imgclf import runtimes
    if format == "keras":
        from imgclf.predict import load_keras_model
        return runtimes.KerasRuntime(load_keras_model(path))
    if format == "savedmodel":
        return runtimes.SavedModelRuntime(path)
    return runtimes.LiteRTRuntime(path, num_threads)


def _record(format: str, clf, cfg, run_dir: Path) -> dict:
    from imgclf import __version__
    return {"format": format, "image_size": clf.image_size, "class_names": list(clf.class_names),
            "backbone": cfg.model.backbone, "output": "probabilities",
            "input": {"dtype": "uint8" if format == "tflite-int8" else "float32", "range": [0, 255],
                      "layout": "NHWC RGB", "resize": "squash to image_size x image_size"},
            "run": str(run_dir.resolve()), "imgclf_version": __version__}


def _check_destination(dest: Path, format: str, class_names: list[str]) -> None:
    want = {"keras": ".keras", "savedmodel": ""}.get(format, ".tflite")
    if format != "savedmodel" and dest.suffix.lower() != want:
        raise ImgclfError(f"{dest}: a {format} export must end in {want}")
    if format == "savedmodel" and dest.exists() and not (dest / "saved_model.pb").is_file():
        if not dest.is_dir() or any(dest.iterdir()):
            raise ImgclfError(f"{dest}: exists and is not a SavedModel; not replacing it")
    labels = dest.parent / "labels.txt"
    if labels.is_file() and [n for n in labels.read_text(errors="replace").splitlines() if n] != list(class_names):
        raise ImgclfError(f"{labels}: holds another model's class names; export to another folder")


@contextlib.contextmanager
def _staged(dest: Path, is_dir: bool) -> Iterator[Path]:
    """A temporary path beside ``dest``, renamed over it only if the block succeeds."""
    if not is_dir:
        with atomic_path(dest, dest.suffix) as tmp:
            yield tmp
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; exports are for sharing
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dest.exists():
            os.replace(old, dest)  # the swap failed half-way: put the previous export back
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_sidecars(dest: Path, class_names: list[str], record: dict) -> None:
    write_text_atomic(dest.parent / "labels.txt", "".join(f"{name}\n" for name in class_names))
    write_json_atomic(dest.parent / f"{dest.name}.json", record)  # model.tflite.json: one per model


def _save_metrics(run_dir: Path, format: str, metrics: dict) -> None:
    """Add (or replace) this format's entry in RUN/export/metrics.json, atomically."""
    path = run_dir / "export" / "metrics.json"
    try:
        everything = json.loads(path.read_text())
    except (OSError, ValueError):
        everything = {}
    everything = everything if isinstance(everything, dict) else {}
    everything[format] = metrics
    write_json_atomic(path, everything)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
