"""Faults (issue 18, slow group): Ctrl-C ends any command at once with one line, a killed
train, evaluate or export leaves nothing half-written at a final path (and the next run removes
its temporary files), two trainings of the same name both run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import _corpus

pytestmark = pytest.mark.slow
TRAIN = ["--image-size", "32", "--batch-size", "16", "--seed", "3"]


def _start(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "imgclf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _corpus.write_classes(tmp_path_factory.mktemp("faults") / "d", per_class=30)


def test_sigint_during_training_ends_within_two_seconds_with_one_line(images, tmp_path):
    proc = _start("train", images, "--runs-dir", tmp_path, "--name", "r", "--epochs", "200", *TRAIN)
    _wait_for(tmp_path / "r" / "history.csv", proc)  # an epoch is done: well inside the loop
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 2.0, f"took {took:.1f} s"
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "imgclf: interrupted"


def test_two_trainings_of_the_same_name_at_once_both_finish_in_their_own_folders(images, tmp_path):
    args = ["train", images, "--runs-dir", tmp_path, "--name", "same", "--epochs", "1", "--fine-tune-epochs", "0",
            "--quiet", *TRAIN]
    procs = [_start(*args) for _ in range(2)]
    outs = [proc.communicate(timeout=400) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-1500:] for _, err in outs]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same", "same-2"]
    assert all((tmp_path / name / "COMPLETE").is_file() for name in ("same", "same-2"))


def test_sigkill_mid_training_leaves_only_whole_files_and_resume_cleans_up(images, tmp_path):
    import random
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint
    proc = _start("train", images, "--runs-dir", tmp_path, "--name", "k", "--epochs", "50", *TRAIN)
    run = tmp_path / "k"
    _wait_for(run / "checkpoint.npz", proc)
    time.sleep(random.Random(os.getpid()).uniform(0, 2))  # somewhere in a later epoch or its write
    proc.kill()
    proc.communicate()
    state = load_checkpoint(RunRecord.interrupted(run))  # whole, and resume's opening removed temps
    assert state.phase == "head" and state.phase_epochs >= 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".checkpoint.npz.")]
    assert not (run / "model.keras").exists() and not (run / "COMPLETE").exists()


def _snapshot(root: Path) -> dict:
    """The names in the run, its plots/ and export/ with their modification times (a file
    appearing, being renamed into place or going): cheap to take every few milliseconds."""
    seen = {}
    for folder in (root, root / "plots", root / "export"):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue  # not there yet
        for entry in entries:
            try:
                seen[entry.path] = entry.stat().st_mtime_ns
            except FileNotFoundError:
                pass  # renamed while listing
    return seen


def _kill_at_change(proc: subprocess.Popen, root: Path, k: int, timeout: float = 900) -> bool:
    """SIGKILL ``proc`` at the ``k``-th change seen under ``root`` (a temporary file appearing, a
    final one renamed into place...); False when it finished first."""
    before, seen, end = _snapshot(root), 0, time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < end, f"{proc.args} ran past {timeout} s"
        now = _snapshot(root)
        if now != before:
            before, seen = now, seen + 1
            if seen >= k:
                proc.kill()
                proc.communicate()
                return True
        time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-1500:]
    return False


def _assert_whole(run: Path, temps_allowed: bool = True) -> list[str]:
    """Every final file of the run is absent or whole: JSON parses, the report ends, figures
    decode, exported models load and predict; temporary files (returned) only where ``temps_allowed``."""
    import numpy as np
    from PIL import Image
    from imgclf.deploy.predict import load
    assert json.loads((run / "metrics.json").read_text())["accuracy"] >= 0  # training wrote one: never lost
    assert (run / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    for png in (run / "plots").glob("[!.]*.png"):
        with Image.open(png) as image:
            image.load()
    export = run / "export"
    finals = list(export.glob("[!.]*"))  # not the temporary ".name.XXXX" of a killed write
    for sidecar in [path for path in finals if path.suffix == ".json"]:
        assert json.loads(sidecar.read_text())
    for model in [path for path in finals if path.suffix in (".tflite", ".keras", ".onnx") or path.is_dir()]:
        clf = load(model, num_threads=1)
        assert clf.predict_arrays(np.zeros((1, clf.image_size, clf.image_size, 3), np.uint8)).shape[0] == 1
    temps = [str(path.relative_to(run)) for path in run.rglob(".*")]
    assert temps_allowed or not temps, f"temporary files left: {temps}"
    return temps


@pytest.fixture
def finished_run(tmp_path_factory, tmp_path):
    """A copy of the session's tiny finished run (tests/_tiny_run.py), to kill commands on."""
    from _tiny_run import tiny_run
    shutil.copytree(tiny_run(tmp_path_factory)[0], tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "export", ignore_errors=True)
    return tmp_path / "run"


def test_sigkill_mid_evaluate_leaves_only_whole_files_and_the_next_evaluate_cleans_up(finished_run):
    from imgclf.workflow import evaluate_run
    killed = 0
    for k in (2, 7):  # the k-th change in the run: a temporary file appears, a figure is renamed in...
        killed += _kill_at_change(_start("evaluate", finished_run, "--no-ci"), finished_run, k)
        _assert_whole(finished_run)
    assert killed, "evaluate finished before every kill; they tested nothing"
    evaluate_run(finished_run, verbose=False, intervals=False)  # the next one (in this process: no import to pay)
    _assert_whole(finished_run, temps_allowed=False)


def test_sigkill_mid_export_leaves_only_whole_models_and_the_next_export_cleans_up(finished_run):
    from imgclf.deploy.export import export_run
    killed, temps = 0, []
    for k in (2, 9):  # of --format all: early (the first conversion under way), later (a format done)
        killed += _kill_at_change(_start("export", finished_run, "--format", "all", "-q"), finished_run, k)
        temps += _assert_whole(finished_run)
    assert killed == 2, "export finished before a kill; it tested nothing"
    assert temps, "no kill left a temporary file: the clean-up below would test nothing"
    export_run(finished_run, "tflite")  # the next one
    _assert_whole(finished_run, temps_allowed=False)
    assert (finished_run / "export" / "model.tflite").is_file()
