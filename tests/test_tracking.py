"""MLflow tracking: a real tiny run logged to a temporary local store and read back with MLflow's
own client (params, metric history, artefacts); when it is on; failures that only warn."""
from __future__ import annotations

import math
import os
import re
import shutil

import pytest

from _tiny_run import tiny_run
from imgclf.cli import main
from imgclf.errors import ImgclfError
from imgclf.evaluation import tracking
from imgclf.record import RunRecord

pytest.importorskip("mlflow")  # the test extra installs mlflow-skinny


@pytest.fixture()
def run(tmp_path_factory, tmp_path):
    """A copy of the tiny run in its own runs folder, so the default store lands in tmp_path."""
    source = tiny_run(tmp_path_factory)[0]
    return shutil.copytree(source, tmp_path / "runs" / source.name)


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)


def client_for(uri, monkeypatch):
    from mlflow.tracking import MlflowClient
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading MLflow 3's file store, as its docs say
    return MlflowClient(tracking_uri=uri)


def test_a_run_round_trips_through_mlflow(run, tmp_path, monkeypatch, capsys):
    record = RunRecord(run)
    run_id = tracking.track(run, True)  # --mlflow, no URI: the file store beside the runs
    assert run_id and f"logged {run.name} as run {run_id}" in capsys.readouterr().out
    assert (run.parent / "mlruns").is_dir() and "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set while logging only
    client = client_for(tracking.default_uri(run.parent), monkeypatch)
    logged = client.get_run(run_id)
    assert logged.info.run_name == run.name and logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "imgclf"
    cfg = record.read_config()
    params = logged.data.params
    assert params["data.image_size"] == str(cfg.data.image_size) == "32"
    assert params["train.epochs"] == str(cfg.train.epochs) and params["model.backbone"] == "efficientnet_lite0"
    assert params["run.backbone"] == record.read_run_info()["backbone"]
    history = record.read_history()
    losses = client.get_metric_history(run_id, "loss")
    assert [m.step for m in losses] == [row["epoch"] for row in history]
    assert [m.value for m in losses] == pytest.approx([row["loss"] for row in history], rel=1e-5)
    val = [row["val_accuracy"] for row in history if not math.isnan(row["val_accuracy"])]
    assert [m.value for m in client.get_metric_history(run_id, "val_accuracy")] == pytest.approx(val, rel=1e-5)
    metrics = record.read_metrics()
    assert logged.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert logged.data.metrics["test_macro_f1"] == pytest.approx(metrics["macro"]["f1"])
    assert logged.data.metrics["test_n"] == metrics["n"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "metrics.json", "config.yaml", "history.csv", "plots", "model"} <= top
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {f"plots/{p.name}" for p in
                                                                         record.plots().values()}
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.keras"]
    assert record.is_complete  # nothing of the run changed


def test_the_environment_turns_it_on_and_picks_the_store(run, tmp_path, monkeypatch):
    assert tracking.track(run, False) is None and not (run.parent / "mlruns").exists()  # off by default
    uri = f"file:{tmp_path / 'elsewhere'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "phones")
    run_id = tracking.track(run, False)
    logged = client_for(uri, monkeypatch).get_run(run_id)
    assert client_for(uri, monkeypatch).get_experiment(logged.info.experiment_id).name == "phones"
    assert not (run.parent / "mlruns").exists()


def test_a_failure_warns_in_one_line_and_keeps_the_run(run, monkeypatch, capsys):
    before = sorted(p.name for p in run.iterdir())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    assert tracking.track(run, True) is None
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("imgclf: warning: MLflow logging failed (")
    assert f"the run is complete in {run}" in out[0]
    assert sorted(p.name for p in run.iterdir()) == before and RunRecord(run).is_complete


def test_mlflow_flag_without_mlflow_installed_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ImgclfError, match="pip install 'imgclf\\[mlflow\\]'"):
        tracking.check_installed()
    data = tmp_path / "data"
    assert main(["train", str(data), "--mlflow", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mlflow needs MLflow" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_with_the_flag_logs_the_run_it_made(tmp_path, monkeypatch, capsys):
    """The wiring: `imgclf train --mlflow` logs the complete run after it is written."""
    from imgclf.data.datasets import write_digits
    write_digits(tmp_path / "digits", per_class=6)
    runs = tmp_path / "runs"
    assert main(["train", str(tmp_path / "digits"), "--runs-dir", str(runs), "--image-size", "32", "--epochs", "1",
                 "--fine-tune-epochs", "0", "--batch-size", "16", "--test-fraction", "0.3", "-q", "--mlflow"]) == 0
    out = capsys.readouterr().out
    run_id = re.search(r"mlflow: logged digits as run (\w+)", out).group(1)
    logged = client_for(tracking.default_uri(runs), monkeypatch).get_run(run_id)
    assert logged.data.params["data.image_size"] == "32" and RunRecord(runs / "digits").is_complete
    assert logged.data.metrics["test_accuracy"] == pytest.approx(RunRecord(runs / "digits").read_metrics()["accuracy"])
