"""Real labelled data, offline: Fashion-MNIST and scikit-learn's digits written as PNG folders.

``imgclf datasets fashion-mnist DIR`` writes ``DIR/train/<class>/NNNNN.png`` and
``DIR/test/<class>/NNNNN.png`` (the official split; NNNNN is the index in the IDX file), and
``imgclf datasets digits DIR`` writes ``DIR/<digit>/NNNN.png``. Output appears all at once:
it is written into a hidden folder beside DIR and renamed, so an interrupted run leaves
nothing half-written.

Example:
    >>> write_digits("data/digits", per_class=20)["counts"]["0"]
    20
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.errors import ImgclfError
from imgclf.data.layouts import DATASET_MARKER as MARKER  # says "written by imgclf datasets": safe to replace
from imgclf.data.arrays import map_threads

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle_boot")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the IDX format of (Fashion-)MNIST: magic, dimensions, then big-endian values.

    Args:
        data: the whole uncompressed file.
        name: named in errors (usually the file path).

    Returns:
        An array of the declared type and shape (uint8 for the image and label files).

    Raises:
        ImgclfError: bad magic number, unknown type, or a length that does not match.

    Example:
        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
        array([7, 9], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ImgclfError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ImgclfError(f"{name}: corrupt IDX header ({ndim} dimensions, {len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ImgclfError(f"{name}: IDX header promises {shape} = {expected} bytes of data, "
                          f"found {len(data) - header} (truncated or corrupt file)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or not.

    Args:
        path: the file.

    Returns:
        The array, as parse_idx.

    Raises:
        ImgclfError: unreadable file, corrupt gzip or IDX data.

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
        (10000,)
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise ImgclfError(f"{path}: corrupt gzip file") from None
    except OSError as exc:
        raise ImgclfError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_idx(data, str(path))


def write_fashion_mnist(out_dir: str | os.PathLike, *, source: str | os.PathLike | None = None,
                        train_per_class: int | None = None, test_per_class: int | None = None,
                        seed: int = 0) -> dict:
    """Write Fashion-MNIST as PNG class folders with its official train/test split.

    The IDX files come from ``source``, else the Debian package's folder, else the official
    download (when online).

    Args:
        out_dir: a new or empty folder, or a previous output of this function (replaced).
        source: a folder holding the four ``*-ubyte.gz`` files.
        train_per_class: keep this many training images per class (seeded); None for all.
        test_per_class: likewise for the test images.
        seed: drives the subset.

    Returns:
        A summary: dataset, out_dir, source, classes, counts per split and class.

    Raises:
        ImgclfError: files missing and download failed, a corrupt file, or an ``out_dir``
            that holds something else.

    Example:
        >>> write_fashion_mnist("data/fmnist", train_per_class=100)["counts"]["train"]["bag"]
        100
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix=".imgclf-download-") as download:
        folder = _fashion_source(source, Path(download))
        files: list[tuple[str, np.ndarray]] = []
        counts: dict[str, dict[str, int]] = {}
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            images, labels = _fashion_split(folder, split)
            keep = _per_class_subset(labels, per_class, seed)
            files += [(f"{split}/{FASHION_MNIST_CLASSES[labels[i]]}/{i:05d}.png", images[i]) for i in keep]
            counts[split] = {name: int((labels[keep] == c).sum()) for c, name in enumerate(FASHION_MNIST_CLASSES)}
    summary = {"dataset": "fashion-mnist", "out_dir": str(out_dir), "source": str(folder),
               "classes": list(FASHION_MNIST_CLASSES), "counts": counts, "seed": seed}
    _write_tree(out_dir, files, summary)
    return summary


def write_digits(out_dir: str | os.PathLike, *, per_class: int | None = None, seed: int = 0) -> dict:
    """Write scikit-learn's 8x8 handwritten digits as grayscale PNGs, a folder per digit.

    Values 0-16 are scaled to 0-255. There is no official split: load_dataset carves one.

    Args:
        out_dir: a new or empty folder, or a previous output of this command (replaced).
        per_class: keep this many images per digit (seeded); None for all 1797.
        seed: drives the subset.

    Returns:
        A summary: dataset, out_dir, classes, counts per class.

    Example:
        >>> write_digits("data/digits")["counts"]["7"]
        179
    """
    from sklearn.datasets import load_digits

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    keep = _per_class_subset(labels, per_class, seed)
    files = [(f"{labels[i]}/{i:04d}.png", pixels[i]) for i in keep]
    classes = [str(d) for d in range(10)]
    summary = {"dataset": "digits", "out_dir": str(out_dir), "classes": classes,
               "counts": {name: int((labels[keep] == c).sum()) for c, name in enumerate(classes)}, "seed": seed}
    _write_tree(out_dir, files, summary)
    return summary


def _fashion_source(source: str | os.PathLike | None, download: Path) -> Path:
    names = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    if source is not None:
        missing = [n for n in names if not (Path(source) / n).is_file()]
        if missing:
            raise ImgclfError(f"{source}: no {missing[0]} here; expected the four Fashion-MNIST *-ubyte.gz files")
        return Path(source)
    if all((Path(FASHION_MNIST_DIR) / n).is_file() for n in names):
        return Path(FASHION_MNIST_DIR)
    try:
        for name in names:
            with urllib.request.urlopen(FASHION_MNIST_URL + name, timeout=30) as response:
                (download / name).write_bytes(response.read())
    except (OSError, ValueError):  # URLError and timeouts are OSErrors
        raise ImgclfError(f"Fashion-MNIST files not found in {FASHION_MNIST_DIR} and download failed: "
                          "install the Debian package dataset-fashion-mnist or pass --source DIR") from None
    return download


def _fashion_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = (folder / name for name in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ImgclfError(f"{image_file}: expected uint8 images (N, rows, cols), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ImgclfError(f"{label_file}: {labels.shape[0]} labels for {len(images)} images in {image_file.name}")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ImgclfError(f"{label_file}: label {labels.max()} out of range 0-9")
    return images, labels.astype(np.int64)


def _per_class_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices: all, or ``per_class`` of each class picked by a seeded generator."""
    if per_class is None:
        return np.arange(len(labels))
    if per_class < 1:
        raise ImgclfError(f"per-class count must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ImgclfError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise ImgclfError(f"{out_dir}: folder is not empty and was not written by `imgclf datasets`; "
                          "choose a new folder")


def _write_tree(out_dir: Path, files: list[tuple[str, np.ndarray]], summary: dict) -> None:
    """Write PNGs into a hidden folder beside ``out_dir``, then swap it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for folder in sorted({str(Path(rel).parent) for rel, _ in files}):
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        # zlib and file I/O release the GIL, so threads overlap the PNG writes.
        map_threads(lambda item: Image.fromarray(item[1]).save(tmp / item[0]), files)
        (tmp / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
        old = None
        if out_dir.exists():
            old = out_dir.parent / f"{tmp.name}-old"
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
