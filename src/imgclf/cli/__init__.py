"""The ``imgclf`` command: arguments (``parser``), subcommands (``commands``), and ``main``,
which turns every ImgclfError into one line on stderr and exit status 2.

Owns nothing else; it is the one place (with ``imgclf.workflow``) that may import every stage.

Example:
    $ imgclf train data/fashion --epochs 5 --image-size 96
    $ imgclf predict runs/fashion shoe.png --top-k 3
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from imgclf.cli.parser import build_parser
from imgclf.errors import ImgclfError
from imgclf.files import disk_error

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imgclf`` command; returns the exit status.

    Example:
        >>> main(["backbones"])
        0
    """
    from imgclf.cli.commands import COMMANDS
    started = time.monotonic()  # the budget of `imgclf train --budget` counts from here
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    if not args.command:
        parser.print_help()
        return 0
    if argv is None:  # the process's own command: Ctrl-C must end it, whatever it is doing
        signal.signal(signal.SIGINT, _interrupt)
    try:
        # Process-wide settings (TensorFlow's quiet import) are made by the commands, never at
        # import of the package.
        return COMMANDS[args.command](args)
    except ImgclfError as exc:
        print(f"imgclf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        if argv is None:  # the process's own command: end it now
            _exit_now(130)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a full disk or a read-only folder outside the atomic writers
        error = disk_error(exc, None if exc.filename else _output_of(args))
        if error is None:
            raise
        print(f"imgclf: error: {error}", file=sys.stderr)
        return 2


def _output_of(args) -> str | None:
    """Where the command writes, to name in a disk error that carries no file name."""
    for name in ("out", "output", "runs_dir", "run"):
        if getattr(args, name, None):
            return str(getattr(args, name))
    return None


def _interrupt(signum, frame) -> None:
    """SIGINT: raise KeyboardInterrupt as usual (every ``finally`` runs, main prints one line),
    and make sure the process ends within a second even where that exception is lost (raised
    inside a finalizer, or caught by a library)."""
    def force() -> None:
        print("imgclf: interrupted", file=sys.stderr)
        _exit_now(130)
    timer = threading.Timer(1.0, force)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _exit_now(status: int) -> None:
    """Leave without the interpreter's shutdown: worker threads (a decoder pool, TensorFlow's)
    would be joined first, and TensorFlow's teardown takes seconds; Ctrl-C must end at once.
    Every ``finally`` between the interrupt and here has run (temporary files are removed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
