"""Writing files so that a crash never leaves half of one, and reading them back leniently.

Every file imgclf writes goes through a temporary name beside it and a rename (``os.replace``),
so a reader sees the old file or the new one, never a mix. A folder (a SavedModel) is staged
the same way. Also where imgclf keeps its user-wide cache (converted weights, TFLite
conversions of frozen models), and the one writer and reader of a ``labels.txt``.

Example:
    >>> write_json_atomic("/tmp/m.json", {"accuracy": 0.9})
    >>> read_json("/tmp/m.json")
    {'accuracy': 0.9}
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from imgclf.errors import ImgclfError

LABELS_FILE = "labels.txt"  # class names, one per line, in label-index order


# What a full disk, a read-only folder or missing permission raise: told to the user, not a bug.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG})


def disk_error(exc: BaseException, path: str | Path | None = None) -> ImgclfError | None:
    """The one-line error for a write that the disk refused (full, read-only, no permission),
    or None for any other exception.

    Example:
        >>> disk_error(OSError(errno.ENOSPC, "No space left on device"), "runs/a/model.keras")
        ImgclfError('runs/a/model.keras: cannot write (No space left on device); files written before are intact')
    """
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    where = path or exc.filename or "a file"
    return ImgclfError(f"{where}: cannot write ({exc.strerror or os.strerror(exc.errno)}); files written "
                       f"before are intact")


@contextlib.contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        error = disk_error(exc, path)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Args:
        path: the final file.
        suffix: an ending the temporary name must keep (Keras insists on ``.keras``/``.h5``).

    Example:
        >>> with atomic_path("/tmp/model.keras", ".keras") as tmp:
        ...     model.save(tmp)
    """
    path = Path(path)
    with _disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artefacts are for sharing
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in for ``path`` only if the block
    succeeds (a previous folder at ``path`` is replaced, and put back if the swap fails).

    Example:
        >>> with atomic_dir("export/saved_model") as tmp:
        ...     tf.saved_model.save(module, str(tmp))
    """
    path = Path(path)
    with _disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        with _swapped_in(path, tmp):
            yield tmp


@contextlib.contextmanager
def _swapped_in(path: Path, tmp: Path) -> Iterator[None]:
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        yield
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; exports are for sharing
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # the swap failed half-way: put the previous folder back
        shutil.rmtree(old, ignore_errors=True)


# The names atomic_path and atomic_dir give their temporary files: ".<final name>." + mkstemp's 8
# random characters (+ a suffix), or ".<final name>.old-<pid>" for a folder being swapped out.
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?:[a-z0-9_]{8}(?:\.[A-Za-z0-9]{1,8})?|old-\d+)$")


def remove_stale_temps(folder: str | Path, finals: Sequence[str] | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed atomic writes left in ``folder``
    (only names of the atomic writers' pattern, optionally only for the final names in
    ``finals``); returns what was removed. Call it only where no other write is under way.

    Example:
        >>> remove_stale_temps("runs/flowers")
        [PosixPath('runs/flowers/.checkpoint.npz.k2j4_x0a.npz')]
    """
    removed = []
    try:
        children = sorted(Path(folder).iterdir())
    except OSError:
        return removed
    for child in children:
        match = _TEMP_NAME.match(child.name)
        if match and (finals is None or match["final"] in finals):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename.

    Example:
        >>> write_text_atomic("/tmp/labels.txt", "cat\\ndog\\n")
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Example:
        >>> write_bytes_atomic("/tmp/x.bin", b"\\x00")
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically.

    Example:
        >>> write_json_atomic("/tmp/m.json", {"accuracy": 0.9})
    """
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when the file is missing, unreadable, not JSON or
    not an object: for records that are optional (a run's metrics, an export's sidecar).

    Example:
        >>> read_json("/nonexistent.json")
        {}
    """
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def user_cache_dir() -> Path:
    """Where imgclf keeps what it can rebuild (converted weights, TFLite conversions):
    ``$IMGCLF_CACHE_DIR``, ``$XDG_CACHE_HOME/imgclf`` or ``~/.cache/imgclf``, read now (not at
    import). It may not exist yet.

    Example:
        >>> user_cache_dir()
        PosixPath('/home/me/.cache/imgclf')
    """
    if os.environ.get("IMGCLF_CACHE_DIR"):
        return Path(os.environ["IMGCLF_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "imgclf"
    return Path.home() / ".cache" / "imgclf"


def save_labels(folder: str | Path, class_names: Sequence[str]) -> Path:
    """Write ``folder/labels.txt``: class names, one per line, in label-index order, atomically.

    The one writer of a labels file: the run's, the one beside exported models, and the one in
    a SavedModel's assets all come from here.

    Example:
        >>> save_labels("runs/flowers", ["daisy", "rose"])
        PosixPath('runs/flowers/labels.txt')
    """
    path = Path(folder) / LABELS_FILE
    write_text_atomic(path, "".join(f"{name}\n" for name in class_names))
    return path


def load_labels(path: str | Path) -> list[str] | None:
    """The class names in a labels file, or None when it is missing, unreadable or empty.

    Example:
        >>> load_labels("runs/flowers/labels.txt")
        ['daisy', 'rose']
    """
    try:
        names = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
    except (OSError, UnicodeDecodeError):
        return None
    return names or None
