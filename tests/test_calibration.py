"""calibration.py and the temperature's path: fitted on validation only, applied where
probabilities leave a model."""
from types import SimpleNamespace

import numpy as np
import pytest

from imgclf.evaluation.calibration import (calibration_metrics, coverage_curve, expected_calibration_error,
                                           fit_temperature)
from imgclf.ranking import temper


def _overconfident(n, temperature, seed=0, classes=5):
    """Probabilities softmax(z) whose labels were drawn from softmax(z / temperature): the model
    is overconfident by exactly ``temperature``, so that is the temperature to recover."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, classes))
    truth = np.exp(z / temperature)
    truth /= truth.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return probs, labels


def test_the_fitted_temperature_recovers_a_known_overconfidence():
    # 4,000 images: the log-likelihood's curvature in log T puts the fit's standard error at a
    # few percent; 10% is ~3 SE and far from 1.0, the value a broken fit would return.
    probs, labels = _overconfident(4000, 2.0)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(2.0, rel=0.1)
    test_probs, test_labels = _overconfident(4000, 2.0, seed=1)
    m = calibration_metrics(temper(test_probs, t), test_labels, t)
    assert m["ece_after"] < m["ece_before"] / 2 and m["log_loss_after"] < m["log_loss_before"]


def test_temper_keeps_the_ranking_sums_to_one_and_is_undone_by_its_inverse():
    probs, _ = _overconfident(50, 1.0)
    soft = temper(probs, 3.0)
    assert np.abs(soft.sum(1) - 1).max() < 1e-6 and (soft.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(temper(soft, 1 / 3.0), probs, atol=1e-9)
    assert temper(probs, 1.0) is probs


def test_ece_and_coverage_on_known_cases():
    probs = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 9 + [1])  # 90% confident, 90% right: calibrated
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(probs, np.zeros(10, int)) == pytest.approx(0.1)
    probs = np.array([[0.99, 0.01], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    curve = coverage_curve(probs, np.array([0, 0, 1, 1]), points=4)
    assert [r["accuracy"] for r in curve] == [0.5, pytest.approx(2 / 3), 1.0, 1.0]
    assert curve[-1] == {"coverage": 0.25, "min_confidence": 0.99, "accuracy": 1.0}


def _job_and_arrays(val_labels, test_labels, test_time_flip="off"):
    """A real (tiny) Keras model inside a stand-in Job, for workflow._evaluate_test."""
    import keras
    from imgclf.config import RunConfig
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    arrays = {split: rng.integers(0, 255, (len(labels), 8, 8, 3)).astype(np.uint8)
              for split, labels in (("val", val_labels), ("test", test_labels))}
    cfg = RunConfig()
    cfg = type(cfg)(**{**cfg.__dict__, "data": type(cfg.data)(**{**cfg.data.__dict__, "image_size": 8}),
                       "train": type(cfg.train)(**{**cfg.train.__dict__, "test_time_flip": test_time_flip})})
    dataset = SimpleNamespace(class_names=["a", "b", "c"], labels={"val": val_labels, "test": test_labels})
    return SimpleNamespace(cfg=cfg, dataset=dataset, net=SimpleNamespace(model=model)), arrays


def test_the_temperature_is_fitted_on_validation_only(tmp_path):
    from imgclf.record import RunRecord
    from imgclf.workflow import _evaluate_test
    rng = np.random.default_rng(1)
    job, arrays = _job_and_arrays(np.zeros(60, int), np.zeros(60, int))
    # labels the (seeded, untrained) model mostly gets right, so the fit lands inside its range
    val = job.net.model.predict(arrays["val"].astype("float32"), verbose=0).argmax(1)
    val[:10] = rng.integers(0, 3, 10)
    test = rng.integers(0, 3, 60)

    def temperature(val_labels, test_labels, name):
        job, arrays = _job_and_arrays(val_labels, test_labels)
        evaluation, calibration = _evaluate_test(job, RunRecord(tmp_path / name), arrays, None)
        t = calibration["temperature"]
        assert evaluation.metrics["calibration"]["temperature"] == t
        return t, [row["min_confidence"] for row in calibration["thresholds"]]
    base, thresholds = temperature(val, test, "base")
    assert thresholds  # some target accuracy is reachable on these labels
    # test labels move neither the temperature nor the abstain thresholds; validation labels do
    assert temperature(val, (test + 1) % 3, "test-changed") == (base, thresholds)
    assert temperature((val + 1) % 3, test, "val-changed")[0] != base


def test_abstain_thresholds_pick_the_lowest_confidence_that_reaches_each_accuracy():
    from imgclf.evaluation.calibration import abstain_thresholds, pick_threshold
    from imgclf.errors import ImgclfError
    # confidences 0.9, 0.8, 0.7, 0.6; right, right, wrong, right
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    rows = abstain_thresholds(probs, labels, probs, labels)
    # 0.75 accuracy is first reached with all four (3/4), 2/3 < 0.75 < 1 needs the top two
    assert pick_threshold(rows, 0.75, "run")["min_confidence"] == 0.6
    top_two = pick_threshold(rows, 0.9, "run")
    assert top_two["min_confidence"] == 0.8 and top_two["val_coverage"] == 0.5 and top_two["val_accuracy"] == 1.0
    assert top_two["test_coverage"] == 0.5  # reported on the test split at the same P
    assert [r["min_confidence"] for r in rows] == sorted(r["min_confidence"] for r in rows)
    with pytest.raises(ImgclfError, match="no confidence thresholds"):
        pick_threshold([], 0.9, "model.tflite")
    assert abstain_thresholds(probs, 1 - probs.argmax(axis=1)) == []  # every answer wrong: no target reached


def test_an_answer_below_the_confidence_asked_for_is_unknown():
    from imgclf.ranking import UNKNOWN, answer
    assert answer([("dog", 0.55), ("cat", 0.45)], 0.6) == UNKNOWN
    assert answer([("dog", 0.6), ("cat", 0.4)], 0.6) == "dog"
    assert answer([], 0.5) is None


def test_the_reliability_diagram_is_drawn_and_shown_in_the_calibration_section(tmp_path):
    """metrics.json keeps the table before and after the temperature; the diagram draws both, and
    the report's calibration section embeds it (the table stays, folded)."""
    from PIL import Image
    from imgclf.evaluation.calibration_plots import plot_reliability
    from imgclf.evaluation.report_extra import calibration_section
    probs, labels = _overconfident(2000, 2.0)
    t = fit_temperature(probs, labels)
    calibration = calibration_metrics(temper(probs, t), labels, t)
    before = calibration["reliability_before"]
    assert sum(r["n"] for r in before) == 2000
    # before the temperature the model is overconfident: its accuracy lags its confidence
    busy = [r for r in before if r["n"] >= 50 and r["confidence"] < 0.95]
    assert busy and all(r["accuracy"] < r["confidence"] for r in busy)
    path = plot_reliability(calibration, tmp_path / "reliability.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > 600 and png.size[1] > 600
    no_before = {k: v for k, v in calibration.items() if k != "reliability_before"}  # an older metrics.json
    assert plot_reliability(no_before, tmp_path / "old.png").read_bytes() != path.read_bytes()
    html = calibration_section(calibration, path)
    assert 'alt="reliability diagram" src="data:image/png;base64,' in html
    assert "<details><summary>the reliability table</summary>" in html
    assert "The reliability diagram is missing." in calibration_section(calibration, tmp_path / "none.png")
    empty = plot_reliability({"reliability": []}, tmp_path / "empty.png")
    assert empty.stat().st_size > 1000
    assert "test-time flip" not in html  # the default, off: nothing to say
    chosen = {"flip": True, "setting": "auto", "val_accuracy": {"plain": 0.9, "flip": 0.91},
              "val_loss": {"plain": 0.3, "flip": 0.28}}
    assert "on (chosen on validation); with the mirror image averaged in, validation accuracy 90.00% → 91.00%" in \
        calibration_section(calibration, path, chosen)


def test_the_test_time_flip_is_chosen_by_validation_accuracy_then_log_loss():
    from imgclf.evaluation.calibration import choose_flip
    labels = np.array([0, 1, 1, 0])
    plain = np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.8, 0.2]])  # 3 of 4 right
    helps = np.array([[0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.8, 0.2]])  # the mirror gets the third right
    hurts = np.array([[0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.8, 0.2]])
    surer = np.array([[0.9, 0.1], [0.1, 0.9], [0.55, 0.45], [0.9, 0.1]])  # same answers, lower loss
    on = choose_flip(plain, helps, labels)
    assert on["flip"] and on["val_accuracy"] == {"plain": 0.75, "flip": 1.0}
    assert on["val_loss"]["flip"] < on["val_loss"]["plain"]
    assert not choose_flip(plain, hurts, labels)["flip"]
    assert choose_flip(plain, surer, labels)["flip"]  # equal accuracy, lower log loss
    assert not choose_flip(plain, plain, labels)["flip"]  # nothing gained: one forward pass is cheaper
    # a model never taught that mirror images share a class is not flipped, whatever validation says
    refused = choose_flip(plain, helps, labels, flips_in_training=False)
    assert not refused["flip"] and "does not flip" in refused["reason"]
    assert choose_flip(plain, hurts, labels, "on")["flip"] and not choose_flip(plain, helps, labels, "off")["flip"]
    assert not choose_flip(None, None, labels[:0])["flip"]  # no validation split: off


