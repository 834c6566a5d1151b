"""The run directory: what is written where, always atomically.

Layout of ``runs/<name>/``::

    config.yaml        the resolved config, written before training starts
    labels.txt         class names, one per line, in label-index order
    split.csv          split,path,label for every image used (reproducible, auditable)
    data_report.json   classes, counts, sizes, skipped files with reasons
    model.keras        the trained classifier (best weights), preprocessing inside
    history.csv        one row per epoch of both phases
    metrics.json       test-set metrics
    plots/*.png        training curves, confusion matrices, per-class scores, mistakes
    report.html        everything above in one self-contained page
    logs/              TensorBoard event files
    run.json           time, image size, backbone, training path and cache sizes
    checkpoint.npz     the training state after the last epoch (removed once complete)
    cache/             feature caches over the memory budget (train.cache_memory_mb)
    export/            exported models, their labels and self-check metrics
    COMPLETE           written last; a run without it is incomplete
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from imgclf.errors import ImgclfError

COMPLETE = "COMPLETE"


@contextmanager
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Example:
        >>> write_text_atomic("/tmp/labels.txt", "cat\\ndog\\n")
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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


def read_labels(run_dir: str | Path) -> list[str]:
    """The class names saved with a run, in label-index order.

    Example:
        >>> read_labels("runs/flowers")
        ['daisy', 'rose']
    """
    path = Path(run_dir) / "labels.txt"
    try:
        return [line for line in path.read_text().splitlines() if line]
    except OSError:
        raise ImgclfError(f"{path}: missing; is {run_dir} a run directory?") from None


def write_labels(run_dir: str | Path, class_names: list[str]) -> None:
    """Save class names, one per line, atomically.

    Example:
        >>> write_labels("runs/flowers", ["daisy", "rose"])
    """
    write_text_atomic(Path(run_dir) / "labels.txt", "".join(f"{name}\n" for name in class_names))


def check_complete(run_dir: str | Path) -> Path:
    """Return ``run_dir`` as a Path if it is a finished run, else raise a clear ImgclfError.

    Example:
        >>> check_complete("runs/flowers")
        PosixPath('runs/flowers')
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ImgclfError(f"{run_dir}: no such run directory")
    if not (run_dir / COMPLETE).is_file() and (run_dir / "config.yaml").is_file():
        raise ImgclfError(f"{run_dir}: run is incomplete (interrupted before every artefact was written); "
                          f"resume it with: imgclf train --resume {run_dir}")
    if not (run_dir / "model.keras").is_file():
        raise ImgclfError(f"{run_dir}: no model.keras; not a run directory, or training never finished")
    if not (run_dir / COMPLETE).is_file():
        raise ImgclfError(f"{run_dir}: run is incomplete (interrupted before every artefact was written)")
    return run_dir


def unique_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new run directory ``runs_dir/name``, or ``name-2``, ``name-3``... if taken.

    Example:
        >>> unique_run_dir("runs", "flowers")
        PosixPath('runs/flowers')
    """
    base = Path(runs_dir)
    candidate, n = base / name, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    candidate.mkdir(parents=True)
    return candidate
