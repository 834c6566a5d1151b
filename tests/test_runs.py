import pytest

from imgclf.errors import ImgclfError
from imgclf.runs import (atomic_path, check_complete, read_labels, unique_run_dir, write_labels,
                         write_text_atomic)


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
    write_labels(tmp_path, ["b", "a c"])
    assert read_labels(tmp_path) == ["b", "a c"]
    first, second = unique_run_dir(tmp_path, "run"), unique_run_dir(tmp_path, "run")
    assert (first.name, second.name) == ("run", "run-2")


def test_incomplete_runs_are_refused(tmp_path):
    with pytest.raises(ImgclfError, match="no such run"):
        check_complete(tmp_path / "nope")
    with pytest.raises(ImgclfError, match="model.keras"):
        check_complete(tmp_path)
    (tmp_path / "model.keras").write_text("x")
    with pytest.raises(ImgclfError, match="incomplete"):
        check_complete(tmp_path)
    (tmp_path / "COMPLETE").write_text("")
    assert check_complete(tmp_path) == tmp_path


def test_atomic_files_get_normal_permissions(tmp_path):
    write_text_atomic(tmp_path / "report.html", "x")
    assert (tmp_path / "report.html").stat().st_mode & 0o044 == 0o044  # group/other can read


def test_public_api_names_do_not_shadow_modules():
    import imgclf
    import imgclf.trainer  # noqa: F401  a loaded submodule must not shadow the API function
    from imgclf import evaluate  # the module, whatever was imported before
    assert hasattr(evaluate, "compute_metrics")
    assert callable(imgclf.train) and callable(imgclf.evaluate_run) and callable(imgclf.load)
