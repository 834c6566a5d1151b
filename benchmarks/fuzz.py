"""Fuzz imgclf's readers for N minutes per target; reports cases tried and failures.

The targets are tests/_fuzz.py's (the bounded run in tests/test_fuzz.py uses the same ones):
mutated or truncated images through the decoder, .tflite and .keras files through load and one
prediction, checkpoint.npz through load_checkpoint, request bodies through the server's reader.
A failure is any exception other than our one-line errors, a multi-line message, or a case
slower than --case-seconds.

    PYTHONPATH=src python benchmarks/fuzz.py --minutes 2 [--target tflite] [--keep crashes/]
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _fuzz  # noqa: E402


def _flips(rng: random.Random):
    return [(rng.randrange(2**20), rng.randrange(256)) for _ in range(rng.randint(1, 8))]


def _cut(rng: random.Random):
    return rng.randrange(2**20) if rng.random() < 0.3 else None


def _keeping(case, path: Path, keep: Path | None):
    """``case`` that copies its input file (``path``) into ``keep`` when the trial child crashed."""
    def run(rng):
        try:
            case(rng)
        except _fuzz.EXPECTED as exc:
            if keep is not None and "crashes the LiteRT interpreter" in str(exc):
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, keep / f"crash-{len(list(keep.iterdir())):03d}{path.suffix}")
            raise
    return run


def targets(folder: Path, keep: Path | None = None) -> dict:
    """name -> case(rng): each mutates its seed and runs it through its reader; with ``keep``,
    inputs that crash the trial child (a native crash in LiteRT) are copied there."""
    model = _fuzz.tiny_model()
    images, tflite = _fuzz.image_seeds(), _fuzz.tflite_seed(model)
    keras, checkpoint = _fuzz.keras_seed(model, folder), _fuzz.checkpoint_seed(folder)
    bodies = _fuzz.body_seeds(images["png"])
    return {
        "images": lambda r: _fuzz.decode(_fuzz.mutate(images[r.choice(sorted(images))], _flips(r), _cut(r))),
        "tflite": _keeping(lambda r: _fuzz.load_model_file(_fuzz.mutate(tflite, _flips(r), _cut(r)), folder / "m.tflite"),
                           folder / "m.tflite", keep),
        "keras": lambda r: _fuzz.load_model_file(_fuzz.zip_member_mutate(keras, r.randrange(10), _flips(r), _cut(r)),
                                                 folder / "m.keras"),
        "checkpoint": lambda r: _fuzz.load_checkpoint_bytes(
            _fuzz.zip_member_mutate(checkpoint, r.randrange(10), _flips(r), _cut(r)) if r.random() < 0.5
            else _fuzz.mutate(checkpoint, _flips(r), _cut(r)), folder),
        "bodies": lambda r: _fuzz.read_request(*(lambda kind: (kind[0], _fuzz.mutate(kind[1], _flips(r), _cut(r))))(
            bodies[r.choice(sorted(bodies))])),
    }


def run(name: str, case, seconds: float, case_seconds: float, seed: int) -> dict:
    rng, tried, failures, slowest = random.Random(seed), 0, [], 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            case(rng)
        except _fuzz.EXPECTED as exc:
            if "\n" in str(exc):
                failures.append(f"multi-line: {exc!r}"[:300])
        except Exception:  # noqa: BLE001 -- exactly what the fuzz run looks for
            failures.append(traceback.format_exc()[-900:])  # the innermost frames: where it broke
        took = time.monotonic() - start
        slowest = max(slowest, took)
        if took > case_seconds:
            failures.append(f"slow case: {took:.1f} s")
        tried += 1
    return {"target": name, "cases": tried, "failures": len(failures), "slowest_s": round(slowest, 3),
            "examples": failures[:3]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="per target")
    parser.add_argument("--target", action="append", help="only these (default: all)")
    parser.add_argument("--case-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="copy .tflite inputs that crash LiteRT's native code here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = targets(Path(tmp), args.keep)
        bad = 0
        for name in args.target or list(table):
            result = run(name, table[name], args.minutes * 60, args.case_seconds, args.seed)
            bad += result["failures"]
            print(f"{name:<11} {result['cases']:>7} cases  {result['failures']} failures  "
                  f"slowest {result['slowest_s']} s", flush=True)
            for example in result["examples"]:
                print("   ", example.replace("\n", "\n    "))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
