"""Batch prediction into files: the CSV / JSON-lines rows, shards that resume, and their merge.

``imgclf predict RUN FOLDER --shard I/N --out preds-I.csv`` predicts shard I of N of the input
list (``data.shards``) into ``preds-I.csv``. Each image's rows are appended with one
``write()`` and flushed, so a killed shard leaves whole images behind (at worst a torn last
line). Run again, it keeps the whole batches already written, cuts off the rest and predicts it
again (a batch's floats depend on the images it ran with, so a resumed file holds what one
unbroken run writes), and each image appears exactly once.
``--merge preds-*.csv --out all.csv`` puts the shards' rows in input order into one file, byte
for byte what one process writes, and refuses when an image is missing or appears twice.

Example:
    >>> out = ShardOutput("preds-1.csv", "csv", paths, ranks=5, batch=64)
    >>> for row in clf.predict_paths(out.todo()):
    ...     out.write(row)
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from imgclf.errors import ImgclfError
from imgclf.files import write_text_atomic

CSV_HEADER = ["path", "rank", "label", "probability", "error"]


def header(fmt: str) -> str:
    """The text that opens a file of this format ("" for JSON lines)."""
    return _csv_text([CSV_HEADER]) if fmt == "csv" else ""


def row_text(row: dict, fmt: str) -> str:
    """One image's prediction as complete lines of ``fmt`` ("csv": one line per rank, or one
    with the error; "json": one object per line), ending in a newline.

    Example:
        >>> row_text({"path": "a.png", "top": [("cat", 0.9)], "error": None, "label": "cat"}, "json")
        '{"path": "a.png", "error": null, "label": "cat", "top": [{"label": "cat", "probability": 0.9}]}\\n'
    """
    if fmt == "json":
        return json.dumps({"path": row["path"], "error": row["error"], "label": row.get("label"),
                           "top": [{"label": c, "probability": round(p, 6)} for c, p in row["top"]]}) + "\n"
    if row["error"]:
        return _csv_text([[row["path"], "", "", "", row["error"]]])
    return _csv_text([[row["path"], rank, label, f"{prob:.6f}", ""] for rank, (label, prob) in enumerate(row["top"], 1)])


def format_for_file(path: str | Path, fmt: str | None) -> str:
    """The output format for ``--out path``: ``fmt`` when given, else from the suffix."""
    suffix = Path(path).suffix.lower()
    fmt = fmt or {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(suffix)
    if fmt not in ("csv", "json"):
        raise ImgclfError(f"--out {path}: give --format csv or json (or a .csv / .json / .jsonl name)")
    return fmt


class ShardOutput:
    """An output file that resumes: the images of ``paths`` not yet in it, and appending rows.

    Args:
        path: the file (created with its header if missing).
        fmt: "csv" or "json".
        paths: this shard's images, in order; a file naming any other image is refused.
        ranks: rows per readable image in a CSV (top-k, at most the number of classes).
        batch: images predicted together; a resumed file keeps a multiple of it.
    """

    def __init__(self, path: str | Path, fmt: str, paths: Sequence[str], ranks: int, batch: int = 1):
        self.path, self.fmt, self.paths, self.ranks = Path(path), fmt, [str(p) for p in paths], ranks
        self.batch = batch
        self.done = self._resume()

    def _resume(self) -> int:
        """Cut the file back to its last whole batch; return how many images it keeps."""
        lines = _lines(self.path) if self.path.exists() else []
        torn = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        head = header(self.fmt)
        if not lines:
            if torn and not head.startswith(torn):
                raise ImgclfError(f"{self.path}: not an imgclf {self.fmt} output; remove it or choose another --out")
            _write_all(self.path, head, "w")
            return 0
        if head and lines[0] != head:
            raise ImgclfError(f"{self.path}: not an imgclf {self.fmt} output (its first line differs); "
                              f"remove it or choose another --out")
        groups = _groups(lines[1:] if head else lines, self.fmt, self.path)
        short = next((path for path, group in groups[:-1] if not self._whole(group)), None)
        if short is not None:
            raise ImgclfError(f"{self.path}: {short} has other than {self.ranks} ranks; the file was written "
                              f"with another --top-k (or by hand): remove it or choose another --out")
        if groups and not self._whole(groups[-1][1]):
            groups.pop()  # the last image's rows were cut short (a full disk): predict it again
        if len(groups) < len(self.paths):
            del groups[len(groups) // self.batch * self.batch:]  # a part batch runs again whole
        kept = [path for path, _ in groups]
        if kept != self.paths[:len(kept)]:
            first = next((k for k, e in zip(kept + [""], self.paths + [""]) if k != e))
            raise ImgclfError(f"{self.path}: holds predictions for other images than this shard's (first: "
                              f"{first}); it was written for another shard, input, order or --top-k")
        size = len(head.encode()) + sum(len("".join(g).encode()) for _, g in groups)
        with open(self.path, "r+b") as f:
            f.truncate(size)
        return len(kept)

    def _whole(self, group: list[str]) -> bool:
        if self.fmt == "json":
            row = json.loads(group[0])
            return row["error"] is not None or len(row["top"]) == self.ranks
        return len(group) == self.ranks or (len(group) == 1 and _is_error(group[0], "csv"))

    def todo(self) -> list[str]:
        """The images still to predict, in order."""
        return self.paths[self.done:]

    def write(self, row: dict) -> None:
        """Append one image's rows in one write, flushed to the operating system."""
        _write_all(self.path, row_text(row, self.fmt), "a")


