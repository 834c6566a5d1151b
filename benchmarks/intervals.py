"""Time the bootstrap intervals and measure their coverage in simulation.

    python benchmarks/intervals.py [--images 10000] [--runs 1000]

Prints the seconds compute_metrics takes with and without intervals on synthetic predictions
(10 classes), and the share of simulated test sets (4 classes x 50 images, known per-class
accuracies) whose 95% accuracy interval covers the true accuracy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from imgclf.evaluation.intervals import metric_intervals
from imgclf.evaluation.metrics import compute_metrics


def timing(n: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n)
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), y] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = [str(i) for i in range(10)]
    best = {}
    for ci in (True, False):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            compute_metrics(y, probs, names, intervals=ci)
            runs.append(time.perf_counter() - start)
        best[ci] = min(runs)
    return best[True], best[False]


def coverage(runs: int) -> float:
    rng = np.random.default_rng(7)
    rates = np.array([0.6, 0.75, 0.85, 0.95])
    covered = 0
    for run in range(runs):
        y = np.repeat(np.arange(4), 50)
        correct = np.concatenate([rng.random(50) < p for p in rates])
        pred = np.where(correct, y, (y + 1) % 4)
        lo, hi = metric_intervals(y, pred, correct, 4, seed=run)["accuracy"]
        covered += lo <= rates.mean() <= hi
    return covered / runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=1000)
    args = p.parse_args()
    with_ci, without = timing(args.images)
    print(f"compute_metrics on {args.images} images: {with_ci:.2f} s with intervals, {without:.2f} s without")
    print(f"coverage of the 95% accuracy interval over {args.runs} simulated test sets: {coverage(args.runs):.3f}")


if __name__ == "__main__":
    main()
