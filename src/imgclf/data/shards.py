"""Shards: which contiguous slice of an ordered list of images one of N processes takes.

The one owner of the split used by batch prediction (``imgclf predict --shard I/N``), by the
sharded feature cache (worker r of R caches shard r+1 of R of each split) and by the rows of a
global batch each replica trains on. Shard i of N (0-based inside, "I/N" 1-based for people)
holds items ``[i*n//N, (i+1)*n//N)``: contiguous, sizes differ by at most one, every item in
exactly one shard, and the shards in order are the list in order, so concatenating their
outputs in shard order gives one process's output. Given ``unit`` (batch prediction's
``--batch-size``), the cuts fall on multiples of it, so every shard's batches are batches of the
one-process run: a network's float sums depend on the batch they ran in, and equal batches make
the merged file byte for byte one process's.

Also here: :class:`ShardImages`, a worker's images with only its own shard's rows decoded.

Example:
    >>> shard = Shard.parse("2/3")
    >>> shard.span(10), shard.take(list("abcdefghij"))
    ((3, 6), ['d', 'e', 'f'])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np

from imgclf.errors import ImgclfError

T = TypeVar("T")


def bounds(index, count, n):
    """(start, stop) of part ``index`` of ``count`` of ``n`` items; plain arithmetic, so it also
    runs on tensors inside a tf.function (the rows of a global batch a replica trains on).

    Example:
        >>> bounds(1, 3, 10)
        (3, 6)
    """
    return index * n // count, (index + 1) * n // count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; ``Shard()`` is the whole list."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise ImgclfError(f"shard {self.index + 1}/{self.count}: expected I/N with 1 <= I <= N")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """A shard from "I/N" (1-based, as a job scheduler's array index usually is).

        Raises:
            ImgclfError: one line for anything but two whole numbers with 1 <= I <= N.

        Example:
            >>> Shard.parse("1/2")
            Shard(index=0, count=2)
        """
        first, sep, second = str(text).strip().partition("/")
        if not (sep and first.strip().isdigit() and second.strip().isdigit()):
            raise ImgclfError(f"--shard {text}: expected I/N, two whole numbers such as 1/4")
        i, n = int(first), int(second)
        if not 1 <= i <= n:
            raise ImgclfError(f"--shard {text}: I must be between 1 and N (shards are numbered 1..{max(n, 1)})"
                              if n >= 1 else f"--shard {text}: N must be at least 1")
        return cls(i - 1, n)

    def span(self, n: int, unit: int = 1) -> tuple[int, int]:
        """(start, stop) of this shard's items in a list of ``n``, cut on multiples of ``unit``
        (shard sizes then differ by at most one unit).

        Example:
            >>> [Shard(r, 3).span(10) for r in range(3)], Shard(1, 2).span(10, unit=4)
            ([(0, 3), (3, 6), (6, 10)], (4, 10))
        """
        start, stop = bounds(self.index, self.count, -(-n // unit))
        return min(start * unit, n), min(stop * unit, n)

    def take(self, items: Sequence[T], unit: int = 1) -> Sequence[T]:
        """This shard's slice of ``items`` (same type as ``items`` for lists and arrays)."""
        start, stop = self.span(len(items), unit)
        return items[start:stop]

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


class ShardImages:
    """uint8 (N, S, S, 3) images of which rows [start, stop) are held decoded (``held``: an array
    or DiskImages) and any other row is decoded from its file when read. A worker of several on
    the cached path reads only its shard of each split (data.load_images(rows=...)); the chief
    also shows a few test images outside its shard (the mistakes grid), decoded then.

    Example:
        >>> x = load_images(paths, 96, rows=(0, 64))   # 64 decoded now, the rest when read
        >>> x.shape, x[:64].shape, x[[70, 3]].shape
        ((100, 96, 96, 3), (64, 96, 96, 3), (2, 96, 96, 3))
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[str], image_size: int, held, start: int, max_pixels: int):
        self.paths, self.held, self.max_pixels = [str(p) for p in paths], held, max_pixels
        self.start, self.stop = start, start + len(held)
        self.shape = (len(self.paths), image_size, image_size, 3)
        self.nbytes = getattr(held, "nbytes", 0)  # what is held, not the whole

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[[int(key)]][0]
        rows = np.arange(len(self))[key].reshape(-1)
        if len(rows) and self.start <= rows.min() and rows.max() < self.stop and (
                not isinstance(key, slice) or key.step in (None, 1)):
            return np.asarray(self.held[rows.min() - self.start:rows.max() + 1 - self.start]
                              if isinstance(key, slice) else self.held[rows - self.start])
        from imgclf.data.arrays import load_images
        out = np.empty((len(rows),) + self.shape[1:], np.uint8)
        inside = (rows >= self.start) & (rows < self.stop)
        if inside.any():
            out[inside] = self.held[rows[inside] - self.start]
        if (~inside).any():
            out[~inside] = load_images([self.paths[i] for i in rows[~inside]], self.shape[1],
                                       max_pixels=self.max_pixels)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
