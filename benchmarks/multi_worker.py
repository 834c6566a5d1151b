"""Speed-up of data-parallel training: one process against N workers on this machine's loopback.

Each configuration runs ``imgclf train`` on the same data with the same global batch, seed and
epoch budget (early stopping off), one after the other in one run:
- one process, pinned with ``taskset`` to the cores of one worker (``--single-cores 1``, the
  default: one core on a 2-core machine), or using every core (``--single-cores 0``);
- N workers (MultiWorkerMirroredStrategy over 127.0.0.1), each pinned to its own share of the
  cores, so the workers do not fight over them.
It prints wall time, the feature cache's wall (run.json's cache_seconds: the chief's, which
includes waiting for the other workers' shards and the exchange), training seconds per phase
(from history.csv; the first epoch of each phase includes tracing and is reported apart), the
test evaluation's seconds, test accuracy, the CPU seconds all processes used (the machine may be
shared: CPU over wall says how much of a core each got), and the ratios N workers / one process.

Example:
    python benchmarks/multi_worker.py --workers 2 --epochs 3 --fine-tune-epochs 2
    python benchmarks/photos.py /tmp/photos-s --train 1500 --val 300 --test 300
    python benchmarks/multi_worker.py --data /tmp/photos-s --image-size 160
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from vs_keras_guide import DATASETS, prepare_data  # noqa: E402

from imgclf.training.distribute import loopback_workers  # noqa: E402


def cpu_sets(n: int) -> list[str | None]:
    """Disjoint core lists for n workers (None: no pinning possible or needed)."""
    cores = sorted(os.sched_getaffinity(0))
    if n == 1 or len(cores) < n or not shutil.which("taskset"):
        return [None] * n
    share = len(cores) // n
    return [",".join(map(str, cores[i * share:(i + 1) * share])) for i in range(n)]


def run(n: int, data: Path, runs: Path, name: str, args) -> dict:
    flags = ["train", str(data), "--runs-dir", str(runs), "--name", name, "--quiet",
             "--image-size", str(args.image_size), "--epochs", str(args.epochs),
             "--fine-tune-epochs", str(args.fine_tune_epochs), "--batch-size", str(args.batch_size),
             "--views", str(args.views), "--fine-tune-blocks", str(args.fine_tune_blocks),
             # every value the planner would choose is fixed, so both configurations run one recipe
             "--schedule", "cosine", "--set", f"train.runtime={args.runtime}",
             "--patience", "1000", "--seed", str(args.seed)] + (["--plain"] if args.plain else [])
    workers = loopback_workers(n) if n > 1 else ""
    procs, logs = [], []
    pins = cpu_sets(n) if n > 1 else [cpu_sets(args.workers)[0] if args.single_cores else None]
    start = time.perf_counter()
    for i, cpus in enumerate(pins):
        cmd = [sys.executable, "-m", "imgclf", *flags] + (["--workers", workers, "--worker-index", str(i)]
                                                              if n > 1 else [])
        if cpus:
            cmd = ["taskset", "-c", cpus, *cmd]
        log = open(runs / f"{name}-{i}.log", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    waited = [os.wait4(p.pid, 0) for p in procs]  # each process's own CPU time (taskset execs it: same pid)
    wall = time.perf_counter() - start
    codes = [os.waitstatus_to_exitcode(status) for _, status, _ in waited]
    for p, code in zip(procs, codes):
        p.returncode = code
    each = [round(usage.ru_utime + usage.ru_stime, 1) for _, _, usage in waited]
    for log in logs:
        log.close()
    if any(codes):
        raise SystemExit(f"{name}: a worker failed (exit codes {codes}); see {runs}/{name}-*.log")
    run_dir = runs / name
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {"workers": n, "pinned": pins, "wall_s": round(wall, 1), "accuracy": metrics["accuracy"],
           "strategy": info.get("strategy"), "replicas": info.get("replicas"), "path": info.get("path"),
           "cpu_s": round(sum(each), 1), "cpu_s_each": each, "cache_s": info.get("cache_seconds"), "views": info.get("views"),
           "exchange_s": info.get("cache_exchange_seconds"), "eval_s": info.get("eval_seconds"),
           "train_s": round(sum(float(r["seconds"]) for r in rows), 1)}
    for phase in ("head", "fine_tune"):
        secs = [float(r["seconds"]) for r in rows if r["phase"] == phase]
        out[f"{phase}_first_s"] = round(secs[0], 2) if secs else None
        out[f"{phase}_steady_s"] = round(sum(secs[1:]) / len(secs[1:]), 2) if len(secs) > 1 else None
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist-1k")
    p.add_argument("--data", type=Path, help="an existing train/ val/ test/ tree instead of --dataset (e.g. the "
                   "photo-sized set of benchmarks/photos.py)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--fine-tune-epochs", type=int, default=2)
    p.add_argument("--views", type=int, default=3, help="cached views, fixed so that no configuration plans its own")
    p.add_argument("--fine-tune-blocks", type=int, default=3)
    p.add_argument("--runtime", choices=("tf", "tflite"), default="tflite", help="the feature cache's runtime")
    p.add_argument("--batch-size", type=int, default=32, help="the global batch, the same for every configuration")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--plain", action="store_true", help="the plain path (the whole network every epoch)")
    p.add_argument("--single-cores", type=int, choices=(0, 1), default=1,
                   help="1: pin the one process to worker 0's cores (the issue's comparison); 0: every core")
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "imgclf-bench-data")
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders and logs (printed)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    data = args.data or prepare_data(args.dataset, args.data_dir, 0.1, args.seed)
    runs, load = Path(tempfile.mkdtemp(prefix="imgclf-mw-")), os.getloadavg()
    results = [run(n, data, runs, f"w{n}", args) for n in (1, args.workers)]
    one, many = results
    print(f"{args.data or args.dataset}, {args.image_size} px, {'plain' if args.plain else 'cached'} path, global batch "
          f"{args.batch_size}, {args.epochs}+{args.fine_tune_epochs} epochs, {os.cpu_count()} cores, "
          f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, at the end "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("| workers | cores each | strategy | wall s | CPU s (each process) | cache s (exchange s) | train s | head epoch 1 s | "
          "head steady s/epoch | fine-tune epoch 1 s | fine-tune steady s/epoch | test eval s | test accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        cores = len(r["pinned"][0].split(",")) if r["pinned"][0] else os.cpu_count()
        print(f"| {r['workers']} | {cores} | {r['strategy']} ({r['replicas']}) | {r['wall_s']} | "
              f"{' + '.join(map(str, r['cpu_s_each']))} | "
              f"{r['cache_s']} ({r['exchange_s']}) | {r['train_s']} | {r['head_first_s']} | {r['head_steady_s']} | "
              f"{r['fine_tune_first_s']} | {r['fine_tune_steady_s']} | {r['eval_s']} | {r['accuracy']:.4f} |")
    if one["cache_s"] and many["cache_s"]:
        print(f"cache-building wall, {args.workers} workers / one process: {many['cache_s'] / one['cache_s']:.2f}x")
    print(f"whole-run wall, {args.workers} workers / one process: {many['wall_s'] / one['wall_s']:.2f}x")
    for phase in ("head", "fine_tune"):
        if one[f"{phase}_steady_s"] and many[f"{phase}_steady_s"]:
            print(f"{phase} steady-epoch speed-up of {args.workers} workers: "
                  f"{one[f'{phase}_steady_s'] / many[f'{phase}_steady_s']:.2f}x")
    if args.keep_runs:
        print(f"runs kept in {runs}")
    else:
        shutil.rmtree(runs, ignore_errors=True)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
