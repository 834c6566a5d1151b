"""Faults (issue 18, slow group): Ctrl-C ends any command at once with one line, a killed
write leaves nothing half-written at a final path, two trainings of the same name both run."""
from __future__ import annotations

import os
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
