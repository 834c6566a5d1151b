"""export.py and the exported models: every format reloads and answers like the trained model,
a failed check ships nothing, and predict turns a corrupt or foreign model into one clear line."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from imgclf.cli import main
from imgclf.data import load_dataset, load_images
from imgclf.errors import ImgclfError
from imgclf.deploy.export import Exporter, export_run
from imgclf.deploy.formats import FORMATS
from imgclf.deploy.predict import load

pytestmark = pytest.mark.slow
# A tiny, barely trained model has many close calls, and 30 test images make one flip 3.3
# points: quantised exports may flip a few predictions here (the check itself judges them by the
# accuracy they lose, with the defaults a user gets).
QUANTISED_BAR = 0.8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A copy (exports write into it) of the session's tiny run: the same 32 px digits, 2 + 1 epochs."""
    from _tiny_run import tiny_run
    copy = tmp_path_factory.mktemp("export") / "digits"
    shutil.copytree(tiny_run(tmp_path_factory)[0], copy)
    return copy


@pytest.fixture(scope="module")
def exporter(run):
    return Exporter(run)


@pytest.fixture(scope="module")
def held_out(run):
    dataset = load_dataset(run / "split.csv")
    return load_images(dataset.paths["test"], 32), dataset.labels["test"]


@pytest.fixture(scope="module")
def reference(run, held_out):
    return load(run).predict_arrays(held_out[0])


@pytest.fixture(scope="module")
def exports(run, exporter):
    """Every format, exported once with the default check (int8 through the CLI); format -> path."""
    paths = {}
    for fmt in FORMATS:
        if fmt == "tflite-int8":
            assert main(["export", str(run), "--format", fmt, "-q", "--calibration-images", "50"]) == 0
        else:
            exporter.export(fmt)
        paths[fmt] = run / "export" / FORMATS[fmt].file_name
    return paths


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_reloads_and_agrees_with_the_keras_model(fmt, run, exports, held_out, reference):
    path = exports[fmt]
    clf = load(path)
    assert (clf.format, clf.image_size, clf.class_names) == (fmt, 32, [str(d) for d in range(10)])
    probs = clf.predict_arrays(held_out[0])
    agreement = np.mean(probs.argmax(1) == reference.argmax(1))
    if fmt in ("keras", "savedmodel", "tflite", "onnx"):
        np.testing.assert_allclose(probs, reference, atol=1e-4)
    else:
        assert agreement >= QUANTISED_BAR
    record = json.loads((run / "export" / "metrics.json").read_text())[fmt]
    assert record["passed"] and record["n"] == len(reference) == 30
    assert record["agreement"] == pytest.approx(agreement, abs=1e-4)
    lo, hi = record["accuracy_change_ci"]
    assert lo <= record["accuracy_change"] <= hi and record["max_accuracy_drop"] == 0.01
    per_class = {row["class"]: row for row in record["per_class"]}
    assert sum(row["n"] for row in per_class.values()) == 30
    assert all(row["change"] == pytest.approx(row["recall"] - row["reference_recall"], abs=2e-6)  # each rounded to 1e-6
               for row in per_class.values())
    assert record["keras_accuracy"] == pytest.approx(np.mean(reference.argmax(1) == held_out[1]), abs=1e-4)
    assert (path.parent / "labels.txt").read_text().split() == clf.class_names
    sidecar = json.loads((path.parent / f"{path.name}.json").read_text())
    assert (sidecar["format"], sidecar["image_size"], sidecar["check"]) == (fmt, 32, record)