def merge(paths: Sequence[str], shard_files: Iterable[str | Path], out: str | Path, fmt: str) -> int:
    """Merge shard outputs into ``out`` (written atomically), rows in the order of ``paths``.

    Args:
        paths: every input image, in input order (the list the shards split).
        shard_files: the shard outputs, any order.
        out: the merged file.
        fmt: "csv" or "json"; every shard file must be of it.

    Returns:
        How many images had an error row (unreadable files).

    Raises:
        ImgclfError: an image in no shard file or in two, an image not in ``paths``, or a
            shard file that is not an imgclf output of ``fmt``.

    Example:
        >>> merge(sorted_paths, ["preds-1.csv", "preds-2.csv"], "all.csv", "csv")
        0
    """
    found: dict[str, tuple[str, Path]] = {}
    for file in map(Path, shard_files):
        if not file.is_file():
            raise ImgclfError(f"--merge {file}: no such file")
        lines, head = _lines(file), header(fmt)
        if head and (not lines or lines[0] != head):
            raise ImgclfError(f"--merge {file}: not an imgclf {fmt} output (its first line differs)")
        if lines and not lines[-1].endswith("\n"):
            raise ImgclfError(f"--merge {file}: its last line is cut off; run its shard again to finish it")
        for path, group in _groups(lines[1:] if head else lines, fmt, file):
            if path in found:
                raise ImgclfError(f"--merge: {path} appears in both {found[path][1]} and {file}")
            found[path] = ("".join(group), file)
    missing = [p for p in map(str, paths) if p not in found]
    if missing:
        raise ImgclfError(f"--merge: {len(missing)} of {len(paths)} images have no prediction in the shard "
                          f"files (first: {missing[0]}); finish every shard first")
    extra = set(found) - set(map(str, paths))
    if extra:
        raise ImgclfError(f"--merge: {sorted(extra)[0]} is in a shard file but not in the input")
    texts = [found[str(p)][0] for p in paths]
    write_text_atomic(out, header(fmt) + "".join(texts))
    return sum(_is_error(text, fmt) for text in texts)


def _csv_text(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)  # csv's own "\r\n", as on stdout: a file equals the printed output
    return buf.getvalue()


def _lines(path: Path) -> list[str]:
    """The file's lines, each with its ending ("\\n" or "\\r\\n"); a torn last line has none."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgclfError(f"{path}: cannot be read as a prediction output ({exc})") from None
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _groups(lines: list[str], fmt: str, file: Path) -> list[tuple[str, list[str]]]:
    """Consecutive complete lines grouped by image path: [(path, lines)], in file order."""
    groups: list[tuple[str, list[str]]] = []
    for number, line in enumerate(lines, 2 if fmt == "csv" else 1):
        path = _path_of(line, fmt, file, number)
        if groups and groups[-1][0] == path and fmt == "csv":
            groups[-1][1].append(line)
        else:
            groups.append((path, [line]))
    return groups


def _path_of(line: str, fmt: str, file: Path, number: int) -> str:
    try:
        if fmt == "json":
            return str(json.loads(line)["path"])
        return next(csv.reader([line]))[0]
    except (ValueError, KeyError, TypeError, IndexError, StopIteration):
        raise ImgclfError(f"{file}:{number}: not a line of an imgclf {fmt} output") from None


def _is_error(text: str, fmt: str) -> bool:
    if fmt == "json":
        return json.loads(text)["error"] is not None
    return bool(next(csv.reader([text.split("\n", 1)[0]]))[4])


def _write_all(path: Path, text: str, mode: str) -> None:
    """Write ``text`` with one os.write where the kernel takes it whole (it does for a regular
    file unless the disk is full), so a kill leaves no half image."""
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o666)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise ImgclfError(f"{path}: cannot write ({exc.strerror or exc})") from None
