"""The run record: the one owner of every file in a run directory.

Every other module asks a ``RunRecord`` for a path or hands it what to write; none builds a
run-directory path itself. Every write is atomic (imgclf.files). Layout of ``runs/<name>/``::

    config.yaml        the resolved config, written before training starts
    labels.txt         class names, one per line, in label-index order
    split.csv          split,path,label for every image used (reproducible, auditable)
    data_report.json   classes, counts, sizes, skipped files with reasons; "health": identical files, leaks
    model.keras        the trained classifier (best weights), preprocessing inside
    history.csv        one row per epoch of both phases
    metrics.json       test-set metrics
    plots/*.png        training curves, confusion matrix, per-class scores, mistakes, reliability (PLOTS)
    report.html        everything above in one self-contained page
    logs/              TensorBoard event files
    run.json           time, image size, backbone, training path and cache sizes
    plan.json          the planner's recipe and expected seconds per stage, and what they took
    checkpoint.npz     the training state after the last epoch (removed once complete)
    cache/             images and feature caches over train.cache_memory_mb (removed once complete)
    export/            exported models, their labels and self-check metrics (export/metrics.json)
    eval-<data>/       metrics.json and plots/ of ``imgclf evaluate RUN --data <data>``
    COMPLETE           written last; a run without it is incomplete

Example:
    >>> record = RunRecord.create("runs", "flowers")
    >>> record.write_labels(["daisy", "rose"])
    >>> RunRecord("runs/flowers").read_labels()
    ['daisy', 'rose']
"""
from __future__ import annotations

import csv
import io
import math
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from imgclf.errors import ImgclfError, first_line
from imgclf.files import (LABELS_FILE, atomic_path, load_labels, read_json, save_labels, write_json_atomic,
                          remove_stale_temps, write_text_atomic)

# The figures a run draws, by the key the report places them under, and their file names.
PLOTS = {"history": "training_curves.png", "confusion": "confusion_matrix.png",
         "per_class": "per_class.png", "mistakes": "mistakes.png", "reliability": "reliability.png"}