def test_raw_exported_graphs_return_calibrated_probabilities_without_imgclf(run, exports, held_out, reference):
    """The temperature is folded into the exported weights: the bare .tflite and .onnx (as
    another program would run them) give what ``imgclf predict`` gives, not the raw softmax."""
    from imgclf.runtime import load_keras_model
    temperature = json.loads((run / "run.json").read_text())["calibration"]["temperature"]
    uncalibrated = load_keras_model(run / "model.keras").predict(held_out[0], verbose=0)
    assert np.abs(uncalibrated - reference).max() > 1e-3  # the temperature moves these probabilities
    for raw in _bare_outputs(exports["tflite"], exports["onnx"], held_out[0]):
        np.testing.assert_allclose(raw, reference, atol=1e-4)
    for fmt in FORMATS:
        sidecar = json.loads((exports[fmt].parent / f"{exports[fmt].name}.json").read_text())
        assert (sidecar["temperature"], sidecar["temperature_in_graph"]) == (temperature, True)
        assert load(exports[fmt]).temperature == 1.0  # nothing applied twice


def test_a_chosen_test_time_flip_is_folded_into_every_exported_graph(run, held_out, tmp_path_factory):
    """A run that predicts with the flip: its exported graph averages each image's raw
    probabilities with its mirror image's, so the bare .tflite and .onnx answer like ``imgclf
    predict`` before the temperature, which stays in the record (folded into each half it would
    calibrate each half before the mean); imgclf, loading them, applies the temperature and does
    not flip a second time."""
    from imgclf.ranking import mirror
    flipped = tmp_path_factory.mktemp("flip") / "digits"
    shutil.copytree(run, flipped, ignore=shutil.ignore_patterns("export"))
    info = json.loads((flipped / "run.json").read_text())
    info["calibration"]["flip"] = {"flip": True, "setting": "on", "reason": "train.test_time_flip: on"}
    (flipped / "run.json").write_text(json.dumps(info))
    clf = load(flipped)
    assert clf.flip
    images = held_out[0]
    reference = clf.predict_arrays(images)
    clf.flip = False
    plain, mirrored = clf.predict_arrays(images), clf.predict_arrays(mirror(images))
    np.testing.assert_allclose(reference, _temper_mean(plain, mirrored, clf.temperature), atol=1e-5)
    assert np.abs(reference - plain).max() > 1e-3  # the flip changes these probabilities
    exporter = Exporter(flipped)
    paths = {fmt: exporter.export(fmt).path for fmt in ("tflite", "onnx", "keras")}
    from imgclf.ranking import temper
    for raw in _bare_outputs(paths["tflite"], paths["onnx"], images):
        np.testing.assert_allclose(temper(raw, clf.temperature), reference, atol=1e-4)
    for fmt, path in paths.items():
        sidecar = json.loads((path.parent / f"{path.name}.json").read_text())
        assert (sidecar["flip"], sidecar["flip_in_graph"], sidecar["temperature_in_graph"]) == (True, True, False)
        assert sidecar["check"]["agreement"] == 1.0
        again = load(path)
        assert not again.flip and again.temperature == clf.temperature  # in the graph: nothing applied twice
        np.testing.assert_allclose(again.predict_arrays(images), reference, atol=1e-4)


