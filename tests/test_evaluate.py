"""Metrics agree with scikit-learn and with numbers worked out by hand."""
import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from imgclf.evaluation.metrics import compute_metrics, format_metrics, mistakes

NAMES = ["cat", "dog", "fox"]
# Confusion matrix by construction (rows true, columns predicted):
#   cat: 3 right, 1 as dog;  dog: 2 right, 1 as fox;  fox: 2 right, 1 as cat.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
CM = [[3, 1, 0], [0, 2, 1], [1, 0, 2]]


def confident(y_pred, num_classes, high=0.8):
    probs = np.full((len(y_pred), num_classes), (1 - high) / (num_classes - 1))
    probs[np.arange(len(y_pred)), y_pred] = high
    return probs


@pytest.fixture
def known():
    return compute_metrics(Y_TRUE, confident(Y_PRED, 3), NAMES)


def test_hand_computed_values(known):
    assert known["n"] == 10
    assert known["accuracy"] == pytest.approx(0.7)
    assert known["confusion_matrix"] == CM
    precision = [row["precision"] for row in known["per_class"]]
    recall = [row["recall"] for row in known["per_class"]]
    assert precision == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert recall == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert [row["support"] for row in known["per_class"]] == [4, 3, 3]
    assert [row["class"] for row in known["per_class"]] == NAMES
    assert known["macro"]["precision"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)


def test_agrees_with_sklearn_on_random_predictions():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 200)
    probs = rng.dirichlet(np.ones(5), size=200)
    m = compute_metrics(y, probs, list("abcde"), top_k=3)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        assert m[avg]["f1"] == pytest.approx(skm.f1_score(y, pred, average=avg))
        assert m[avg]["precision"] == pytest.approx(skm.precision_score(y, pred, average=avg))
        assert m[avg]["recall"] == pytest.approx(skm.recall_score(y, pred, average=avg))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(5)))
    assert "macro avg" in m["classification_report"]
    json.dumps(m)  # JSON-ready: plain Python types only


def test_top_k_accuracy_by_construction():
    # The true class ranks 1st, 2nd, 3rd and 4th in the four rows.
    probs = np.array([[.7, .1, .1, .1], [.5, .3, .1, .1], [.5, .3, .15, .05], [.4, .3, .2, .1]])
    y = np.array([0, 1, 2, 3])
    assert compute_metrics(y, probs, list("abcd"), top_k=1)["top_k_accuracy"] == pytest.approx(0.25)
    assert compute_metrics(y, probs, list("abcd"), top_k=2)["top_k_accuracy"] == pytest.approx(0.5)
    assert compute_metrics(y, probs, list("abcd"), top_k=3)["top_k_accuracy"] == pytest.approx(0.75)
    clamped = compute_metrics(y, probs, list("abcd"), top_k=5)
    assert clamped["top_k"] == 4 and clamped["top_k_accuracy"] == 1.0


def test_two_classes_top_1_equals_accuracy():
    y = np.array([0, 1, 1, 0, 1])
    probs = confident(np.array([0, 1, 0, 0, 1]), 2)
    m = compute_metrics(y, probs, ["cat", "dog"], top_k=1)
    assert m["top_k"] == 1
    assert m["top_k_accuracy"] == pytest.approx(m["accuracy"]) == pytest.approx(0.8)


def test_class_never_predicted_has_precision_zero_without_warnings():
    y = np.array([0, 1, 2, 2])
    probs = confident(np.array([0, 1, 1, 1]), 3)  # "fox" is never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(y, probs, NAMES)
    fox = m["per_class"][2]
    assert fox["precision"] == 0.0 and fox["recall"] == 0.0 and fox["f1"] == 0.0
    assert fox["support"] == 2


def test_class_absent_from_test_set_keeps_its_row_and_column():
    y = np.array([0, 0, 1, 1])
    m = compute_metrics(y, confident(np.array([0, 1, 1, 1]), 3), NAMES)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["per_class"][2]["support"] == 0


@pytest.mark.parametrize("y, probs, names, match", [
    ([0, 1, 2], np.eye(3)[:2], NAMES, "samples"),
    ([0, 1], np.eye(2), NAMES, "columns"),
    ([0, 1], np.array([0.5, 0.5]), ["a", "b"], "2-D"),
    ([[0], [1]], np.eye(2), ["a", "b"], "1-D"),
    ([0, 3], np.eye(3)[:2], NAMES, r"\[0, 2\]"),
    ([0, 1], np.array([[np.nan, 1], [0, 1]]), ["a", "b"], "NaN"),
    ([0.0, 1.0], np.eye(2), ["a", "b"], "integer"),
    ([], np.zeros((0, 2)), ["a", "b"], "empty"),
])
def test_bad_inputs_raise_clear_errors(y, probs, names, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(np.asarray(y), probs, names)


def test_format_metrics_shows_headline_classes_and_matrix(known):
    text = format_metrics(known)
    assert "accuracy      0.7000" in text
    assert "top-3 acc." in text
    for name in NAMES:
        assert name in text
    assert "confusion matrix" in text
    last_row = text.rstrip().splitlines()[-1].split()
    assert last_row[-3:] == ["1", "0", "2"]  # the fox row of CM


def test_format_metrics_cuts_long_names_and_skips_huge_matrices():
    names = [f"class_{i}_" + "x" * 40 for i in range(40)]
    y = np.arange(40)
    text = format_metrics(compute_metrics(y, np.eye(40), names))
    assert max(len(line) for line in text.splitlines()) < 100
    assert "too many to print" in text


def test_mistakes_most_confident_first():
    y = np.array([0, 1, 1, 0, 2])
    probs = np.array([[.9, .05, .05],   # right
                      [.6, .3, .1],     # wrong, 0.6
                      [.05, .05, .9],   # wrong, 0.9
                      [.2, .7, .1],     # wrong, 0.7
                      [.1, .1, .8]])    # right
    assert mistakes(y, probs) == [2, 3, 1]
    assert mistakes(y, probs, limit=2) == [2, 3]
    assert mistakes(y, probs, limit=None) == [2, 3, 1]
    assert mistakes([0, 1], np.eye(2)) == []
