"""Find the images and their labels in the layouts imgclf accepts; decode nothing.

Three on-disk layouts are told apart automatically:

* ``class-folders``: ``root/<class>/**/<image>``; the split is carved by data.load_dataset.
* ``split-folders``: ``root/train/<class>/...`` plus optional ``val/`` (or ``valid/``,
  ``validation/``) and ``test/``, each holding the same class folders.
* ``csv``: a file of ``path,label[,split]`` rows, header optional (with a header, columns go
  by name, so ``split,path,label`` as written by data.save_split reads back too).

Nothing is dropped silently: hidden files and folders, files without an image extension
and stray files outside class folders are returned as ``skipped`` with a reason.

Example:
    >>> found = find_images("photos")
    >>> found.layout, found.class_names
    ('class-folders', ['cat', 'dog'])
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.data.images import IMAGE_EXTENSIONS, file_kind

DATASET_MARKER = ".imgclf-dataset.json"  # left by `imgclf datasets`; not data, never listed

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_HEADER_PATH = ("path", "file", "filename", "filepath", "image")


@dataclass
class Found:
    """What a layout holds: ``entries`` are (path, label, split or None) before decoding."""

    layout: str
    root: str
    class_names: list[str] | None  # sorted folder names, or sorted CSV labels
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_images(path: str | os.PathLike) -> Found:
    """Detect the layout at ``path`` and list every candidate image with its label.

    Args:
        path: a folder (class folders, or train/val/test folders) or a ``.csv`` file.

    Returns:
        Found with the layout name, class names (folder layouts), entries and skipped files.

    Raises:
        ImgclfError: missing path, no images, a single class, an empty class folder, a
            malformed CSV line; each message names the path (and line).

    Example:
        >>> find_images("data/split.csv").layout
        'csv'
    """
    root = Path(path).absolute()
    if not root.exists():
        raise ImgclfError(f"{path}: no such file or folder")
    try:
        return _find(root, path)
    except OSError as exc:  # e.g. a folder without read permission
        raise ImgclfError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})") from None


def _find(root: Path, path) -> Found:
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ImgclfError(f"{path}: expected a folder of class folders or a .csv file of path,label rows")
        return _read_csv(root)
    split_dirs = _split_dirs(root)
    if "train" in split_dirs:
        return _split_folders(root, split_dirs)
    found = Found("class-folders", str(root), None)
    found.class_names = _scan_classes(root, None, found)
    return found


def _split_dirs(root: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if split and child.is_dir():
            if split in dirs:
                raise ImgclfError(f"{root}: both {dirs[split].name}/ and {child.name}/; keep one {split} folder")
            dirs[split] = child
    return dirs


def _split_folders(root: Path, split_dirs: dict[str, Path]) -> Found:
    found = Found("split-folders", str(root), None)
    for child in sorted(root.iterdir()):
        if child not in split_dirs.values() and child.name != DATASET_MARKER:
            reason = "hidden" if child.name.startswith(".") else "not in train/, val/ or test/"
            found.skipped.append((str(child), reason))
    found.class_names = _scan_classes(split_dirs["train"], "train", found)
    for split in ("val", "test"):
        if split in split_dirs:
            extra = sorted(set(_scan_classes(split_dirs[split], split, found, 0)) - set(found.class_names))
            if extra:
                raise ImgclfError(f"{split_dirs[split] / extra[0]}: class '{extra[0]}' is not in {split_dirs['train']}")
    return found


def _scan_classes(folder: Path, split: str | None, found: Found, min_classes: int = 2) -> list[str]:
    """Class folders of ``folder``, their images appended to ``found``; checks emptiness."""
    classes, empty, loose = [], [], 0
    for child in sorted(folder.iterdir()):
        if child.name == DATASET_MARKER:
            continue  # written by `imgclf datasets` beside the class folders; not data
        if child.name.startswith("."):
            found.skipped.append((str(child), "hidden"))
        elif child.is_dir():
            before = len(found.entries)
            _scan_files(child, child.name, split, found)
            classes.append(child.name)
            if len(found.entries) == before:
                empty.append(child)
        else:
            loose += child.suffix.lower() in IMAGE_EXTENSIONS
            found.skipped.append((str(child), "not inside a class folder"))
    if len(empty) == len(classes) and min_classes:
        where = f" ({loose} images lie directly in it: put them in one folder per class)" if loose else ""
        raise ImgclfError(f"{folder}: no images found in class folders{where}; looked for {', '.join(IMAGE_EXTENSIONS)}")
    if len(classes) < min_classes:
        raise ImgclfError(f"{folder}: only one class folder ('{classes[0]}'); a classifier needs at least two classes")
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise ImgclfError(f"{empty[0]}: empty class folder{more}; add images or remove it")
    return classes


def _scan_files(folder: Path, label: str, split: str | None, found: Found) -> None:
    """Every image file below ``folder`` (nested folders too), in sorted order."""
    def unreadable(exc: OSError) -> None:
        found.skipped.append((str(exc.filename), f"cannot read ({exc.strerror or exc})"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames.sort()
        for name in [d for d in dirnames if d.startswith(".")]:
            found.skipped.append((os.path.join(dirpath, name), "hidden"))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                found.skipped.append((path, "hidden"))
            elif os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                found.skipped.append((path, "not an image extension"))
            elif (kind := _kind(path, found)) is None:
                found.entries.append((path, label, split))
            elif kind:
                found.skipped.append((path, f"not a regular file ({kind})"))


def _kind(path: str, found: Found) -> str | None:
    """file_kind(path), or "" after noting an unreadable path (a dangling link) in skipped."""
    try:
        return file_kind(path)
    except OSError as exc:
        found.skipped.append((path, f"cannot read ({exc.strerror or exc})"))
        return ""


def _read_csv(path: Path) -> Found:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImgclfError(f"{path}: not a UTF-8 text CSV file") from None
    except OSError as exc:
        raise ImgclfError(f"{path}: cannot read ({exc.strerror or exc})") from None
    found = Found("csv", str(path), None)
    reader = csv.reader(io.StringIO(text))
    columns: list[str] | None = None
    first_line: dict[str, int] = {}  # path -> the line that listed it first
    labels: set[str] = set()  # every label, even of missing files: a class must not vanish
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if columns is None and not first_line and _is_header(row):  # only the first row
                columns = _header_columns(row, path, line)
                continue
            labels.add(_add_csv_row(row, columns, path, line, found, first_line))
    except csv.Error as exc:
        raise ImgclfError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not labels:
        raise ImgclfError(f"{path}: no rows; expected path,label[,split] lines")
    found.class_names = sorted(labels)
    return found


def _is_header(row: list[str]) -> bool:
    cells = {cell.strip().lower() for cell in row}
    return "label" in cells and bool(cells & set(_HEADER_PATH))


def _header_columns(row: list[str], path: Path, line: int) -> list[str]:
    cells = [cell.strip().lower() for cell in row]
    cells = ["path" if cell in _HEADER_PATH else cell for cell in cells]
    if cells.count("path") != 1 or cells.count("label") != 1:
        raise ImgclfError(f"{path}: line {line}: header needs exactly one path and one label column")
    return cells


def _add_csv_row(row, columns, path: Path, line: int, found: Found, first_line: dict[str, int]) -> str:
    if columns is None:
        if len(row) not in (2, 3):
            raise ImgclfError(f"{path}: line {line}: expected path,label[,split], got {len(row)} field(s)")
        cells = dict(zip(("path", "label", "split"), (cell.strip() for cell in row)))
    else:
        if len(row) != len(columns):
            raise ImgclfError(f"{path}: line {line}: expected {len(columns)} fields like the header, got {len(row)}")
        cells = {name: cell.strip() for name, cell in zip(columns, row)}
    image, label, split_text = cells["path"], cells["label"], cells.get("split", "")
    if not image or not label:
        raise ImgclfError(f"{path}: line {line}: empty {'path' if not image else 'label'}")
    split = SPLIT_ALIASES.get(split_text.lower()) if split_text else None
    if split_text and split is None:
        raise ImgclfError(f"{path}: line {line}: split must be train, val or test, got '{split_text}'")
    full = os.path.normpath(os.path.join(path.parent, image))  # absolute paths stay absolute
    if full in first_line:
        found.skipped.append((full, f"listed again on line {line} (first on line {first_line[full]})"))
    elif not os.path.isfile(full):
        found.skipped.append((full, f"file not found (line {line})"))
        first_line[full] = line
    else:
        found.entries.append((full, label, split))
        first_line[full] = line
    return label
