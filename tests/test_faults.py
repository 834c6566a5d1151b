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