def test_a_flipping_classifier_averages_each_image_with_its_mirror_image():
    import keras
    from imgclf.deploy.predict import Classifier
    from imgclf.ranking import mirror
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    images = np.random.default_rng(0).integers(0, 255, (5, 4, 4, 3)).astype(np.uint8)
    plain = Classifier(model, ["a", "b", "c"], 4, "m").predict_arrays(images)
    mirrored = Classifier(model, ["a", "b", "c"], 4, "m").predict_arrays(mirror(images))
    assert np.abs(plain - mirrored).max() > 1e-3  # the model is not symmetric: the flip changes answers
    both = Classifier(model, ["a", "b", "c"], 4, "m", flip=True, temperature=1.7).predict_arrays(images, batch_size=2)
    np.testing.assert_allclose(both, temper((plain + mirrored) / 2, 1.7), atol=1e-6)  # averaged, then tempered
    assert (mirror(images)[:, :, 0] == images[:, :, -1]).all()


def test_the_flip_is_decided_on_validation_only(tmp_path):
    from imgclf.record import RunRecord
    from imgclf.workflow import _evaluate_test
    rng = np.random.default_rng(2)
    val = rng.integers(0, 3, 60)
    test = rng.integers(0, 3, 60)

    def decided(val_labels, test_labels, name):
        job, arrays = _job_and_arrays(val_labels, test_labels, "auto")
        evaluation, calibration = _evaluate_test(job, RunRecord(tmp_path / name), arrays, None)
        return calibration["flip"]
    base = decided(val, test, "base")
    assert set(base["val_accuracy"]) == {"plain", "flip"} and base["setting"] == "auto"
    assert decided(val, (test + 1) % 3, "test-changed") == base  # test labels move nothing
    # the validation labels the mirror images get right decide it: label val by what each way says
    job, arrays = _job_and_arrays(val, test)
    from imgclf.ranking import mirror
    plain = job.net.model.predict(arrays["val"].astype("float32"), verbose=0)
    flipped = job.net.model.predict(mirror(arrays["val"]).astype("float32"), verbose=0)
    assert decided((plain + flipped).argmax(1), test, "val-mirrored")["flip"]
    assert not decided(plain.argmax(1), test, "val-plain")["flip"]
    job, arrays = _job_and_arrays(val, test)  # the default: off, and the mirror images not even predicted
    assert _evaluate_test(job, RunRecord(tmp_path / "off"), arrays, None)[1]["flip"] == {
        "flip": False, "setting": "off", "reason": "train.test_time_flip: off"}


@pytest.mark.parametrize("figures, drawn", [(None, {"confusion", "per_class", "reliability", "mistakes"}),
                                            (("mistakes",), {"mistakes"}), ((), set())])
def test_evaluating_the_test_split_draws_the_figures_it_is_given(tmp_path, figures, drawn):
    from imgclf.record import RunRecord
    from imgclf.workflow import _evaluate_test
    job, arrays = _job_and_arrays(np.arange(30) % 3, np.arange(30) % 3)
    record = RunRecord(tmp_path / "run")
    _evaluate_test(job, record, arrays, None, figures)  # (): a worker whose share is empty draws none
    assert set(record.plots()) == drawn and record.metrics_path.is_file()
