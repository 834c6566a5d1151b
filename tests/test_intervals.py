"""intervals.py: bootstrap intervals against known answers and by their coverage in simulation,
and the paired comparison of two models on the same images."""
import time

import numpy as np
import pytest
from scipy.stats import binomtest

from imgclf.evaluation.intervals import metric_intervals, paired_comparison, stratified_indices
from imgclf.evaluation.metrics import compute_metrics, format_metrics, summary_line


def _predictions(correct_per_class, per_class, num_classes, rng=None):
    """Labels and predictions where class c has correct_per_class[c] right (wrong ones go to c+1)."""
    y = np.repeat(np.arange(num_classes), per_class)
    pred = y.copy()
    for c, right in enumerate(correct_per_class):
        members = np.flatnonzero(y == c)
        wrong = members[right:] if rng is None else rng.permutation(members)[right:]
        pred[wrong] = (c + 1) % num_classes
    return y, pred


def test_accuracy_interval_matches_the_binomial_wilson_interval():
    # Every class has the same accuracy (85 of 100 right), so resampling within classes has the
    # binomial variance p(1-p)/n and the interval must be the binomial one. Wilson's interval for
    # 850/1000 is [0.827, 0.871]; the bootstrap's 2.5th/97.5th percentiles from 1,000 replicates
    # carry a Monte Carlo error of about 0.001 (and 0.001 of lattice steps), so 0.004 is ~3 SE.
    y, pred = _predictions([85] * 10, 100, 10)
    ci = metric_intervals(y, pred, np.ones_like(y, bool), 10)
    wilson = binomtest(850, 1000).proportion_ci(0.95, method="wilson")
    assert ci["accuracy"] == pytest.approx([wilson.low, wilson.high], abs=0.004)
    assert ci["top_k_accuracy"] == [1.0, 1.0]  # always a hit: no spread at all
    # recall of one class is a binomial on its own 100 images: Wilson for 85/100 is [0.767, 0.907]
    one = binomtest(85, 100).proportion_ci(0.95, method="wilson")
    assert ci["per_class"]["recall"][0] == pytest.approx([one.low, one.high], abs=0.02)


def test_intervals_cover_the_truth_about_95_percent_of_the_time():
    # 300 simulated test sets of 4 classes x 50 images with known per-class accuracies; each
    # interval either covers the true accuracy (the class-weighted mean) or not. At a true 95%
    # the count of covers is Binomial(300, 0.95): mean 285, sd 3.8, so the band 0.90-0.99
    # (270-297) is -4 to +3.2 sd: a right method fails it with p < 0.1%, while an interval that
    # is too narrow (true coverage 85%: 255 +- 6) passes with p < 1%, and one that never misses
    # (a far too wide interval) fails the upper end.
    rng = np.random.default_rng(7)
    rates = np.array([0.6, 0.75, 0.85, 0.95])
    truth, covered = rates.mean(), 0
    for run in range(300):
        right = rng.binomial(50, rates)
        y, pred = _predictions(right, 50, 4, rng)
        lo, hi = metric_intervals(y, pred, pred == y, 4, seed=run)["accuracy"]
        covered += lo <= truth <= hi
    assert 0.90 <= covered / 300 <= 0.99, covered


def test_every_per_class_interval_holds_its_point_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    probs = rng.dirichlet(np.ones(5), 400)
    probs[np.arange(400), y] += 0.5
    m = compute_metrics(y, probs / probs.sum(1, keepdims=True), list("abcde"), top_k=2)
    assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]
    assert m["top_k_accuracy_ci"][0] <= m["top_k_accuracy"] <= m["top_k_accuracy_ci"][1]
    for avg in ("macro", "weighted"):
        assert m[avg]["f1_ci"][0] <= m[avg]["f1"] <= m[avg]["f1_ci"][1]
    for row in m["per_class"]:
        for key in ("precision", "recall", "f1"):
            lo, hi = row[f"{key}_ci"]
            assert lo <= row[key] <= hi and hi - lo > 0.02
    again = compute_metrics(y, probs / probs.sum(1, keepdims=True), list("abcde"), top_k=2)
    assert again["per_class"] == m["per_class"] and again["accuracy_ci"] == m["accuracy_ci"]
    assert "accuracy_ci" not in compute_metrics(y, probs, list("abcde"), intervals=False)


def test_stratified_resampling_keeps_each_class_count():
    y = np.array([0] * 7 + [1] * 3 + [2] * 5)
    index = stratified_indices(y, replicates=50)
    assert (np.stack([np.bincount(y[row], minlength=3) for row in index]) == [7, 3, 5]).all()


def test_summary_and_table_show_the_interval_beside_the_value():
    y, pred = _predictions([40, 45], 50, 2)
    probs = np.eye(2)[pred] * 0.8 + 0.1
    m = compute_metrics(y, probs, ["cat", "dog"])
    lo, hi = m["accuracy_ci"]
    assert summary_line(m).startswith(f"accuracy 0.8500 [{lo:.4f}, {hi:.4f}], macro-F1 ")
    assert f"accuracy      0.8500 [{lo:.4f}, {hi:.4f}]" in format_metrics(m)


def test_ten_thousand_images_take_seconds_not_minutes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 10_000)
    probs = rng.dirichlet(np.ones(10), 10_000)
    start = time.perf_counter()
    compute_metrics(y, probs, [str(i) for i in range(10)])
    assert time.perf_counter() - start < 10  # 0.5 s measured on a shared 2-core machine


def test_paired_comparison_of_identical_and_of_better_models():
    y, pred = _predictions([80] * 2, 100, 2)
    same = paired_comparison(y, pred, pred, 2)
    assert same["change"] == 0 and same["change_ci"] == [0, 0] and same["mcnemar_p"] == 1.0
    better = pred.copy()
    fixed = np.flatnonzero(pred != y)[:20]  # the other model gets 20 more right, none fewer
    better[fixed] = y[fixed]
    result = paired_comparison(y, pred, better, 2)
    assert result["change"] == pytest.approx(0.1) and result["discordant"] == 20
    assert result["mcnemar_p"] == pytest.approx(2 * 0.5 ** 20, rel=1e-3)
    # paired: every replicate improves, so the interval sits above 0 and is narrower than two
    # separate binomial intervals' overlap would suggest (each accuracy's own interval is +-0.055)
    lo, hi = result["change_ci"]
    assert 0.05 < lo < 0.1 < hi < 0.15 and result["drop_lower"] < -0.05
    assert [row["change"] for row in result["per_class"]] == pytest.approx([0.2, 0.0])
