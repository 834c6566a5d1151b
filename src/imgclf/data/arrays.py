"""Decoded, resized uint8 image arrays: in memory, in an on-disk cache, or resized lazily.

Part of the data stage; import these from ``imgclf.data``.

Example:
    >>> x = load_images(["a.jpg", "b.png"], 96)
    >>> x.shape, x.dtype
    ((2, 96, 96, 3), dtype('uint8'))
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, TypeVar

import numpy as np

from imgclf.data.images import DEFAULT_MAX_PIXELS, BadImage, read_image, resize
from imgclf.errors import ImgclfError
from imgclf.files import atomic_path

if TYPE_CHECKING:
    from PIL import Image

T = TypeVar("T")
R = TypeVar("R")
_CACHE_VERSION = 1  # bump when decoding or resizing changes, so old caches are not reused
_CHUNK = 256  # items per thread hand-off in map_threads
_WRITE_CHUNK_BYTES = 64 << 20  # pixels decoded between writes to a disk cache


def worker_count(workers: int | None = None) -> int:
    """Threads for decoding: as given, else one per CPU (at most 16).

    Pillow releases the GIL while decoding and resampling, so threads scale with cores for
    photos; for tiny images Python overhead dominates and more threads only add contention.

    Args:
        workers: the number asked for; None or 0 for the default.

    Returns:
        A thread count of at least 1.

    Example:
        >>> worker_count(4)
        4
    """
    if workers:
        return max(1, int(workers))
    return min(16, os.cpu_count() or 1)


def map_threads(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` in a thread pool; the first error stops what has not started.

    Items go to the threads in chunks of up to ``_CHUNK``: a future per item cost about 0.2 ms
    of hand-offs, more than checking a 28x28 PNG (11,000 of them: 4.1 s in one worker thread
    against 2.2 s in a plain loop). After an error or a Ctrl-C every thread stops at its next
    item (a plain ``with ThreadPoolExecutor()`` would run every queued item first).

    Args:
        fn: called once per item, from worker threads.
        items: the inputs.
        workers: thread count; None for worker_count()'s default.

    Returns:
        The results, in the order of ``items``.

    Example:
        >>> map_threads(len, ["a", "bb"], workers=2)
        [1, 2]
    """
    items = list(items)
    threads = worker_count(workers)
    size = max(1, min(_CHUNK, math.ceil(len(items) / (4 * threads))))  # >= 4 chunks a thread
    stop = threading.Event()

    def run(chunk: list[T]) -> list[R]:
        out = []
        for item in chunk:
            if stop.is_set():
                break
            out.append(fn(item))
        return out

    pool = ThreadPoolExecutor(threads)
    try:
        parts = pool.map(run, [items[i:i + size] for i in range(0, len(items), size)])
        return [result for part in parts for result in part]
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def load_images(paths: Sequence[str | os.PathLike], image_size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                decoded: Mapping[str, "Image.Image"] | None = None, lazy: bool = False,
                streamed: bool = False, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Decode and squash every image to ``image_size`` once, in a thread pool.

    With ``cache_dir`` the pixels go to a ``.npy`` file keyed by a hash of the paths, their
    sizes and modification times and ``image_size``; a later call with the same inputs opens
    it as a read-only memmap instead of decoding (and data larger than RAM stays on disk).

    Args:
        paths: image files, usually ``Dataset.paths[split]``.
        image_size: side of the square output.
        max_pixels: decompression-bomb limit, as in images.read_image.
        cache_dir: folder for the cache file; None keeps everything in memory.
        workers: decoding threads; None picks from the CPU count.
        decoded: RGB images already decoded, by path (``Dataset.decoded``): resized, not read.
        lazy: when every image is in ``decoded`` (and there is no ``cache_dir``), return a
            :class:`ResizedImages` over them, which resizes a batch when it is read.
        streamed: with ``cache_dir``, return a :class:`DiskImages` (read with plain file reads,
            nothing mapped) instead of a memmap.
        rows: (start, stop): decode only these rows now (a worker's shard) and return a
            data.shards.ShardImages, which decodes any other row when it is read.

    Returns:
        uint8 array (N, image_size, image_size, 3); a read-only memmap when cached (a
        DiskImages when ``streamed``); or a ResizedImages (see ``lazy``).

    Raises:
        ImgclfError: naming a file that is missing or no longer decodes.

    Example:
        >>> load_images(ds.paths["train"], 96, cache_dir="runs/x/cache").shape
        (800, 96, 96, 3)
    """
    paths = [str(p) for p in paths]
    if rows is not None and tuple(rows) != (0, len(paths)):
        from imgclf.data.shards import ShardImages
        held = load_images(paths[rows[0]:rows[1]], image_size, max_pixels=max_pixels, cache_dir=cache_dir,
                           workers=workers, decoded=decoded, lazy=lazy, streamed=streamed)
        return ShardImages(paths, image_size, held, rows[0], max_pixels)
    shape = (len(paths), image_size, image_size, 3)
    if lazy and cache_dir is None and decoded is not None and all(p in decoded for p in paths):
        return ResizedImages([decoded[p] for p in paths], image_size)
    if cache_dir is None or not paths:
        out = np.empty(shape, dtype=np.uint8)
        _decode_into(out, paths, image_size, max_pixels, workers, decoded)
        return out
    cache = Path(cache_dir) / f"images-{image_size}px-{len(paths)}-{_cache_key(paths, image_size)}.npy"
    opened = DiskImages if streamed else (lambda path: np.load(path, mmap_mode="r"))
    if cache.is_file():
        try:
            cached = opened(cache)
            if cached.shape == shape and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass  # unreadable cache: decode again and replace it
    with atomic_path(cache, suffix=".npy") as tmp, open(tmp, "wb") as f:
        # a chunk at a time through a buffer, not a writable map: a map's dirty pages count as
        # this process's memory until it is closed (1 GB of 224-px photos)
        np.lib.format.write_array_header_2_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        rows = max(1, _WRITE_CHUNK_BYTES // math.prod(shape[1:]))
        buffer = np.empty((min(rows, len(paths)),) + shape[1:], np.uint8)
        for start in range(0, len(paths), rows):
            part = buffer[:min(rows, len(paths) - start)]
            _decode_into(part, paths[start:start + len(part)], image_size, max_pixels, workers, decoded)
            f.write(part.data)
    return opened(cache)


def _cache_key(paths: list[str], image_size: int) -> str:
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImgclfError(f"{path}: cannot read ({exc.strerror or exc}); has it moved since loading?") from None
        stamps.append((path, st.st_size, st.st_mtime_ns))
    blob = json.dumps([_CACHE_VERSION, image_size, stamps]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ResizedImages:
    """Images at one size, resized from their decoded originals when read: an array-like of
    uint8 (N, S, S, 3) that holds the small originals instead of the big resized pixels.

    Reading ``x[a:b]``, ``x[index_array]`` or ``x[i]`` resizes those images (the same
    :func:`~imgclf.data.images.resize` as load_images, so the same pixels); ``np.asarray(x)``
    resizes all of them. Fashion-MNIST's 70,000 28-px images take about 0.2 GB decoded and
    1.9 GB at 96 px: the cached path reads each image only a few times (once per view, and
    once to predict the test set), so it need not hold them resized.

    Args:
        images: RGB Pillow images (``Dataset.decoded``'s), in order.
        image_size: side of the square output.

    Example:
        >>> x = ResizedImages([Image.new("RGB", (28, 28))] * 5, 96)
        >>> x.shape, x[1:3].shape, x[[0, 4]].dtype
        ((5, 96, 96, 3), (2, 96, 96, 3), dtype('uint8'))
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, images: Sequence["Image.Image"], image_size: int):
        self.images, self.image_size = list(images), int(image_size)
        self.shape = (len(self.images), self.image_size, self.image_size, 3)
        self.nbytes = math.prod(self.shape)  # of the resized pixels, were they all read at once

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return resize(self.images[key], self.image_size)
        picks = range(len(self.images))[key] if isinstance(key, slice) else np.asarray(key).reshape(-1)
        out = np.empty((len(picks),) + self.shape[1:], np.uint8)
        for row, i in enumerate(picks):
            out[row] = resize(self.images[int(i)], self.image_size)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        map_threads(lambda i: out.__setitem__(i, resize(self.images[i], self.image_size)), range(len(self)))
        return out if dtype is None else out.astype(dtype)


class DiskImages:
    """uint8 (N, S, S, 3) images in a ``.npy`` file, read with plain file reads: ``x[a:b]`` is one
    read, ``x[index_array]`` one per row, ``np.asarray(x)`` all of it. Nothing is mapped, so
    what was read costs no memory once the batch is gone (a memmap's pages, once touched, count
    in the process's resident memory until it ends: the whole file after one pass).

    Example:
        >>> x = DiskImages("runs/a/cache/images-224px-5000-....npy")
        >>> x.shape, x[10:12].shape
        ((5000, 224, 224, 3), (2, 224, 224, 3))
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if len(shape) != 4 or fortran or dtype != np.uint8:
            raise ValueError(f"{path}: not a C-ordered uint8 (N, S, S, 3) array")
        self.shape = tuple(shape)
        self.row = math.prod(self.shape[1:])
        self.nbytes = self.row * self.shape[0]
        if os.path.getsize(self.path) < self.offset + self.nbytes:
            raise ValueError(f"{path}: shorter than its header says")

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, f, start: int, count: int) -> np.ndarray:
        out = np.empty((count,) + self.shape[1:], np.uint8)
        f.seek(self.offset + start * self.row)
        if count and f.readinto(memoryview(out).cast("B")) != count * self.row:
            raise ImgclfError(f"{self.path}: the image cache is shorter than it was; delete it and run again")
        return out

    def __getitem__(self, key) -> np.ndarray:
        with open(self.path, "rb") as f:
            if isinstance(key, (int, np.integer)):
                return self._read(f, range(len(self))[key], 1)[0]
            if isinstance(key, slice) and key.step in (None, 1):
                rows = range(len(self))[key]
                return self._read(f, rows.start, len(rows))
            picks = range(len(self))[key] if isinstance(key, slice) else np.asarray(key).reshape(-1)
            out = np.empty((len(picks),) + self.shape[1:], np.uint8)
            for row, i in enumerate(picks):
                out[row] = self._read(f, range(len(self))[int(i)], 1)[0]
            return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _decode_into(out: np.ndarray, paths: list[str], image_size: int, max_pixels: int, workers: int | None,
                 decoded: Mapping[str, "Image.Image"] | None) -> None:
    decoded = decoded or {}

    def one(i: int) -> None:
        try:
            img = decoded.get(paths[i])
            out[i] = resize(img if img is not None else read_image(paths[i], max_pixels), image_size)
        except BadImage as exc:
            raise ImgclfError(f"{paths[i]}: {exc.reason} (did it change since the dataset was loaded?)") from None

    map_threads(one, range(len(paths)), workers)
