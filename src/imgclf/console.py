"""What a person sees on the terminal before and while imgclf works.

TensorFlow 2.21 writes C++ log lines to file descriptor 2 while it is imported
(``WARNING: All log messages before absl::InitializeLog() is called...`` and ``oneDNN custom
operations are on...``, twice), and ``TF_CPP_MIN_LOG_LEVEL`` does not stop them. The command
line imports TensorFlow through ``import_tensorflow_quietly`` so that the first line a user
sees is ours; everything else written during the import (Python warnings, a real error) is
passed on. Importing this module changes nothing.

Example:
    >>> import_tensorflow_quietly()   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# TensorFlow's start-up lines: absl's preamble, absl INFO lines ("I0000 00:00:17.. 123 port.cc:153]
# ..."), and the continuation of cpu_feature_guard's INFO line.
NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"
                   r"|I\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
                   r"|To enable the following instructions: .* in other operations, rebuild TensorFlow")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 (what C++ libraries write to) to a temporary file for the block,
    then write back every line of it that is not TensorFlow's start-up noise (NOISE).

    Example:
        >>> with quiet_native_stderr():
        ...     import tensorflow
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not NOISE.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (once) without its C++ start-up lines; a no-op once it is imported.

    Example:
        >>> import_tensorflow_quietly()   # doctest: +SKIP
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ INFO/WARNING lines too
    with quiet_native_stderr():
        import tensorflow  # noqa: F401
