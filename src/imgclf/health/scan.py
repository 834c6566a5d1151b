"""One pass over the images: decode each once, and take from it everything the check needs.

Per image: the decoded pixels' digest, the perceptual hash, the thumbnails that confirm near
copies (``nearcopy.thumb_views``), the displayed size, whether it is grayscale, and (with a
backbone) its pooled features. Images go through in chunks, so only one
chunk of resized pixels is in memory at a time; only the features (float32, N x D) are kept.
A file that no longer decodes is returned in ``bad`` with its reason, never raised.

Example:
    >>> scan = scan_images(ds.paths["train"], ds.decoded)
    >>> scan.phashes.dtype, len(scan.bad)
    (dtype('uint64'), 0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from imgclf.data import BadImage, map_threads, read_image, resize
from imgclf.health.hashing import phash_of, pixel_digest
from imgclf.health.nearcopy import CROPS, THUMB, thumb_views

_CHUNK = 512
_GRAY_TOLERANCE = 8  # channel differences up to this count as gray (JPEG chroma noise)


@dataclass
class Scan:
    pixel_digests: list[str]
    phashes: np.ndarray  # uint64 (N,)
    sizes: np.ndarray  # int (N, 2): width, height as displayed
    gray: np.ndarray  # bool (N,)
    thumbs: np.ndarray  # uint8 (N, len(CROPS), THUMB * THUMB)
    features: np.ndarray | None = None  # float32 (N, D)
    bad: dict[int, str] = field(default_factory=dict)  # index -> reason


def scan_images(paths: Sequence[str], decoded: Mapping | None = None, image_size: int = 0,
                forward: Callable | None = None, max_pixels: int = 64_000_000, workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> Scan:
    """Decode every image once and describe it (see the module doc).

    Args:
        paths: the image files.
        decoded: RGB images already decoded by path (``Dataset.decoded``): not read again.
        image_size: side the forward pass takes (with ``forward``).
        forward: float32 (B, S, S, 3) 0-255 -> (B, D) features, at most 64 images a call; None:
            no features.
        max_pixels: decompression-bomb limit.
        workers: decoding threads.
        progress: called with the number of images done after each chunk.

    Returns:
        Scan, in the order of ``paths``.
    """
    n, decoded = len(paths), decoded or {}
    scan = Scan([""] * n, np.zeros(n, np.uint64), np.zeros((n, 2), np.int64), np.zeros(n, bool),
                np.zeros((n, len(CROPS), THUMB * THUMB), np.uint8))
    for start in range(0, n, _CHUNK):
        idx = range(start, min(n, start + _CHUNK))
        pixels = np.zeros((len(idx), image_size, image_size, 3), np.uint8) if forward else None

        def one(i: int) -> None:
            try:
                img = decoded.get(paths[i])
                img = read_image(paths[i], max_pixels) if img is None else img
            except BadImage as exc:
                scan.bad[i] = exc.reason
                return
            array = np.asarray(img)
            scan.pixel_digests[i] = pixel_digest(array)
            scan.phashes[i] = phash_of(img)
            scan.thumbs[i] = thumb_views(img)
            scan.sizes[i] = img.size
            step = max(1, max(img.size) // 64)
            sample = array[::step, ::step].astype(np.int16)
            scan.gray[i] = bool(np.abs(sample - sample[..., :1]).max() <= _GRAY_TOLERANCE)
            if pixels is not None:
                pixels[i - start] = resize(img, image_size)

        map_threads(one, idx, workers)
        if forward is not None:
            feats = np.concatenate([np.asarray(forward(pixels[b:b + 64].astype(np.float32)), np.float32)
                                    for b in range(0, len(pixels), 64)])
            if scan.features is None:
                scan.features = np.zeros((n, feats.shape[1]), np.float32)
            scan.features[start:start + len(idx)] = feats
        if progress:
            progress(idx[-1] + 1)
    return scan
