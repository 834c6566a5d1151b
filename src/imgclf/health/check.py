"""The dataset check: every finding of ``imgclf check``, and the cheap part ``imgclf train`` runs.

``cheap_checks`` costs nothing beyond loading the data: the files' sha256 digests were taken by
``data.load_dataset`` from the bytes it read to decode them. ``check_dataset`` decodes every
image once more (``scan``), hashes pixels and perceptual hashes, runs the frozen backbone once,
and derives duplicates, leakage, label errors and outliers from those.

Example:
    >>> ds = load_dataset("photos", seed=42)
    >>> cheap_checks(ds).counts()["leak"]
    0
    >>> check_dataset(ds).counts()["near"]
    2
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from imgclf.health.findings import Fact, HealthReport, Suspect
from imgclf.health.hashing import PHASH_DISTANCE, build_groups, equal_pairs, phash_pairs
from imgclf.health.nearcopy import NEAR_THUMB, confirm, neighbour_pairs

# Neighbours per image in feature space that are candidate near copies (a planted copy of
# fashion-mnist-1k was at most its original's 6th nearest neighbour; benchmarks/check.py).
CANDIDATES = 10


def _items(dataset) -> tuple[list[str], list[str], list[str]]:
    paths, labels, splits = [], [], []
    for split, path, label in dataset.split_rows():
        paths.append(path)
        labels.append(label)
        splits.append(split)
    return paths, labels, splits


def _digests(dataset, paths: list[str]) -> list[str]:
    infos = {os.path.abspath(p): info for p, info in dataset.infos.items()}
    return [getattr(infos.get(p), "sha256", "") for p in paths]


def cheap_checks(dataset) -> HealthReport:
    """Identical files (by the sha256 load_dataset took) within and across splits.

    Args:
        dataset: a ``data.Dataset``.

    Returns:
        HealthReport with the "exact" groups (their leaks and conflicts) and the skipped files.

    Example:
        >>> cheap_checks(load_dataset("photos")).warnings("imgclf check photos")
        []
    """
    start = time.perf_counter()
    paths, labels, splits = _items(dataset)
    digests = _digests(dataset, paths)
    groups = build_groups({"sha256": equal_pairs(digests)}, digests, None, labels, splits)
    return HealthReport(dataset.root, paths, labels, splits, groups, skipped=list(dataset.report.skipped),
                        checks=["sha256"], seconds={"hash": round(time.perf_counter() - start, 3)})


def train_checks(dataset, data_path, strict: bool = False) -> HealthReport:
    """What ``imgclf train`` runs on every run: :func:`cheap_checks`, one warning line on stderr
    per kind found, and with ``strict`` a leak as a one-line error (before any run file exists).

    Raises:
        ImgclfError: ``strict`` and a val/test image is an identical copy of one in another split.

    Example:
        >>> train_checks(load_dataset("photos"), "photos", strict=True).counts()["leak"]
        0
    """
    import sys

    from imgclf.errors import ImgclfError
    health = cheap_checks(dataset)
    where = f"imgclf check {data_path}"
    if strict and health.leaked():
        raise ImgclfError(f"{data_path}: {len(health.leaked())} val/test image(s) are identical copies of images "
                          f"in another split (--strict-data); see `{where}`")
    for line in health.warnings(where):
        print(f"imgclf: {line}", file=sys.stderr)
    return health


def check_dataset(dataset, *, backbone: str | None = "efficientnet_lite0", image_size: int = 0,
                  weights: str = "imagenet", seed: int = 42, near_thumb: float = NEAR_THUMB,
                  phash_distance: int = PHASH_DISTANCE, max_pixels: int = 64_000_000,
                  progress: Callable[[str, int, int], None] | None = None) -> HealthReport:
    """Every check: duplicates (bytes, pixels, perceptual hash, features), leakage, conflicting
    labels, likely label errors, outliers and the cheap facts.

    Args:
        dataset: a ``data.Dataset`` (its splits are those ``imgclf train`` would use).
        backbone: the frozen backbone whose pooled features compare images; None: hashes and
            facts only (no feature near-duplicates, label errors or outliers).
        image_size: its input side; 0 chooses as ``imgclf train`` does.
        weights: the backbone's weights.
        seed: the cross-validation folds' and PCA's seed.
        near_thumb: least thumbnail correlation that confirms a candidate near copy
            (``nearcopy``).
        phash_distance: perceptual-hash bits (0-3) that make two images candidates.
        max_pixels: decompression-bomb limit.
        progress: called as progress(stage, done, total).

    Returns:
        HealthReport.

    Example:
        >>> report = check_dataset(load_dataset("photos"), backbone=None)
        >>> report.checks
        ['sha256', 'pixels', 'phash', 'facts']
    """
    from imgclf.health.scan import scan_images
    lap = _Laps()
    paths, labels, splits = _items(dataset)
    report = HealthReport(dataset.root, paths, labels, splits, skipped=list(dataset.report.skipped),
                          checks=["sha256", "pixels", "phash"])
    forward, size = None, 0
    if backbone:
        from imgclf.health.features import feature_forward
        forward, size = feature_forward(backbone, image_size, dataset.report, len(paths), weights)
        report.checks.append(f"features ({backbone}, {size} px)")
    lap("model")
    tick = (lambda done: progress("scan", done, len(paths))) if progress else None
    scan = scan_images(paths, dataset.decoded, size, forward, max_pixels, progress=tick)
    lap("scan")
    report.skipped += [(paths[i], reason) for i, reason in sorted(scan.bad.items())]
    ok = np.ones(len(paths), bool)
    ok[list(scan.bad)] = False
    good = np.flatnonzero(ok)
    digests = _digests(dataset, paths)
    links = {"sha256": equal_pairs([d if ok[i] else "" for i, d in enumerate(digests)]),
             "pixels": equal_pairs(scan.pixel_digests),
             f"phash<={phash_distance}": confirm(scan.thumbs, good[phash_pairs(scan.phashes[good], phash_distance)],
                                                 near_thumb)}
    lap("hashes")
    sim = None
    if scan.features is not None and len(good) > 2:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):  # two BLAS threads on two shared cores spin: 1.5x the CPU time
            sim = _feature_findings(report, scan, good, labels, dataset.class_names, links, near_thumb, seed)
    lap("features")
    report.groups = build_groups(links, digests, scan.pixel_digests, labels, splits)
    if sim is not None:
        from imgclf.health.outliers import outliers
        grouped = {i for g in report.groups for i in g.members}
        report.outliers = [Suspect(int(good[i]), d) for i, d in outliers(sim)
                           if int(good[i]) not in grouped]
    report.facts = _facts(dataset, scan, ok)
    report.checks.append("facts")
    report.seconds = lap.seconds()
    return report


class _Laps:
    """Wall and CPU seconds (all threads) of each stage since the previous one."""

    def __init__(self):
        self.wall, self.cpu, self._at = {}, {}, (time.perf_counter(), time.process_time())

    def __call__(self, stage: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[stage], self.cpu[stage] = now[0] - self._at[0], now[1] - self._at[1]
        self._at = now

    def seconds(self) -> dict[str, float]:
        """{stage: wall, "total": wall, "cpu_<stage>": CPU, "cpu_total": CPU}, rounded."""
        out = {**self.wall, "total": sum(self.wall.values())}
        out.update({f"cpu_{k}": v for k, v in self.cpu.items()}, cpu_total=sum(self.cpu.values()))
        return {k: round(v, 2) for k, v in out.items()}


def _feature_findings(report: HealthReport, scan, good: np.ndarray, labels: list[str], class_names: list[str],
                      links: dict, near_thumb: float, seed: int) -> np.ndarray:
    """Near copies among feature-space neighbours, confirmed by thumbnails (added to ``links``),
    and label errors (into ``report``); returns the neighbours' similarities for the outliers."""
    from imgclf.health.features import neighbours, project
    from imgclf.health.labels import label_issues
    x = project(scan.features[good], seed=seed)
    index, sim = neighbours(x, k=CANDIDATES)
    links["features"] = confirm(scan.thumbs, good[neighbour_pairs(index)], near_thumb)
    class_index = {name: i for i, name in enumerate(class_names)}
    y = np.array([class_index[labels[i]] for i in good], np.int64)
    issues, note = label_issues(x, y, len(class_names), seed)
    report.label_issues = [Suspect(int(good[i]), q, class_names[s]) for i, q, s in issues]
    report.checks.append("labels (cleanlab)")
    if note:
        report.notes.append(note)
    return sim


def _facts(dataset, scan, ok: np.ndarray) -> list[Fact]:
    from imgclf.health.outliers import cheap_facts
    counts = {name: sum(c.get(name, 0) for c in dataset.report.counts.values()) for name in dataset.class_names}
    return cheap_facts(scan.sizes, scan.gray, counts, ok)
