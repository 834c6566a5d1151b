"""Sharded batch prediction: `--shard 1/2` + `--shard 2/2` in parallel, one core each, against
one process on one core, on the same images; then `--merge` and a byte-for-byte comparison with
the single process's output.

The images are Fashion-MNIST PNGs (`imgclf datasets fashion-mnist`, the training split) or,
with `--folder`, any folder's (photo-sized JPEGs: each image is then work enough that the
processes' start matters less); the model any run or exported model. Wall times include each
process's start (TensorFlow import, model load), as a job scheduler's would. On a machine shared with other jobs the wall times
follow the load, so each process's own CPU seconds are printed too: with a core to itself a
process's wall time is its CPU time, so the slower shard's CPU time over the single process's
is the wall ratio on idle cores.

Example:
    python benchmarks/batch_predict.py runs/digits96 --images 10000
    python benchmarks/photos.py /tmp/photos10k --train 10000 --val 0 --test 0
    python benchmarks/batch_predict.py runs/photos160 --folder /tmp/photos10k
"""
from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgclf.data.images import IMAGE_EXTENSIONS


def predict(run: str, images: Path, out: Path, cores: list[str], shards: int, threads: int) -> tuple[float, list]:
    """(wall seconds, CPU seconds of each process) of ``shards`` parallel `imgclf predict
    --shard` processes, shard i pinned to cores[i]."""
    procs, start = [], time.perf_counter()
    for i in range(shards):
        cmd = ["taskset", "-c", cores[i], sys.executable, "-m", "imgclf", "predict", run, str(images),
               "--out", str(out.with_name(f"{out.stem}-{i + 1}.csv")), "--threads", str(threads)]
        cmd += ["--shard", f"{i + 1}/{shards}"] if shards > 1 else []
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    cpu = []
    for p in procs:
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)  # the child's own CPU time (user + system)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            raise SystemExit(f"predict failed: {err.strip().splitlines()[-1:]}")
        cpu.append(usage.ru_utime + usage.ru_stime)
    return time.perf_counter() - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or exported model")
    parser.add_argument("--images", type=int, default=10_000, help="how many images (a multiple of 10)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--folder", type=Path, help="predict this folder's images instead (e.g. photo-sized JPEGs "
                        "from benchmarks/photos.py); --images is then ignored")
    args = parser.parse_args()
    cores = [str(c) for c in sorted(os.sched_getaffinity(0))]
    if len(cores) < 2:
        raise SystemExit("needs two cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = args.folder or tmp / "fm" / "train"
        if not args.folder:
            subprocess.run([sys.executable, "-m", "imgclf", "datasets", "fashion-mnist", str(tmp / "fm"),
                            "--train-per-class", str(args.images // 10), "--test-per-class", "1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        count = sum(1 for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)  # what predict reads
        print(f"{count} images, model {args.run}, cores {cores[:2]}")
        for repeat in range(args.repeats):
            for f in tmp.glob("*.csv"):
                f.unlink()
            one, one_cpu = predict(args.run, images, tmp / "one.csv", cores, 1, 1)
            two, two_cpu = predict(args.run, images, tmp / "shard.csv", cores, 2, 1)
            subprocess.run([sys.executable, "-m", "imgclf", "predict", args.run, str(images), "--merge",
                            str(tmp / "shard-1.csv"), str(tmp / "shard-2.csv"), "--out", str(tmp / "all.csv")],
                           check=True, stderr=subprocess.DEVNULL)
            same = filecmp.cmp(tmp / "one-1.csv", tmp / "all.csv", shallow=False)
            print(f"repeat {repeat + 1}: one process on one core {one:.1f} s ({count / one:.0f} images/s); "
                  f"2 shards on one core each {two:.1f} s ({count / two:.0f} images/s); ratio {two / one:.2f}x; "
                  f"merged output identical: {same}")
            print(f"  CPU seconds: one process {one_cpu[0]:.1f}; shards {' + '.join(f'{c:.1f}' for c in two_cpu)} "
                  f"(the slower shard's CPU time over the single process's: {max(two_cpu) / one_cpu[0]:.2f}x, "
                  f"the wall ratio on two otherwise idle cores)")


if __name__ == "__main__":
    main()
