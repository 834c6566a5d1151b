"""A run killed with SIGKILL mid-epoch resumes from its checkpoint and ends exactly like an uninterrupted one."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imgclf.record import RunRecord
from imgclf.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from imgclf.cli import main
from imgclf.data.datasets import write_digits
from imgclf.errors import ImgclfError

ARGS = ["--image-size", "32", "--epochs", "6", "--fine-tune-epochs", "3", "--batch-size", "16", "--seed", "5",
        "--patience", "20", "--fine-tune-blocks", "2", "--plain", "--quiet"]


def test_checkpoint_round_trip_and_errors(tmp_path):
    state = TrainState("fine_tune", 2, False, [{"phase": "head", "epoch": 1, "loss": 0.5}],
                       {"best": float("inf"), "best_epoch": 0, "wait": 1}, {"current": 1e-4, "best": 0.4, "wait": 0},
                       3, weights=[np.arange(3.0), np.ones((2, 2))], optimizer=[np.array(7)], best_weights=None)
    save_checkpoint(RunRecord(tmp_path), state)
    back = load_checkpoint(RunRecord(tmp_path))
    assert (back.phase, back.phase_epochs, back.phase_total, back.rows, back.stopper, back.best_weights) == \
        ("fine_tune", 2, 3, state.rows, state.stopper, None)
    np.testing.assert_array_equal(back.weights[1], np.ones((2, 2)))
    with pytest.raises(ImgclfError, match="no checkpoint"):
        load_checkpoint(RunRecord(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.npz").write_bytes(b"junk")
    with pytest.raises(ImgclfError, match="unreadable checkpoint"):
        load_checkpoint(RunRecord(tmp_path / "bad"))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path, capsys):
    write_digits(tmp_path / "digits", per_class=20)
    runs = tmp_path / "runs"
    common = [str(tmp_path / "digits"), "--runs-dir", str(runs)]
    assert main(["train", *common, "--name", "whole", *ARGS]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "imgclf", "train", *common, "--name", "killed", *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = runs / "killed" / "history.csv"
    deadline = time.time() + 600
    while not (history.is_file() and len(history.read_text().splitlines()) >= 3):  # header + 2 epochs
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.3)  # well into the third epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = runs / "killed"
    assert not (killed / "COMPLETE").exists() and (killed / "checkpoint.npz").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(killed)]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["train", "--resume", str(killed), "--epochs", "3"]) == 2  # its own settings only
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert (killed / "COMPLETE").is_file() and not (killed / "checkpoint.npz").exists()
    whole = json.loads((runs / "whole" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    rows = [line.split(",")[0] for line in history.read_text().splitlines()[1:]]
    assert rows == ["head"] * 6 + ["fine_tune"] * 3  # every epoch once, none lost or repeated
    # Bit-identical: the same batches, augmentation and dropout masks in every epoch (they depend
    # on the seed and the epoch alone), so every epoch's numbers match to the last digit written
    # (6 significant digits; "seconds" aside) and so do the test predictions.
    def numbers(path):
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]
    assert numbers(history) == numbers(runs / "whole" / "history.csv")
    assert resumed["accuracy"] == whole["accuracy"] and resumed["confusion_matrix"] == whole["confusion_matrix"]
    assert resumed["log_loss"] == pytest.approx(whole["log_loss"], rel=1e-6)
    assert json.loads((killed / "run.json").read_text())["resumed"] is True
    assert main(["train", "--resume", str(killed)]) == 2  # complete: nothing to resume
