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

Example:
    >>> shard = Shard.parse("2/3")
    >>> shard.span(10), shard.take(list("abcdefghij"))
    ((3, 6), ['d', 'e', 'f'])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

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
