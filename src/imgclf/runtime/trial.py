"""A trial run of a model file in a child process, before this process opens it.

A corrupt or hostile ``.tflite`` can make LiteRT's native code crash (a segfault, found by the
fuzz suite), which no Python handler can turn into a one-line error: the process just dies.
So a model file is first opened, checked against the memory limit, allocated and run once on
zeros in a child; a child killed by a signal (or one that does not finish in time) means the
file is refused in one line, and this process never touches it. Everything else (a valid
model, or one the interpreter rejects with a Python exception) is left to the caller, whose
own errors name the problem.

Example:
    >>> trial_run("model.tflite")  # returns, or raises ImgclfError for a model that crashes LiteRT
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from imgclf.errors import ImgclfError

TRIAL_TIMEOUT_S = 60.0
TRIAL_ENV = "IMGCLF_MODEL_TRIAL"  # "0" skips the trial (a model you built and trust; saves ~1 s)

# Runs in the child: open, bound the memory (exit 3, nothing allocated), allocate, run once.
_CHILD = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from imgclf.runtime.litert import max_model_bytes, tensor_bytes
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
if tensor_bytes(interpreter) > max_model_bytes():
    sys.exit(3)
for detail in interpreter.get_input_details():
    shape = [1 if int(d) < 1 else int(d) for d in detail["shape_signature"]]
    interpreter.resize_tensor_input(detail["index"], shape)
interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
"""


def trial_run(path: str | os.PathLike, timeout_s: float = TRIAL_TIMEOUT_S) -> None:
    """Open and run the ``.tflite`` at ``path`` once in a child process.

    Raises:
        ImgclfError: the child was killed by a signal (the model crashes the interpreter) or
            ran longer than ``timeout_s``.
    """
    if os.environ.get(TRIAL_ENV) == "0":
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ImgclfError(f"{path}: one run of this TFLite model on a single image took more than "
                          f"{timeout_s:.0f} s; refusing a corrupt or hostile model") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ImgclfError(f"{path}: this TFLite model crashes the LiteRT interpreter ({name} in a trial run); "
                          "refusing a corrupt or hostile model")
