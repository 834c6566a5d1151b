"""Hashes that find copies: the file's sha256, the decoded pixels' sha256, a perceptual hash; and
the groups they link (union-find), each told within one split, across splits, conflicting.

The perceptual hash is ``imagehash.phash`` (64 bits from the low frequencies of the image's
DCT): resizing, JPEG re-encoding and a change of brightness move few of its bits. Pairs within
a Hamming distance are found without comparing all N^2 pairs: two hashes at distance <= 3 agree
exactly on at least one of their four 16-bit quarters (pigeonhole), so only images that share a
quarter are compared.

Example:
    >>> pairs = phash_pairs(np.array([phash_of(a), phash_of(b)]), max_distance=3)
"""
from __future__ import annotations

import hashlib

import numpy as np

from imgclf.health.findings import Group

PHASH_DISTANCE = 3  # bits of 64; at most 3 keeps the quarter trick exact (see the module doc)
_BLOCK = 512


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 of decoded 8-bit RGB pixels and their shape: equal for a PNG and a BMP of one image.

    Example:
        >>> pixel_digest(np.zeros((2, 2, 3), np.uint8))[:8]
        'b4a6bd3d'
    """
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def phash_of(img) -> int:
    """The 64-bit perceptual hash of a Pillow image (``imagehash.phash``), as an int."""
    import imagehash
    bits = imagehash.phash(img).hash.reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_pairs(hashes: np.ndarray, max_distance: int = PHASH_DISTANCE) -> np.ndarray:
    """Index pairs (i < j) whose 64-bit hashes differ in at most ``max_distance`` bits.

    Args:
        hashes: uint64 (N,).
        max_distance: 0-3 (the quarter trick is exact up to 3).

    Returns:
        int64 (P, 2), sorted, unique.

    Example:
        >>> phash_pairs(np.array([0, 1, 2**40], np.uint64), 1).tolist()
        [[0, 1]]
    """
    hashes = np.asarray(hashes, np.uint64)
    found = []
    for quarter in range(4):
        keys = (hashes >> np.uint64(16 * quarter)) & np.uint64(0xFFFF)
        order = np.argsort(keys, kind="stable")
        edges = np.flatnonzero(np.diff(keys[order])) + 1
        for members in np.split(order, edges):
            if len(members) > 1:
                found.append(_close_pairs(hashes, members, max_distance))
    if not found:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _close_pairs(hashes: np.ndarray, members: np.ndarray, max_distance: int) -> np.ndarray:
    members = np.sort(members)
    out = []
    for start in range(0, len(members), _BLOCK):
        rows = members[start:start + _BLOCK]
        dist = np.bitwise_count(hashes[rows, None] ^ hashes[None, members])
        r, c = np.nonzero(dist <= max_distance)
        keep = members[c] > rows[r]
        out.append(np.stack([rows[r[keep]], members[c[keep]]], 1))
    return np.concatenate(out).astype(np.int64)


def equal_pairs(keys: list) -> np.ndarray:
    """Pairs linking every item to the first item with the same key (a chain per key is enough
    for union-find); empty keys are ignored.

    Example:
        >>> equal_pairs(["a", "b", "a", "", ""]).tolist()
        [[0, 2]]
    """
    first: dict = {}
    pairs = []
    for i, key in enumerate(keys):
        if not key:
            continue
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return np.array(pairs, np.int64).reshape(-1, 2)


def components(n: int, pairs: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """The component label of every node, and the components of size >= 2 (each sorted), of the
    graph on n nodes with these edges: scipy's ``connected_components`` does the union-find."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if not len(pairs):
        return np.arange(n), []
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero(sizes[label] > 1):
        groups.setdefault(int(label[i]), []).append(int(i))
    return label, list(groups.values())


def build_groups(links: dict[str, np.ndarray], file_digests: list[str], pixel_digests: list[str] | None,
                 labels: list[str], splits: list[str]) -> list[Group]:
    """Duplicate groups from the pairs each check linked (``links``: evidence -> pairs).

    A group's kind is the strongest one all its members share: "exact" (one sha256),
    "pixels" (one pixel digest), else "near". Members are listed train first, then by path order.
    """
    n = len(labels)
    all_pairs = np.concatenate([p for p in links.values() if len(p)] or [np.empty((0, 2), np.int64)])
    label, found = components(n, all_pairs)
    # which checks linked something in each component: one pass over each check's pairs
    linked = {name: set(label[pairs[:, 0]].tolist()) if len(pairs) else set() for name, pairs in links.items()}
    order = {"train": 0, "val": 1, "test": 2}
    groups = []
    for members in found:
        evidence = [name for name in links if int(label[members[0]]) in linked[name]]
        members.sort(key=lambda i: (order.get(splits[i], 3), i))
        if len({file_digests[i] for i in members}) == 1 and file_digests[members[0]]:
            kind = "exact"
        elif pixel_digests and len({pixel_digests[i] for i in members}) == 1 and pixel_digests[members[0]]:
            kind = "pixels"
        else:
            kind = "near"
        groups.append(Group(kind, members, evidence, sorted({splits[i] for i in members}),
                            sorted({labels[i] for i in members})))
    groups.sort(key=lambda g: g.members[0])
    return groups
