"""Images on disk -> a checked, split, reported Dataset.

``load_dataset`` finds the images (layouts.py), decodes every one once to catch bad files and
record sizes (keeping small ones decoded), carves any missing val/test split by a seeded
stratified split, and reports it all (report.py).

Example:
    >>> ds = load_dataset("photos", seed=42)
    >>> ds.class_names, len(ds.paths["train"])
    (['cat', 'dog'], 128)
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import astuple, dataclass, field

import numpy as np

from imgclf.data.arrays import map_threads
from imgclf.data.images import DEFAULT_MAX_PIXELS, BadImage, ImageInfo, inspect_and_read
from imgclf.data.layouts import SPLITS, Found, find_images
from imgclf.data.report import DataReport, build_report
from imgclf.data.shards import Shard
from imgclf.errors import ImgclfError

# Images up to this many pixels are kept decoded by load_dataset, up to KEEP_MB in all, so that
# load_images need not decode them again: on 11,000 28x28 PNGs the second decode was 2.6-4.4 s
# of a 9.4-9.6 s data stage. Photos are checked at 1/8 scale (JPEG draft) and decoded again.
KEEP_PIXELS = 128 * 128
KEEP_MB = 256
# Files this small on average are checked in one thread; see _check_threads.
SMALL_FILE_BYTES = 3 * 1024


@dataclass
class Dataset:
    """Class names, and the image paths and integer labels of each split."""

    class_names: list[str]
    paths: dict[str, list[str]]  # "train" | "val" | "test" -> image paths
    labels: dict[str, np.ndarray]  # same keys -> int32 indices into class_names
    report: DataReport
    root: str
    layout: str
    # path -> RGB Pillow image, decoded while checking (small images only); load_images(decoded=)
    decoded: dict = field(default_factory=dict, repr=False)
    # path -> ImageInfo (size and mode as stored, sha256 of the bytes) of every readable image
    infos: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        """len(class_names)."""
        return len(self.class_names)

    def split_rows(self):
        """(split, absolute path, class name) of every image, split by split: what a run's
        ``split.csv`` holds, so that loading that file gives back exactly the same splits.

        Example:
            >>> next(load_dataset("photos").split_rows())
            ('train', '/data/photos/cat/1.jpg', 'cat')
        """
        for split in SPLITS:
            for image, label in zip(self.paths[split], self.labels[split]):
                yield split, os.path.abspath(image), self.class_names[int(label)]

    def labels_for(self, class_names: list[str], split: str) -> np.ndarray:
        """A split's labels as indices into ``class_names`` (a model's classes, whose order and
        number may differ from the data's); a one-line error for a class the model lacks.

        Example:
            >>> load_dataset("more-photos").labels_for(["cat", "dog"], "test")[:3]
            array([1, 1, 0])
        """
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(self.class_names[j] for j in self.labels[split]) - set(index))
        if unknown:
            raise ImgclfError(f"{self.root}: class '{unknown[0]}' is not one the model knows "
                              f"({', '.join(class_names)})")
        return np.array([index[self.class_names[j]] for j in self.labels[split]], dtype=np.int64)


def load_dataset(path: str | os.PathLike, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 42, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
                 keep_mb: float = KEEP_MB, share=None) -> Dataset:
    """Find, check and split a labelled image collection.

    Every image is decoded once (threads; Pillow releases the GIL) so that bad files are
    skipped and listed in the report with a reason, never dropped silently and never a crash.
    A split the data does not define itself (no ``val/``, no ``split`` column...) is carved
    from the training images by a stratified split seeded with ``seed``.

    Args:
        path: a folder of class folders, a folder with ``train/`` (+ ``val/``, ``test/``), or
            a CSV of ``path,label[,split]``.
        val_fraction: share of all images (class folders) or of train (split layouts) held
            out for validation when the data has no val split.
        test_fraction: likewise for the test split.
        seed: drives the split.
        max_pixels: larger images are refused as decompression bombs.
        workers: decoding threads; None picks from the CPU count.
        keep_mb: memory for keeping small decoded images (``Dataset.decoded``, see KEEP_PIXELS)
            for ``load_images(..., decoded=)``; 0 keeps none.
        share: several processes load the same data (the workers of one training run): an
            object with ``index``, ``count`` and ``gather(value) -> list`` (every process's
            JSON-able value, in process order; training.exchange.WorkerShards).
            Process r checks only its shard of the files (data.shards) and the results are
            gathered, so every process gets the same Dataset for 1/count of the checking; each
            keeps decoded only the small images it checked (``decoded``: the rest of its own
            rows are decoded when it loads them).

    Returns:
        Dataset whose class names are sorted and whose paths are sorted within each split.

    Raises:
        ImgclfError: see layouts.find_images; also a class left with no readable image.

    Example:
        >>> load_dataset("photos", val_fraction=0.2).layout
        'class-folders'
    """
    found = find_images(path)
    infos, decoded = _inspect_shared(found, max_pixels, workers, keep_mb, share)
    good = [(entry, info) for entry, info in zip(found.entries, infos) if isinstance(info, ImageInfo)]
    skipped = list(found.skipped) + [(e[0], info) for e, info in zip(found.entries, infos) if isinstance(info, str)]
    class_names = list(found.class_names or [])
    _check_classes(found, class_names, [e for e, _ in good], skipped)
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[label] for (_, label, _), _ in good], dtype=np.int32)
    given = np.array([split or "" for (_, _, split), _ in good], dtype=object)
    assigned, notes = _assign_splits(labels, given, val_fraction, test_fraction, seed)
    paths, split_labels = {}, {}
    for split in SPLITS:
        rows = sorted((good[i][0][0], int(labels[i])) for i in np.flatnonzero(assigned == split))
        paths[split] = [p for p, _ in rows]
        split_labels[split] = np.array([y for _, y in rows], dtype=np.int32)
    report = build_report(found, class_names, split_labels, [info for _, info in good], skipped, notes)
    infos_by_path = {entry[0]: info for entry, info in good}
    return Dataset(class_names, paths, split_labels, report, found.root, found.layout, decoded, infos_by_path)


def _inspect_shared(found: Found, max_pixels: int, workers: int | None, keep_mb: float, share
                    ) -> tuple[list[ImageInfo | str], dict]:
    """_inspect_all of the found files, or with ``share`` each process checks its shard and all
    are gathered (with a digest of each process's file list: they must be the same)."""
    paths = [p for p, _, _ in found.entries]
    if share is None or share.count == 1:
        return _inspect_all(paths, max_pixels, workers, keep_mb)
    start, stop = Shard(share.index, share.count).span(len(paths))
    mine, kept = _inspect_all(paths[start:stop], max_pixels, workers, keep_mb)
    listing = hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()
    parts = share.gather({"files": listing, "infos": [i if isinstance(i, str) else astuple(i) for i in mine]})
    differ = [r for r, part in enumerate(parts) if part["files"] != listing]
    if differ:
        raise ImgclfError(f"{found.root}: worker {differ[0]} finds other files "
                          f"than worker {share.index} ({len(paths)} here); every worker needs the same data at the same path")
    return [i if isinstance(i, str) else ImageInfo(*i) for part in parts for i in part["infos"]], kept


def _inspect_all(paths: list[str], max_pixels: int, workers: int | None, keep_mb: float
                 ) -> tuple[list[ImageInfo | str], dict]:
    """Each file's ImageInfo (or the reason it is bad), and the small images kept decoded."""
    kept, left, lock = {}, [keep_mb * 2**20], threading.Lock()
    workers = workers or _check_threads(paths)

    def one(path: str) -> ImageInfo | str:
        try:
            info, img = inspect_and_read(path, max_pixels, KEEP_PIXELS if left[0] > 0 else 0)
        except BadImage as exc:
            return exc.reason
        if img is not None:
            with lock:
                if left[0] >= 3 * info.width * info.height:
                    left[0] -= 3 * info.width * info.height
                    kept[path] = img
        return info

    return map_threads(one, paths, workers), kept


def _check_threads(paths: list[str]) -> int | None:
    """One thread for tiny files (a sample's mean size under SMALL_FILE_BYTES), else None (the
    default). Checking a tiny file is mostly Python work holding the GIL, so a second thread
    only contends: 11,000 28x28 PNGs took 2.1 s in one thread and 3.5 s in two, 2,000 32x32
    PNGs (2.4 KB) 0.36 s and 0.58 s; from 4-8 KB a file two threads win (64x64 PNG, 8 KB:
    0.73 s against 0.59 s)."""
    sizes = []
    for path in paths[:: max(1, len(paths) // 64)][:64]:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            pass  # the check itself reports it
    return 1 if sizes and sum(sizes) / len(sizes) < SMALL_FILE_BYTES else None


def _check_classes(found: Found, class_names: list[str], good: list, skipped: list) -> None:
    if len(class_names) < 2:
        raise ImgclfError(f"{found.root}: only one class ('{class_names[0]}'); a classifier needs at least two")
    if not good:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ImgclfError(f"{found.root}: no readable images; {len(skipped)} file(s) skipped{first}")
    have = {label for _, label, _ in good}
    missing = [name for name in class_names if name not in have]
    if missing:
        raise ImgclfError(f"{found.root}: class '{missing[0]}' has no readable image "
                          f"({len(missing)} such class(es)); see `imgclf inspect` for the skipped files")


def _assign_splits(labels: np.ndarray, given: np.ndarray, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, list[str]]:
    """The split of every image: as given by the data, else carved from the training pool."""
    assigned = np.where(given == "", "train", given).astype(object)
    pool = np.flatnonzero(assigned == "train")
    source = "train" if (given != "").any() else "the images"
    notes, total = [], pool.size
    test_carved = not (given == "test").any()
    if test_carved:
        take = _with_every_class(labels, pool, stratified_take(labels, pool, test_fraction, seed), test_fraction, seed)
        assigned[take] = "test"
        pool = np.setdiff1d(pool, take)
        notes.append(_carved_note("test", take, labels, total, source, seed))
    else:
        notes.append("test: as given by the data")
    if not (given == "val").any():
        # val_fraction is a share of everything, so rescale it to what is left after test.
        rest = val_fraction / (1.0 - test_fraction) if test_carved and test_fraction < 1 else val_fraction
        take = _with_every_class(labels, pool, stratified_take(labels, pool, min(rest, 1.0), seed + 1), rest, seed + 1)
        assigned[take] = "val"
        notes.append(_carved_note("val", take, labels, total, source, seed))
    else:
        notes.append("val: as given by the data")
    return assigned, notes


def _with_every_class(labels: np.ndarray, pool: np.ndarray, take: np.ndarray, fraction: float, seed: int
                      ) -> np.ndarray:
    """``take`` plus one image of each class it lacks that has at least 2 in ``pool`` (3 in
    all before test was carved): tiny classes still get a val and a test image, seeded."""
    if fraction <= 0:
        return take
    rng = np.random.default_rng(seed)
    present = set(labels[take].tolist())
    counts = np.bincount(labels[pool], minlength=int(labels.max()) + 1) if pool.size else np.zeros(0, int)
    extra = [int(rng.choice(pool[labels[pool] == c])) for c in np.flatnonzero(counts >= 2) if c not in present]
    return np.sort(np.concatenate([take, np.asarray(extra, dtype=np.int64)]))


def _carved_note(split: str, take: np.ndarray, labels: np.ndarray, total: int, source: str, seed: int) -> str:
    """The real count of a carved split, and the classes left out of it (too few images)."""
    missing = sorted(set(labels.tolist()) - set(labels[take].tolist()))
    where = "" if source == "the images" else f" in {source}"
    note = (f"{split}: {take.size} of {total} images{where} ({take.size / max(total, 1):.1%}), "
            f"stratified by class (seed {seed})")
    if missing:
        note += (f"; {len(missing)} class(es) have no {split} image (fewer than 3 images): add images "
                 f"or give a {split} split")
    return note


def stratified_take(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices from ``pool`` to hold out: ``fraction`` of each class, seeded.

    sklearn's stratified ``train_test_split`` does the work. A class with a single image in
    the pool stays in it (holding it out would leave no example to train on), and when the
    held-out share is smaller than the number of classes, which sklearn refuses, each class
    gives ``round(fraction * count)`` images, at most all but one.

    Args:
        labels: class index of every image.
        pool: the indices that may be taken.
        fraction: the share of the pool to take, 0 to 1.
        seed: random state of the split.

    Returns:
        Sorted indices, a subset of ``pool``.

    Example:
        >>> stratified_take(np.repeat([0, 1], 10), np.arange(20), 0.2, seed=0)
        array([ 2,  7, 13, 16])
    """
    from sklearn.model_selection import train_test_split

    pool = np.asarray(pool, dtype=np.int64)
    if fraction <= 0 or pool.size == 0:
        return np.empty(0, dtype=np.int64)
    counts = np.bincount(labels[pool])
    pool = pool[counts[labels[pool]] >= 2]
    count = int(np.floor(fraction * pool.size + 0.5 + 1e-9))  # a count, not sklearn's ceil of a float
    if count < 1 or pool.size < 2:
        return np.empty(0, dtype=np.int64)
    try:
        _, take = train_test_split(pool, test_size=min(count, pool.size - 1), stratify=labels[pool],
                                   random_state=seed)
    except ValueError:
        rng = np.random.default_rng(seed)
        take = []
        for c in np.unique(labels[pool]):
            members = rng.permutation(pool[labels[pool] == c])
            take.extend(members[: min(int(round(fraction * len(members))), len(members) - 1)])
    return np.sort(np.asarray(take, dtype=np.int64))
