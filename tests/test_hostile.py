"""Hostile inputs (issue 18): files that are not files, tiny classes, corrupt models and
checkpoints, full or read-only disks. Each ends in one line, never a hang or a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import _corpus
from imgclf import data
from imgclf.data.images import BadImage, read_image


def _cli(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "imgclf", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


@pytest.fixture
def hostile(tmp_path):
    """Class folders with a FIFO, a link to a FIFO, a link to a device and a folder named x.png."""
    root = _corpus.write_classes(tmp_path / "d", per_class=6)
    os.mkfifo(root / "apple" / "fifo.png")
    os.symlink(root / "apple" / "fifo.png", root / "grape" / "link.png")
    os.symlink("/dev/zero", root / "lime" / "zero.png")
    (root / "lime" / "dir.png").mkdir()
    os.symlink(tmp_path / "missing.png", root / "lime" / "dangling.png")
    return root


def test_non_regular_files_are_skipped_with_a_reason_never_opened(hostile):
    ds = data.load_dataset(hostile, seed=1, workers=2)
    skipped = dict(ds.report.skipped)
    assert skipped[str(hostile / "apple" / "fifo.png")] == "not a regular file (a FIFO)"
    assert skipped[str(hostile / "grape" / "link.png")] == "not a regular file (a FIFO)"
    assert skipped[str(hostile / "lime" / "zero.png")] == "not a regular file (a device)"
    assert skipped[str(hostile / "lime" / "dangling.png")].startswith("cannot read")
    assert sum(len(p) for p in ds.paths.values()) == 18


def test_inspect_on_a_fifo_finishes(hostile):
    out = _cli("inspect", hostile, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "not a regular file (a FIFO)" in out.stdout + out.stderr


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "dir"])
def test_the_decoder_never_opens_a_non_regular_file(tmp_path, target):
    path = tmp_path / "x.png"
    if target == "fifo":
        os.mkfifo(path)
    elif target == "dir":
        path.mkdir()
    else:
        os.symlink(target, path)
    with pytest.raises(BadImage, match="not a regular file"):
        read_image(path)