class RunRecord:
    """One run directory: the name of every file in it, and the only code that reads or
    writes them.

    Args:
        path: the run directory (it need not exist yet for paths; use ``create`` for a new run).

    Example:
        >>> RunRecord("runs/fashion").model_path
        PosixPath('runs/fashion/model.keras')
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunRecord({str(self.path)!r})"

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, runs_dir: str | Path, name: str) -> "RunRecord":
        """A new, empty run directory ``runs_dir/name``, or ``name-2``, ``name-3``... if taken.

        The name is claimed with an exclusive ``mkdir``, so two trainings starting at the same
        moment never share a directory.

        Example:
            >>> RunRecord.create("runs", "flowers").path
            PosixPath('runs/flowers')
        """
        base = Path(runs_dir)
        base.mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            candidate = base / (name if n == 1 else f"{name}-{n}")
            try:
                candidate.mkdir()
                return cls(candidate)
            except FileExistsError:
                n += 1

    @classmethod
    def finished(cls, path: str | Path, writing: bool = False) -> "RunRecord":
        """The record of a complete run; a one-line ImgclfError (with the resume command for an
        interrupted run) otherwise. ``writing`` (evaluate, export): first remove the temporary
        files that writes killed before left in the run, its plots/, export/ and eval-*/ folders.

        Example:
            >>> RunRecord.finished("runs/flowers").path
            PosixPath('runs/flowers')
        """
        record = cls(path)
        if not record.path.is_dir():
            raise ImgclfError(f"{record.path}: no such run directory")
        if not record.is_complete and record.config_path.is_file():
            raise ImgclfError(f"{record.path}: run is incomplete (interrupted before every artefact was "
                              f"written); resume it with: imgclf train --resume {record.path}")
        if not record.model_path.is_file():
            raise ImgclfError(f"{record.path}: no model.keras; not a run directory, or training never finished")
        if not record.is_complete:
            raise ImgclfError(f"{record.path}: run is incomplete (interrupted before every artefact was written)")
        folders = [record.path, record.export_dir, *record.path.glob("eval-*")] if writing else []
        for folder in folders + [folder / "plots" for folder in folders]:
            remove_stale_temps(folder)
        return record

    @classmethod
    def interrupted(cls, path: str | Path) -> "RunRecord":
        """The record of a run to resume: it has its config and is not complete.

        Example:
            >>> RunRecord.interrupted("runs/flowers").checkpoint_path.name
            'checkpoint.npz'
        """
        record = cls(path)
        if record.is_complete:
            raise ImgclfError(f"{record.path}: run is already complete; nothing to resume")
        if not record.config_path.is_file():
            raise ImgclfError(f"{record.path}: no config.yaml; not a run directory")
        remove_stale_temps(record.path)  # of writes killed with the run (a half checkpoint)
        return record

    @classmethod
    def around(cls, model_path: str | Path) -> "RunRecord | None":
        """The run a model file belongs to: the path itself, or up to two folders above an
        exported model (``runs/x/export/model.tflite``); None for a model with no run.

        Example:
            >>> RunRecord.around("runs/x/export/model.tflite").path
            PosixPath('runs/x')
        """
        path = Path(model_path)
        for folder in (path, path.parent, path.parent.parent):
            record = cls(folder)
            if record.run_info_path.is_file() or record.config_path.is_file():
                return record
        return None

    def evaluation(self, data_name: str) -> "RunRecord":
        """The folder where an evaluation on other data keeps its metrics.json and plots/.

        Example:
            >>> RunRecord("runs/x").evaluation("street-photos").path
            PosixPath('runs/x/eval-street-photos')
        """
        return RunRecord(self.path / f"eval-{data_name}")

    # -- paths -----------------------------------------------------------------------------

    config_path = property(lambda self: self.path / "config.yaml")
    labels_path = property(lambda self: self.path / LABELS_FILE)
    split_path = property(lambda self: self.path / "split.csv")
    data_report_path = property(lambda self: self.path / "data_report.json")
    model_path = property(lambda self: self.path / "model.keras")
    history_path = property(lambda self: self.path / "history.csv")
    metrics_path = property(lambda self: self.path / "metrics.json")
    run_info_path = property(lambda self: self.path / "run.json")
    plan_path = property(lambda self: self.path / "plan.json")
    report_path = property(lambda self: self.path / "report.html")
    logs_dir = property(lambda self: self.path / "logs")
    checkpoint_path = property(lambda self: self.path / "checkpoint.npz")
    cache_dir = property(lambda self: self.path / "cache")
    export_dir = property(lambda self: self.path / "export")
    export_metrics_path = property(lambda self: self.path / "export" / "metrics.json")
    complete_path = property(lambda self: self.path / "COMPLETE")

    def plot_path(self, key: str) -> Path:
        """Where the figure ``key`` (a key of PLOTS) is drawn.

        Example:
            >>> RunRecord("runs/x").plot_path("confusion").name
            'confusion_matrix.png'
        """
        return self.path / "plots" / PLOTS[key]

    def plots(self) -> dict[str, Path]:
        """The figures drawn so far, by key (PLOTS), in PLOTS order."""
        return {key: self.plot_path(key) for key in PLOTS if self.plot_path(key).is_file()}

    is_complete = property(lambda self: self.complete_path.is_file())

    # -- the run's inputs ------------------------------------------------------------------

    def write_config(self, config) -> None:
        """Save the resolved RunConfig as config.yaml."""
        from imgclf.config import save_config
        save_config(config, self.config_path)

    def read_config(self):
        """The run's RunConfig, validated (see imgclf.config.load_config)."""
        from imgclf.config import load_config
        return load_config(self.config_path)

    def write_labels(self, class_names: Sequence[str]) -> None:
        save_labels(self.path, class_names)

    def read_labels(self) -> list[str]:
        """The class names, in label-index order; a one-line error if labels.txt is missing."""
        names = load_labels(self.labels_path)
        if names is None:
            raise ImgclfError(f"{self.labels_path}: missing or empty; is {self.path} a run directory?")
        return names

    def write_split(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """split.csv from (split, path, class name) rows; ``imgclf.data.load_dataset`` reads it."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["split", "path", "label"])
        writer.writerows(rows)
        write_text_atomic(self.split_path, buf.getvalue())

    def write_data_report(self, report: dict) -> None:
        write_json_atomic(self.data_report_path, report)

    def read_data_report(self) -> dict:
        return read_json(self.data_report_path)

    # -- what training writes ----------------------------------------------------------------

    def save_model(self, model) -> None:
        """model.keras, atomically (Keras writes to a temporary name ending in .keras)."""
        with atomic_path(self.model_path, ".keras") as tmp:
            model.save(tmp)

    def write_history(self, rows: Sequence[dict], columns: Sequence[str]) -> None:
        """history.csv: one row per epoch, the given columns in order (missing values empty)."""
        lines = [",".join(columns)]
        lines += [",".join(_csv_value(row.get(key, "")) for key in columns) for row in rows]
        write_text_atomic(self.history_path, "\n".join(lines) + "\n")

    def read_history(self) -> list[dict]:
        """history.csv's rows: ``phase`` a string, ``epoch`` an int, the rest floats (NaN when empty)."""
        if not self.history_path.is_file():
            return []
        with self.history_path.open(encoding="utf-8") as f:
            rows = [{k: (v if k == "phase" else (float(v) if v else math.nan)) for k, v in row.items()}
                    for row in csv.DictReader(f)]
        return [{**row, "epoch": int(row["epoch"])} for row in rows]

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> None:
        """checkpoint.npz from named arrays (no pickles), atomically."""
        with atomic_path(self.checkpoint_path, ".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def read_checkpoint(self) -> dict[str, np.ndarray]:
        """checkpoint.npz's arrays; a one-line ImgclfError if there is none or it is unreadable."""
        path = self.checkpoint_path
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise ImgclfError(f"{path}: no checkpoint to resume from (the run stopped before its first "
                              "epoch ended); start it again") from None
        except Exception as exc:  # noqa: BLE001 -- truncated or edited: BadZipFile, EOFError, zlib.error...
            raise ImgclfError(f"{path}: unreadable checkpoint ({first_line(exc, 120)}); start the run again") from None

    def remove_resume_state(self) -> None:
        """The checkpoint and the cache folder: only a resume of this run could use them."""
        self.checkpoint_path.unlink(missing_ok=True)
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def write_run_info(self, info: dict) -> None:
        write_json_atomic(self.run_info_path, info)

    def read_run_info(self) -> dict:
        return read_json(self.run_info_path)

    def write_plan(self, plan: dict) -> None:
        write_json_atomic(self.plan_path, plan)

    def read_plan(self) -> dict:
        return read_json(self.plan_path)

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.metrics_path, metrics)

    def read_metrics(self) -> dict:
        return read_json(self.metrics_path)

    def mark_complete(self) -> None:
        """Write COMPLETE, last: from now on evaluate, predict and export accept the run."""
        write_text_atomic(self.complete_path, time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    # -- exports -----------------------------------------------------------------------------

    def read_export_metrics(self) -> dict:
        """export/metrics.json: each exported format's self-check, by format name."""
        return read_json(self.export_metrics_path)

    def update_export_metrics(self, format: str, metrics: dict[str, Any]) -> None:
        """Add (or replace) one format's entry in export/metrics.json, atomically."""
        everything = self.read_export_metrics()
        everything[format] = metrics
        write_json_atomic(self.export_metrics_path, everything)


def _csv_value(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)