def _bare_outputs(tflite, onnx, images):
    """What a .tflite (LiteRT's own interpreter) and an .onnx (ONNX Runtime) return for
    ``images``, run as another program would run them, without imgclf."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter
    images = images.astype(np.float32)
    interpreter = Interpreter(model_path=str(tflite))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], images)
    interpreter.invoke()
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return interpreter.get_tensor(out["index"]), session.run(None, {session.get_inputs()[0].name: images})[0]


def _temper_mean(plain, mirrored, temperature):
    """What a flipping classifier returns: the raw probabilities averaged, then tempered."""
    from imgclf.ranking import temper
    raw = [temper(p, 1 / temperature) for p in (plain, mirrored)]  # undo the temperature on each
    return temper((raw[0] + raw[1]) / 2, temperature)


def test_sizes_and_input_types_fit_each_format(exports):
    from imgclf.runtime import LiteRTRuntime
    size = {fmt: os.path.getsize(exports[fmt]) for fmt in ("tflite", "tflite-dynamic", "tflite-int8")}
    assert size["tflite-int8"] < size["tflite"] / 3 and size["tflite-dynamic"] < size["tflite"] / 3
    assert LiteRTRuntime(exports["tflite-int8"]).input_dtype == np.uint8  # raw pixels go straight in
    assert LiteRTRuntime(exports["tflite"]).input_dtype == np.float32


def test_a_tflite_file_alone_still_knows_its_labels(exports, tmp_path, held_out, reference):
    alone = tmp_path / "alone.tflite"
    shutil.copyfile(exports["tflite"], alone)  # no labels.txt beside it
    clf = load(alone, num_threads=1)
    assert clf.class_names == [str(d) for d in range(10)] and clf.info["backbone"] == "efficientnet_lite0"
    one = clf.predict_arrays(held_out[0][:1])  # a different batch size re-plans the interpreter
    np.testing.assert_allclose(one, reference[:1], atol=1e-4)


def test_savedmodel_serves_without_keras(exports):
    path = exports["savedmodel"]
    assert (path / "assets" / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    code = ("import sys; sys.modules['keras'] = None\n"  # any import of Keras now fails
            "import numpy as np, tensorflow as tf\n"
            f"fn = tf.saved_model.load({str(path)!r}).signatures['serving_default']\n"
            "out = fn(image=tf.constant(np.full((2, 32, 32, 3), 255.0, np.float32)))['probabilities']\n"
            "print(out.shape, round(float(tf.reduce_sum(out[0])), 3))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(2, 10) 1.0"


def test_predict_cli_runs_an_exported_model(run, exports, capsys):
    images = sorted(load_dataset(run / "split.csv").paths["test"])[:4]
    assert main(["predict", str(exports["tflite-int8"]), *images, "--format", "json", "--top-k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 4 and all(len(r["top"]) == 2 and r["error"] is None for r in rows)


def test_an_export_that_disagrees_is_refused_and_not_left_behind(run, exporter, exports, monkeypatch):
    import keras

    import imgclf.deploy.formats.tflite as convert_mod
    real = convert_mod.convert_tflite
    # Stands for a conversion gone wrong: right shapes, unrelated (untrained) weights.
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax",
                                                 kernel_initializer=keras.initializers.GlorotUniform(0))])
    monkeypatch.setattr(convert_mod, "convert_tflite", lambda model, mode="float", calibration=None: real(wrong, mode))
    out = run / "broken" / "model.tflite"
    with pytest.raises(ImgclfError, match=r"loses accuracy: .* significantly more than the 1.0% allowed"):
        exporter.export("tflite", out)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no model, no temp file, no labels
    record = json.loads((run / "export" / "metrics.json").read_text())["tflite"]
    assert record["passed"] is False and record["path"] == str(out)
    assert record["accuracy_drop_lower"] > 0.01 and record["accuracy_change_ci"][1] < 0
    assert "Exports: what each one loses" in (run / "report.html").read_text()


def test_the_old_agreement_flag_names_its_replacement(run, capsys):
    assert main(["export", str(run), "--format", "tflite", "--min-agreement", "0.9"]) != 0
    assert "replaced by --max-accuracy-drop" in capsys.readouterr().err


def _foreign_tflite(path):
    import keras
    import tensorflow as tf
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


@pytest.mark.parametrize("name, make, fragment", [
    ("random.tflite", lambda p: p.write_bytes(os.urandom(4000)), "not a valid TFLite model"),
    ("empty.tflite", lambda p: p.write_bytes(b""), "not a valid TFLite model"),
    ("foreign.tflite", _foreign_tflite, "not an image classifier"),
    ("model.keras", lambda p: p.write_text("not a model"), "cannot load model"),
    ("model.onnx", lambda p: p.write_bytes(b"\x08\x01"), "not a valid ONNX model"),
    ("random.onnx", lambda p: p.write_bytes(os.urandom(4000)), "not a valid ONNX model"),
    ("model.pt", lambda p: p.write_bytes(b"\x08\x01"), "unknown model format"),
    ("folder", lambda p: p.mkdir(), "neither a run directory"),
    ("savedmodel", lambda p: (p.mkdir(), (p / "saved_model.pb").write_bytes(b"junk")), "cannot load SavedModel"),
])
def test_corrupt_or_foreign_models_end_in_one_clear_line(name, make, fragment, tmp_path, capsys, run):
    path = tmp_path / name
    make(path)
    with pytest.raises(ImgclfError, match=fragment):
        load(path)
    image = load_dataset(run / "split.csv").paths["test"][0]
    assert main(["predict", str(path), image]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("imgclf: error:") and str(path) in err and fragment in err


def test_an_onnx_file_alone_keeps_its_labels_and_runs_without_tensorflow(exports, tmp_path, held_out, reference):
    alone = tmp_path / "alone.onnx"
    shutil.copyfile(exports["onnx"], alone)  # no labels.txt beside it: the record is inside
    np.save(tmp_path / "x.npy", held_out[0][:4])
    code = ("import sys, numpy as np; from imgclf.deploy import load\n"
            f"clf = load({str(alone)!r}, num_threads=1)\n"
            f"probs = clf.predict_arrays(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "print(clf.format, clf.class_names[:2], 'tensorflow' in sys.modules); np.save(sys.argv[1], probs)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.npy")], capture_output=True, text=True,
                         check=True).stdout
    assert out.split("\n")[0] == "onnx ['0', '1'] False"
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), reference[:4], atol=1e-4)


def test_a_tflite_without_labels_is_refused(exports, tmp_path):
    from imgclf.runtime.litert import METADATA_NAME
    data = exports["tflite"].read_bytes()
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(data.replace(METADATA_NAME.encode() + b"\x00", b"xxxxxx\x00", 1))  # hide the record
    with pytest.raises(ImgclfError, match="no class names"):
        load(bare)
    (tmp_path / "labels.txt").write_text("".join(f"d{i}\n" for i in range(10)))
    assert load(bare).class_names[0] == "d0"


@pytest.mark.parametrize("fmt, out, fragment", [
    ("tflite", "x.keras", "must end in .tflite"),
    ("savedmodel", "occupied", "not a SavedModel"),
    ("pdf", None, "unknown export format"),
])
def test_bad_export_requests_fail_before_any_work(fmt, out, fragment, run, tmp_path):
    if out == "occupied":
        (tmp_path / out).mkdir()
        (tmp_path / out / "keep.txt").write_text("mine")
    with pytest.raises(ImgclfError, match=fragment):
        export_run(run, fmt, tmp_path / out if out else None)
    if out == "occupied":
        assert (tmp_path / out / "keep.txt").read_text() == "mine"


def test_a_foreign_tflite_classifier_with_a_fixed_batch_and_labels_beside_it_runs(tmp_path):
    import keras
    import tensorflow as tf
    inputs = keras.Input((8, 8, 3), batch_size=1)  # batch fixed at 1, as some converters leave it
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs)
    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    (tmp_path / "labels.txt").write_text("no\nyes\n")
    clf = load(tmp_path / "m.tflite")
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    assert (clf.class_names, clf.image_size, clf.format) == (["no", "yes"], 8, "tflite")
    np.testing.assert_allclose(clf.predict_arrays(images), model(images.astype(np.float32)).numpy(), atol=1e-5)


def test_int8_conversion_writes_nothing_to_the_terminal(capfd):
    """The TFLite quantizer's C++ settings line ('fully_quantize: 0, inference_type: 6, ...') and
    the Keras export's variable listing stay out of the user's output."""
    import keras

    from imgclf.runtime.litert import convert_tflite
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    capfd.readouterr()
    calibration = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    assert convert_tflite(model, "int8", calibration)[4:8] == b"TFL3"
    out = capfd.readouterr()
    assert (out.out, out.err) == ("", "")
