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
# ..."), the continuation of cpu_feature_guard's INFO line, XNNPACK's greeting, and the TFLite
# converter's own warnings ("Ignored output_format.", "Skipping runtime version metadata ...") and
# its quantizer's settings line ("fully_quantize: 0, inference_type: 6, ...") on every conversion.
NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called"
                   r"|I\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "
                   r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
                   r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
                   r"|W\d{4} [\d:.]+\s+\d+ (tf_tfl_flatbuffer_helpers|flatbuffer_export)\.cc:\d+\] "
                   r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$")


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


class PhaseProgress:
    """What a training phase shows while it runs.

    On a terminal: one progress bar for the whole phase (rich), its label the epoch, loss and
    accuracy so far, with each finished epoch's line printed above it. Anywhere else (a log
    file, CI, nohup): one plain line per epoch and no control characters. Nothing when quiet.

    Example:
        >>> with PhaseProgress("head", epochs=8, steps=29, verbose=True) as progress:
        ...     progress.batch(1, loss=0.9, accuracy=0.7)
        ...     progress.epoch_done("head 1/8  loss 0.9000  acc 0.7000")
    """

    def __init__(self, name: str, epochs: int, steps: int | None, verbose: bool, stream=None):
        self.name, self.epochs, self.verbose = name, epochs, verbose
        self.stream = stream or sys.stdout
        self.live = verbose and getattr(self.stream, "isatty", lambda: False)()
        self._progress = self._task = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(file=self.stream), transient=True)
            self._task = self._progress.add_task(name, total=epochs * steps if steps else None)

    def __enter__(self):
        if self._progress is not None:
            self._progress.start()
        return self

    def batch(self, epoch: int, loss: float, accuracy: float) -> None:
        """One more batch of epoch ``epoch`` (1-based) done; the running loss and accuracy."""
        if self._progress is not None:
            label = f"{self.name} {epoch}/{self.epochs}  loss {loss:.4f}  acc {accuracy:.4f}"
            self._progress.update(self._task, advance=1, description=label)

    def resize(self, epochs: int) -> None:
        """The phase now runs ``epochs`` epochs (the budget re-fitted it)."""
        if epochs != self.epochs and self._progress is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, total=task.total and task.total * epochs // self.epochs)
        self.epochs = epochs

    def epoch_done(self, line: str) -> None:
        """A finished epoch's line: above the bar on a terminal, else on its own."""
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False)
        elif self.verbose:
            print(line, file=self.stream, flush=True)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False
