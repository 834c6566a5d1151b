import pytest

from imgclf.errors import ImgclfError
from imgclf.files import atomic_path, write_text_atomic
from imgclf.files import load_labels, save_labels
from imgclf.record import PLOTS, RunRecord


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "model.keras"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, ".keras") as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temp file left


def test_labels_round_trip_and_unique_dirs(tmp_path):
    save_labels(tmp_path, ["b", "a c"])
    assert RunRecord(tmp_path).read_labels() == load_labels(tmp_path / "labels.txt") == ["b", "a c"]
    first, second = RunRecord.create(tmp_path, "run"), RunRecord.create(tmp_path, "run")
    assert (first.path.name, second.path.name) == ("run", "run-2")
    with pytest.raises(ImgclfError, match="labels.txt: missing"):
        RunRecord(tmp_path / "run").read_labels()


def test_two_runs_claiming_one_name_at_once_get_two_directories(tmp_path):
    """The name is claimed by an exclusive mkdir: threads racing for it never share one."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda _: RunRecord.create(tmp_path, "same"), range(8)))
    assert len({r.path for r in records}) == 8 and all(r.path.is_dir() for r in records)


def test_history_and_export_metrics_round_trip(tmp_path):
    record = RunRecord(tmp_path)
    rows = [{"phase": "head", "epoch": 1, "loss": 0.5}, {"phase": "fine_tune", "epoch": 2, "loss": 0.25,
                                                          "val_loss": 0.3}]
    record.write_history(rows, ("phase", "epoch", "loss", "val_loss"))
    back = record.read_history()
    assert back[1] == rows[1] and back[0]["epoch"] == 1 and back[0]["val_loss"] != back[0]["val_loss"]  # NaN
    record.update_export_metrics("tflite", {"agreement": 1.0})
    record.update_export_metrics("onnx", {"agreement": 0.99})
    assert record.read_export_metrics() == {"tflite": {"agreement": 1.0}, "onnx": {"agreement": 0.99}}
    assert record.plot_path("confusion").name == PLOTS["confusion"] and record.plots() == {}


def test_incomplete_runs_are_refused(tmp_path):
    with pytest.raises(ImgclfError, match="no such run"):
        RunRecord.finished(tmp_path / "nope")
    with pytest.raises(ImgclfError, match="model.keras"):
        RunRecord.finished(tmp_path)
    (tmp_path / "model.keras").write_text("x")
    with pytest.raises(ImgclfError, match="incomplete"):
        RunRecord.finished(tmp_path)
    (tmp_path / "COMPLETE").write_text("")
    assert RunRecord.finished(tmp_path).path == tmp_path
    with pytest.raises(ImgclfError, match="already complete"):
        RunRecord.interrupted(tmp_path)


def test_atomic_files_get_normal_permissions(tmp_path):
    write_text_atomic(tmp_path / "report.html", "x")
    assert (tmp_path / "report.html").stat().st_mode & 0o044 == 0o044  # group/other can read


def test_public_api_names_do_not_shadow_modules():
    import imgclf
    import imgclf.training.phases  # noqa: F401  a loaded submodule must not shadow the API function
    from imgclf.evaluation import metrics as evaluate  # the module, whatever was imported before
    assert hasattr(evaluate, "compute_metrics")
    assert callable(imgclf.train) and callable(imgclf.evaluate_run) and callable(imgclf.load)
