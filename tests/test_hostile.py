"""Hostile inputs (issue 18): files that are not files, tiny classes, corrupt models and
checkpoints, full or read-only disks. Each ends in one line, never a hang or a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import _corpus
from imgclf import data
from imgclf.data.images import BadImage, read_image
from imgclf.errors import ImgclfError


def _cli(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "imgclf", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


@pytest.fixture
def hostile(tmp_path):
    """Class folders with a FIFO, a link to a FIFO, a link to a device and a folder named x.png."""
    root = _corpus.write_classes(tmp_path / "d", per_class=6)
    os.mkfifo(root / "apple" / "fifo.png")
    os.symlink(root / "apple" / "fifo.png", root / "grape" / "link.png")
    os.symlink("/dev/zero", root / "lime" / "zero.png")
    (root / "lime" / "dir.png").mkdir()
    os.symlink(tmp_path / "missing.png", root / "lime" / "dangling.png")
    return root


def test_non_regular_files_are_skipped_with_a_reason_never_opened(hostile):
    ds = data.load_dataset(hostile, seed=1, workers=2)
    skipped = dict(ds.report.skipped)
    assert skipped[str(hostile / "apple" / "fifo.png")] == "not a regular file (a FIFO)"
    assert skipped[str(hostile / "grape" / "link.png")] == "not a regular file (a FIFO)"
    assert skipped[str(hostile / "lime" / "zero.png")] == "not a regular file (a device)"
    assert skipped[str(hostile / "lime" / "dangling.png")].startswith("cannot read")
    assert sum(len(p) for p in ds.paths.values()) == 18


def test_inspect_on_a_fifo_finishes(hostile):
    out = _cli("inspect", hostile, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "not a regular file (a FIFO)" in out.stdout + out.stderr


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "dir"])
def test_the_decoder_never_opens_a_non_regular_file(tmp_path, target):
    path = tmp_path / "x.png"
    if target == "fifo":
        os.mkfifo(path)
    elif target == "dir":
        path.mkdir()
    else:
        os.symlink(target, path)
    with pytest.raises(BadImage, match="not a regular file"):
        read_image(path)


# -- checkpoint.npz: every field checked on load --------------------------------------------

def _state(**changes):
    import numpy as np
    from imgclf.training.checkpoint import TrainState
    fields = dict(phase="head", phase_epochs=2, phase_total=4, phase_done=False, rows=[{"epoch": 1}],
                  stopper={"best": 0.5, "best_epoch": 1, "wait": 0}, schedule={"current": 1e-3, "best": 0.5, "wait": 0},
                  weights=[np.ones(3)], optimizer=[np.zeros(3)])
    return TrainState(**{**fields, **changes})


@pytest.mark.parametrize("changes, message", [
    (dict(phase="bogus"), "phase 'bogus' is not 'head' or 'fine_tune'"),
    (dict(phase_total=10**9), "phase_total 1000000000 is not a whole number from 0 to 100000"),
    (dict(phase_epochs=5), "phase_epochs 5 is not a whole number from 0 to 4"),  # past the phase's own count
    (dict(phase_epochs=-1), "phase_epochs -1"),
    (dict(phase_epochs=1.5), "phase_epochs 1.5"),
    (dict(phase_done="yes"), "phase_done 'yes'"),
    (dict(rows={"a": 1}), "rows is not a list"),
    (dict(stopper={"best": "x"}), "stopper lacks numbers"),
])
def test_an_edited_checkpoint_is_refused_in_one_line(tmp_path, changes, message):
    from imgclf.errors import ImgclfError
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint, save_checkpoint
    save_checkpoint(RunRecord(tmp_path), _state(**changes))
    with pytest.raises(ImgclfError, match="invalid checkpoint") as info:
        load_checkpoint(RunRecord(tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_phase_longer_than_the_budget_may_stretch_the_configs_epochs_is_refused(tmp_path):
    from imgclf.config import load_config
    from imgclf.errors import ImgclfError
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint, save_checkpoint
    record = RunRecord(tmp_path)
    record.write_config(load_config(None, {"train.epochs": 3}))
    save_checkpoint(record, _state(phase_epochs=10, phase_total=10))
    with pytest.raises(ImgclfError, match="phase_total 10 is not a whole number from 0 to 9"):
        load_checkpoint(record)
    save_checkpoint(record, _state(phase_epochs=7, phase_total=9))  # re-fitted past the config's 3 (deadline.MAX_STRETCH)
    assert load_checkpoint(record).phase_total == 9


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_a_truncated_checkpoint_is_one_line(tmp_path, cut):
    from imgclf.errors import ImgclfError
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint, save_checkpoint
    record = RunRecord(tmp_path)
    save_checkpoint(record, _state())
    data = record.checkpoint_path.read_bytes()
    record.checkpoint_path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ImgclfError, match="unreadable checkpoint"):
        load_checkpoint(record)


def test_checkpoint_arrays_of_another_shape_are_refused():
    import numpy as np
    from imgclf.errors import ImgclfError
    from imgclf.training.checkpoint import check_arrays
    state = _state()
    check_arrays(state, "weights", [np.ones((2, 3))], [np.zeros((2, 3))])
    with pytest.raises(ImgclfError, match=r"checkpoint.npz: checkpoint weights do not match .*#0"):
        check_arrays(state, "weights", [np.ones((3, 2))], [np.zeros((2, 3))])
    with pytest.raises(ImgclfError, match="1 arrays for 2"):
        check_arrays(state, "weights", [np.ones((2, 3))], [np.zeros((2, 3)), np.zeros(1)])


# -- corrupt or hostile .tflite files --------------------------------------------------------

@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    import _fuzz
    folder = tmp_path_factory.mktemp("tflite")
    path = folder / "model.tflite"
    path.write_bytes(_fuzz.tflite_seed(_fuzz.tiny_model()))
    return path


def _inflated(data: bytes, side: int) -> bytes:
    """The model with one tensor's shape edited to (1, side, side, 4): what one flipped byte of
    a dimension does."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    tensor = max(model.subgraphs[0].tensors, key=lambda t: len(t.shape) if t.shape is not None else 0)
    tensor.shape = [1, side, side, 4]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_tflite_whose_tensors_need_too_much_memory_is_refused_before_allocating(tflite, tmp_path):
    import resource
    from imgclf.deploy.predict import load
    from imgclf.errors import ImgclfError
    bad = tmp_path / "model.tflite"
    bad.write_bytes(_inflated(tflite.read_bytes(), 40_000))  # 25.6 GB of float32
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImgclfError, match=r"model.tflite: its tensors would need 23.8 GiB, more than the limit"):
        clf = load(bad)
        clf.predict_arrays(__import__("numpy").zeros((1, 16, 16, 3), "uint8"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing allocated


def test_the_memory_limit_is_configurable(tflite, monkeypatch):
    from imgclf.errors import ImgclfError
    from imgclf.runtime import LiteRTRuntime
    LiteRTRuntime(tflite)
    monkeypatch.setenv("IMGCLF_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ImgclfError, match="IMGCLF_MAX_MODEL_BYTES"):
        LiteRTRuntime(tflite)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_tflite_is_one_line_in_predict(tflite, tmp_path, cut):
    data = tflite.read_bytes()
    bad = tmp_path / "model.tflite"
    bad.write_bytes(data[:int(len(data) * cut)])
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    img = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (16, 16)).save(img)
    out = _cli("predict", bad, img)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"imgclf: error: {bad}: ")


def test_serve_on_a_hostile_tflite_fails_at_start_up_in_one_line(tflite, tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(_inflated(tflite.read_bytes(), 40_000))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    out = _cli("serve", bad, "--port", "0", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "its tensors would need" in out.stderr.strip().splitlines()[-1]


# -- full disks and read-only folders ---------------------------------------------------------

def test_a_full_disk_during_an_atomic_write_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path
    from imgclf.errors import ImgclfError
    from imgclf.files import write_bytes_atomic
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(ImgclfError) as info:
        write_bytes_atomic(target, b"new")
    assert str(info.value) == f"{target}: cannot write (No space left on device); files written before are intact"
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_disk_errors_anywhere_in_a_command_are_one_line(monkeypatch, capsys):
    import errno
    from imgclf.cli import commands, main

    def refuse(args):
        raise OSError(errno.EROFS, "Read-only file system", "/ro/runs/a")
    monkeypatch.setitem(commands.COMMANDS, "backbones", refuse)
    assert main(["backbones"]) == 2
    assert capsys.readouterr().err == ("imgclf: error: /ro/runs/a: cannot write (Read-only file system); "
                                       "files written before are intact\n")


@pytest.fixture
def mounted(tmp_path):
    """mount(options) -> a fresh tmpfs folder (root only; skipped elsewhere), unmounted after."""
    points = []

    def mount(options):
        point = tmp_path / f"mnt{len(points)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
        points.append(point)
        return point
    yield mount
    for point in points:
        subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.slow
def test_train_and_datasets_on_a_full_or_read_only_disk_say_so_in_one_line(mounted, tmp_path):
    from imgclf.data.datasets import write_digits
    write_digits(tmp_path / "digits", per_class=8)
    full, readonly = mounted("size=256k"), mounted("ro,size=1m")
    for args, where, problem in [
            (["datasets", "digits", full / "d"], full, "No space left on device"),
            (["datasets", "digits", readonly / "d"], readonly, "Read-only file system"),
            (["train", tmp_path / "digits", "--runs-dir", readonly, "--image-size", "32"], readonly,
             "Read-only file system"),
            (["train", tmp_path / "digits", "--runs-dir", full, "--image-size", "32", "--epochs", "1",
              "--fine-tune-epochs", "0", "--quiet"], full, "No space left on device")]:
        out = _cli(*args, timeout=300)
        last = out.stderr.strip().splitlines()[-1]
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert last.startswith(f"imgclf: error: {where}") and f"({problem}); files written before are intact" in last


# -- tiny classes --------------------------------------------------------------------------------

def test_every_class_of_three_images_gets_a_val_and_a_test_image(tmp_path):
    colours = {f"c{i:02d}": (i * 12, 255 - i * 12, (i * 37) % 256) for i in range(20)}
    root = _corpus.write_classes(tmp_path / "tiny", per_class=3, classes=colours)
    _corpus.write_classes(root, per_class=2, classes={"pair": (1, 2, 3)})
    ds = data.load_dataset(root, seed=4)
    for split in ("train", "val", "test"):
        assert set(ds.labels[split].tolist()) >= set(range(20)), split  # each 3-image class in each
    assert [len(ds.paths[s]) for s in ("train", "val", "test")] == [21, 20, 21]
    notes = ds.report.notes
    assert notes[0].startswith("test: 21 of 62 images (33.9%)")
    assert notes[1].startswith("val: 20 of 62 images") and "1 class(es) have no val image" in notes[1]


# -- temporary files of killed writes ---------------------------------------------------------

def test_stale_temps_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    from imgclf.files import atomic_dir, atomic_path, remove_stale_temps
    from imgclf.record import RunRecord
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    kept = [run / n for n in ("config.yaml", "checkpoint.npz", ".hidden-notes", ".model.keras.txt")]
    for path in kept[1:]:
        path.write_text("keep")
    killed = [atomic_path(run / "checkpoint.npz", ".npz"), atomic_path(run / "model.tflite"),
              atomic_dir(run / "saved_model")]  # writes that never finish (kept alive: no cleanup)
    temps = [context.__enter__() for context in killed]
    (temps[2] / "saved_model.pb").write_bytes(b"half")
    (run / ".saved_model.old-1234").mkdir()
    assert len(list(run.iterdir())) == 8
    RunRecord.interrupted(run)  # what --resume opens
    assert sorted(run.iterdir()) == sorted(kept)
    assert remove_stale_temps(run) == []


# -- predict: input order, plain numbers, the resume hint, duplicate labels ----------------------

def test_predict_prints_rows_in_input_order_with_errors_in_place(tflite, tmp_path):
    from PIL import Image
    (tflite.parent / "labels.txt").write_text("a\nb\nc\n")
    good = [tmp_path / f"{i}.png" for i in range(3)]
    for path in good:
        Image.new("RGB", (16, 16), (40, 80, 120)).save(path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    order = [good[0], bad, good[1], good[2]]
    out = _cli("predict", tflite, *order, "--batch-size", "3")
    assert out.returncode == 0, out.stderr
    assert [line.split("  ")[0] for line in out.stdout.splitlines()] == [str(p) for p in order]
    assert "ERROR: " in out.stdout.splitlines()[1]


def test_shapes_in_messages_are_plain_numbers():
    import numpy as np
    from imgclf.errors import ImgclfError
    from imgclf.runtime import Runtime
    with pytest.raises(ImgclfError) as info:
        Runtime().check_classifier("m.tflite", [np.int32(1), np.int32(16), np.int32(16), np.int32(3)],
                                   [np.int32(1), np.int32(-1)])
    assert "output shape [1, -1]" in str(info.value) and "np." not in str(info.value)


def test_predict_on_an_interrupted_run_gives_the_resume_hint(tmp_path):
    from imgclf.config import load_config
    from imgclf.deploy.predict import load
    from imgclf.errors import ImgclfError
    from imgclf.record import RunRecord
    RunRecord(tmp_path).write_config(load_config())
    with pytest.raises(ImgclfError, match=f"resume it with: imgclf train --resume {tmp_path}"):
        load(tmp_path)


def test_a_duplicate_name_in_labels_txt_is_one_line(tmp_path):
    import _fuzz
    from imgclf.deploy.predict import load
    from imgclf.errors import ImgclfError
    from imgclf.runtime import convert_tflite
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_tflite(_fuzz.tiny_model()))  # no record inside: labels.txt is read
    (tmp_path / "labels.txt").write_text("a\n9\n9\n")
    with pytest.raises(ImgclfError, match="class name '9' appears twice in its labels"):
        load(path)


def test_a_model_that_crashes_the_interpreter_is_refused_in_one_line(tmp_path, monkeypatch):
    """LiteRT's native code can segfault on a corrupt .tflite (found by the fuzz suite); the trial
    run in a child process takes the crash, and this process refuses the file in one line. The
    crash is stood in for by a child that kills itself with SIGSEGV."""
    from imgclf.runtime import trial
    model = tmp_path / "model.tflite"
    model.write_bytes(b"anything")
    monkeypatch.setattr(trial, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ImgclfError, match=r"model.tflite: this TFLite model crashes the LiteRT interpreter \(SIGSEGV"):
        trial.trial_run(model)
    monkeypatch.setattr(trial, "_CHILD", "import time; time.sleep(30)")
    with pytest.raises(ImgclfError, match="took more than 1 s"):
        trial.trial_run(model, timeout_s=1)
    monkeypatch.setattr(trial, "_CHILD", "raise SystemExit(1)")  # a Python-level failure: the caller's to name
    trial.trial_run(model)
    monkeypatch.setenv(trial.TRIAL_ENV, "0")
    monkeypatch.setattr(trial, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    trial.trial_run(model)  # skipped on request


def test_a_valid_model_passes_its_trial_run(tmp_path):
    import _fuzz
    from imgclf.runtime.trial import trial_run
    model = tmp_path / "model.tflite"
    model.write_bytes(_fuzz.tflite_seed(_fuzz.tiny_model()))
    trial_run(model)  # returns: the child opened, allocated and ran it


@pytest.mark.parametrize("old, new", [('"name": "functional', '"name": "functiona#'),  # found by benchmarks/fuzz.py
                                      ("global_average_pooling2d", "global_average_pooling<d")])
def test_a_keras_file_with_a_layer_name_tensorflow_refuses_is_one_line_at_load(tmp_path, old, new):
    import io
    import zipfile
    import _fuzz
    seed, out = zipfile.ZipFile(io.BytesIO(_fuzz.keras_seed(_fuzz.tiny_model(), tmp_path))), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in seed.namelist():
            data = seed.read(name)
            dst.writestr(name, data.decode().replace(old, new, 1) if name == "config.json" else data)
    with pytest.raises(ImgclfError, match=r"m\.keras: cannot load model \(layer name '.*' is not a valid TensorFlow name"):
        _fuzz.load_model_file(out.getvalue(), tmp_path / "m.keras")  # was a ValueError traceback at prediction
