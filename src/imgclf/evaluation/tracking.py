"""Optional MLflow tracking: a finished run, read back through its RunRecord, logged as one MLflow
run: the config as params, the per-epoch history and the test metrics as metrics, and the
report, figures, model and run files as artefacts.

It runs after the run is complete, so training never depends on MLflow, and a failure here
costs one warning line, never the run. MLflow (``pip install imgclf[mlflow]``, mlflow-skinny) is
imported only when logging. The store is ``$MLFLOW_TRACKING_URI`` or, by default, a local file
store ``file:RUNS_DIR/mlruns``: no server, no database. MLflow 3 keeps that store in maintenance
mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``, which is set while logging to it
(its SQLite store would need SQLAlchemy, which mlflow-skinny does not install).

Example:
    >>> run_id = log_run(RunRecord("runs/fashion"))            # file:runs/mlruns
    >>> MlflowClient("file:runs/mlruns").get_run(run_id).data.params["train.epochs"]
    '3'
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

from imgclf.errors import ImgclfError, first_line
from imgclf.evaluation.metrics import HEADLINES
from imgclf.record import RunRecord

EXPERIMENT = "imgclf"  # unless $MLFLOW_EXPERIMENT_NAME says otherwise
_NOT_LOGGED = ("phase", "epoch")  # history columns that are the step, not a metric


def wanted(flag: bool) -> bool:
    """Whether a run is logged: ``--mlflow`` given, or ``$MLFLOW_TRACKING_URI`` set."""
    return bool(flag or os.environ.get("MLFLOW_TRACKING_URI"))


def check_installed() -> None:
    """A one-line ImgclfError when MLflow is not installed (checked before training starts)."""
    import importlib.util
    if importlib.util.find_spec("mlflow") is None:
        raise ImgclfError("--mlflow needs MLflow: pip install 'imgclf[mlflow]' (mlflow-skinny)")


def default_uri(runs_dir: str | Path) -> str:
    """The local file store beside the runs: ``file:/abs/runs/mlruns``."""
    return f"file:{Path(runs_dir).absolute() / 'mlruns'}"


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _test_metrics(metrics: dict) -> dict[str, float]:
    """The headline numbers and the macro/weighted averages, as ``test_<name>``."""
    values = {f"test_{h.name}": h.value(metrics) for h in HEADLINES}
    for average in ("macro", "weighted"):
        values.update({f"test_{average}_{k}": v for k, v in (metrics.get(average) or {}).items()
                       if isinstance(v, (int, float))})
    values["test_n"] = metrics.get("n")
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}


@contextmanager
def _store_allowed(uri: str):
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE is set: set it while we log."""
    local = "://" not in uri or uri.startswith("file:")
    if not local or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def log_run(record: RunRecord, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    """Log one complete run to MLflow; returns the MLflow run id.

    Args:
        record: a complete run (``RunRecord.finished``).
        tracking_uri: the store; default ``$MLFLOW_TRACKING_URI``, else :func:`default_uri` of the
            folder the run is in.
        experiment: the experiment's name; default ``$MLFLOW_EXPERIMENT_NAME``, else "imgclf".

    Raises:
        ImgclfError: the run is not complete. MLflow's own errors pass through.
    """
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    from imgclf.config import config_to_dict
    record = RunRecord.finished(record.path)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(record.path.parent)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    with _store_allowed(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        run = client.create_run(experiment_id, run_name=record.path.name,
                                tags={"imgclf.run_dir": str(record.path.absolute())})
        run_id = run.info.run_id
        params = {**_flatten(config_to_dict(record.read_config())),
                  **{f"run.{k}": v for k, v in record.read_run_info().items()}}
        step_time = run.info.start_time
        metrics = [Metric(key, float(value), step_time, row["epoch"]) for row in record.read_history()
                   for key, value in row.items() if key not in _NOT_LOGGED and not math.isnan(value)]
        metrics += [Metric(k, v, step_time, 0) for k, v in _test_metrics(record.read_metrics()).items()]
        params_list = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, max(len(params_list), len(metrics)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metrics[i:i + 100], params=params_list[i:i + 100])
        for path, folder in _artefacts(record):
            client.log_artifact(run_id, str(path), folder)
        client.set_terminated(run_id)
    return run_id


def _artefacts(record: RunRecord):
    """(file, artefact folder) for everything worth keeping beside the MLflow run."""
    for path in (record.report_path, record.metrics_path, record.config_path, record.history_path,
                 record.run_info_path, record.labels_path, record.data_report_path, record.plan_path):
        if path.is_file():
            yield path, None
    for path in record.plots().values():
        yield path, "plots"
    yield record.model_path, "model"


def track(run_dir: str | Path | None, flag: bool) -> str | None:
    """Log a finished run when tracking is wanted (:func:`wanted`); any failure is one warning
    line on stdout and the run stays as it is. Returns the MLflow run id, or None."""
    if run_dir is None or not wanted(flag):
        return None
    try:
        run_id = log_run(RunRecord(run_dir))
    except Exception as exc:  # MLflow missing, a store it cannot reach, a bad URI: never lose the run
        print(f"imgclf: warning: MLflow logging failed ({first_line(exc)}); "
              f"the run is complete in {run_dir}")
        return None
    print(f"mlflow: logged {Path(run_dir).name} as run {run_id}")
    return run_id
