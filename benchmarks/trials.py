"""Recipe trials for the planner: does a change help on **validation** across several datasets?

Each trial is a set of extra flags on top of one fixed base recipe per dataset (so neither the
planner nor a deadline changes anything between trials); every (dataset, trial) pair is one
`imgclf train DATA --quiet BASE TRIAL` in a child process. The table gives the best epoch's
validation accuracy (the weights kept) and, only reported, test accuracy. A trial is worth
adopting only where it helps validation on at least three of the datasets. A run that predicts
with the test-time flip also gives its validation accuracy without it (the same weights, in
run.json), and is compared with that: ``[without: ...]`` in its cell.

Example:
    $ python benchmarks/trials.py fm3k=/work/data/fm3k digits=/work/data/digits --out /tmp/trials.json
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = ["--image-size", "96", "--views", "2", "--fine-tune-blocks", "6", "--epochs", "8",
        "--fine-tune-epochs", "5", "--schedule", "cosine", "--patience", "20", "--keep", "best",
        "--test-time-flip", "off"]
TRIALS = {
    "base": [],
    "label smoothing 0.1": ["--label-smoothing", "0.1"],
    "translation 0.1": ["--set", "data.augment.translation=0.1"],
    "colour jitter (contrast 0.2, brightness 0.1)": ["--set", "data.augment.contrast=0.2",
                                                     "--set", "data.augment.brightness=0.1"],
    "fine-tune lr 3e-4": ["--fine-tune-lr", "3e-4"],
    "fine-tune lr 3e-4 + label smoothing 0.1": ["--fine-tune-lr", "3e-4", "--label-smoothing", "0.1"],
    "20 fine-tuning epochs": ["--fine-tune-epochs", "20"],  # BASE keeps the best epoch's weights
    "20 fine-tuning epochs, keep the last": ["--fine-tune-epochs", "20", "--keep", "last"],
    # paired: the run's own validation accuracy without the flip is what it is compared with
    # (the same weights), so base need not be rerun for it
    "test-time flip": ["--test-time-flip", "on"],
    "mixup 0.2 on cached features": ["--mixup", "0.2"],
    "no flip in training": ["--set", "data.augment.flip=none"],  # digits are not mirror-symmetric
}


def run(data: str, flags: list[str], runs: Path, name: str) -> dict:
    cmd = [sys.executable, "-m", "imgclf", "train", data, "--runs-dir", str(runs), "--name", name, "--quiet", *flags]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    import yaml

    from imgclf.evaluation.kept import kept_row
    with open(runs / name / "history.csv") as f:  # the validation accuracy of the weights kept
        kept = kept_row(list(csv.DictReader(f)), yaml.safe_load((runs / name / "config.yaml").read_text()))
    val = float(kept["val_accuracy"])
    metrics = json.loads((runs / name / "metrics.json").read_text())
    result = {"val_accuracy": val, "test_accuracy": metrics["accuracy"], "wall_s": round(wall, 1)}
    flip = json.loads((runs / name / "run.json").read_text())["calibration"].get("flip") or {}
    if flip.get("flip") and "val_accuracy" in flip:  # predicted with the flip: val both ways, same weights
        result.update(val_accuracy=flip["val_accuracy"]["flip"], paired_val_accuracy=flip["val_accuracy"]["plain"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="NAME=PATH")
    parser.add_argument("--trial", action="append", help="only these (default: all)")
    parser.add_argument("--no-base", action="store_true",
                        help="skip the base runs (for paired trials, which compare with their own run)")
    parser.add_argument("--out")
    parser.add_argument("--reuse", help="a JSON of results from an earlier run (--out): pairs in it are not rerun")
    args = parser.parse_args()
    datasets = dict(item.split("=", 1) for item in args.datasets)
    trials = {k: v for k, v in TRIALS.items()
              if not args.trial or k in args.trial or (k == "base" and not args.no_base)}
    earlier = json.loads(Path(args.reuse).read_text()) if args.reuse else {}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for d_name, path in datasets.items():
            for t_name, flags in trials.items():
                key = f"{d_name}/{t_name}"
                results[key] = earlier.get(key) or run(path, BASE + flags, Path(tmp), f"t{len(results)}")
                print(key, results[key], flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(results, indent=1))
    print("\n| trial | " + " | ".join(f"{d} val (test)" for d in datasets) + " | helps val on |")
    print("|---" * (len(datasets) + 2) + "|")
    for t_name in trials:
        cells, helps = [], 0
        for d_name in datasets:
            r, base = results[f"{d_name}/{t_name}"], results.get(f"{d_name}/base", {})
            if "error" in r or not ("paired_val_accuracy" in r or "val_accuracy" in base):
                cells.append(r.get("error", "base failed")[:40])
                continue
            paired = f" [without: {r['paired_val_accuracy']:.3f}]" if "paired_val_accuracy" in r else ""
            cells.append(f"{r['val_accuracy']:.3f}{paired} ({r['test_accuracy']:.3f})")
            helps += r["val_accuracy"] > (r["paired_val_accuracy"] if "paired_val_accuracy" in r else base["val_accuracy"])
        print(f"| {t_name} | " + " | ".join(cells) + f" | {'-' if t_name == 'base' else helps} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
