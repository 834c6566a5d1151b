"""CPU inference: Keras predict against SavedModel and TFLite (float32, dynamic-range, int8).

Usage:
    python benchmarks/inference.py RUN [--threads 2] [--batch 64] [--latency-runs 200] [--rounds 3]
        [--max-accuracy-drop 0.01] [--data-note TEXT] [--results benchmarks/RESULTS.md]

RUN is a finished run; missing exports are made (and checked) in RUN/export/ first. Every model
sees the same images, the run's test split, at the model's input size, on ``--threads`` threads
(TensorFlow intra-op and LiteRT alike). Per model and round: single-image latency (one image per
call, cycling through the test images) and batch throughput (the whole test split in batches).
Rounds interleave the models so that a slow spell of a shared machine hits all of them; latency
percentiles pool every round, throughput is the best round (the least disturbed by other work).
Accuracy and top-1 agreement with Keras come from the same predictions. The table is printed
and written, with ratios against Keras ``model.predict``, as the ``## Inference`` section of the
results file.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROWS = [  # (label, what is loaded: "predict" for model.predict, else a format of imgclf.load)
    ("Keras `model.predict`", "predict"),
    ("Keras, one `tf.function` (imgclf before export)", "keras"),
    ("SavedModel (TF, no Keras)", "savedmodel"),
    ("TFLite float32 (LiteRT)", "tflite"),
    ("TFLite dynamic-range (LiteRT)", "tflite-dynamic"),
    ("TFLite int8, uint8 input (LiteRT)", "tflite-int8"),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="images per call for throughput")
    p.add_argument("--latency-runs", type=int, default=200, help="single-image calls per model and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-accuracy-drop", type=float, default=0.01,
                   help="the export check for missing exports (default: the export default, 0.01)")
    p.add_argument("--data-note", help="what the run was trained on, for the write-up (default: the data "
                                       "folder's name)")
    p.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    return p.parse_args(argv)


def set_threads(threads: int) -> None:
    """TensorFlow's pools, before anything runs (this is a script, not the library)."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def ensure_exports(run: Path, max_drop: float) -> dict:
    """Export what is missing; return RUN/export/metrics.json."""
    import json

    from imgclf.deploy.export import Exporter
    from imgclf.deploy.formats import FORMATS
    exporter = Exporter(run)
    for fmt in ("savedmodel", "tflite", "tflite-dynamic", "tflite-int8"):
        if not (run / "export" / FORMATS[fmt].file_name).exists():
            exporter.export(fmt, max_accuracy_drop=max_drop, verbose=True)
    return json.loads((run / "export" / "metrics.json").read_text())


class KerasPredict:
    """The baseline: ``model.predict`` exactly as a Keras user calls it."""

    def __init__(self, run: Path):
        from imgclf.deploy.predict import load
        self.model = load(run).model

    def predict_arrays(self, images, batch_size=64):
        return self.model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)


def load_models(run: Path, threads: int) -> dict:
    from imgclf.deploy.formats import FORMATS
    from imgclf.deploy.predict import load
    models = {}
    for _, kind in ROWS:
        if kind == "predict":
            models[kind] = KerasPredict(run)
        elif kind == "keras":
            models[kind] = load(run)
        else:
            models[kind] = load(run / "export" / FORMATS[kind].file_name, num_threads=threads)
    return models


def latency_ms(model, images: np.ndarray, runs: int) -> list[float]:
    for i in range(5):  # warm-up: tracing, interpreter plans, caches
        model.predict_arrays(images[i:i + 1])
    times = []
    for i in range(runs):
        one = images[i % len(images)][None]
        start = time.perf_counter()
        model.predict_arrays(one)
        times.append((time.perf_counter() - start) * 1000)
    return times


def throughput(model, images: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    model.predict_arrays(images[:batch], batch_size=batch)  # warm-up at this batch size
    start = time.perf_counter()
    probs = model.predict_arrays(images, batch_size=batch)
    return len(images) / (time.perf_counter() - start), probs


def measure(models: dict, images: np.ndarray, args) -> dict:
    stats = {kind: {"lat": [], "ips": []} for kind in models}
    for r in range(args.rounds):
        for kind, model in models.items():
            stats[kind]["lat"] += latency_ms(model, images, args.latency_runs)
            ips, probs = throughput(model, images, args.batch)
            stats[kind]["ips"].append(ips)
            stats[kind]["probs"] = probs
            print(f"round {r + 1}: {kind:15s} p50 {np.median(stats[kind]['lat'][-args.latency_runs:]):7.2f} ms"
                  f"  {ips:7.1f} img/s", flush=True)
    return stats


def table(stats: dict, labels: np.ndarray, sizes: dict) -> list[str]:
    base = stats["predict"]
    base_ips, base_p50 = max(base["ips"]), np.percentile(base["lat"], 50)
    ref = stats["keras"]["probs"].argmax(1)
    keras_acc = np.mean(ref == labels)
    lines = ["| model | size MB | p50 ms | p99 ms | images/s | throughput x | latency x | accuracy "
             "| Δ accuracy | agreement |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, kind in ROWS:
        s = stats[kind]
        p50, p99, ips = np.percentile(s["lat"], 50), np.percentile(s["lat"], 99), max(s["ips"])
        pred = s["probs"].argmax(1)
        acc = np.mean(pred == labels)
        size = f"{sizes[kind] / 1e6:.1f}" if kind in sizes else "-"
        lines.append(f"| {label} | {size} | {p50:.2f} | {p99:.2f} | {ips:.0f} | {ips / base_ips:.1f} "
                     f"| {base_p50 / p50:.1f} | {acc:.3f} | {100 * (acc - keras_acc):+.1f} pt "
                     f"| {np.mean(pred == ref):.1%} |")
    return lines


def write_section(path: Path, section: str) -> None:
    """Put ``section`` (starting '## Inference') in place of the old one, keeping the rest."""
    from imgclf.files import write_text_atomic
    text = path.read_text() if path.is_file() else (
        "# Benchmark results\n\nMachine and date are given in each section.\n")
    pattern = re.compile(r"^## Inference\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    write_text_atomic(path, text.rstrip("\n") + "\n")


def partitions(path: Path, threads: int) -> int:
    """How many XNNPACK partitions LiteRT made (1: the whole graph runs in XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def describe(args, run: Path, n: int, image_size: int, checks: dict, load: tuple) -> list[str]:
    import ai_edge_litert
    import keras
    import tensorflow as tf
    import yaml

    from imgclf.deploy.formats import FORMATS
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    parts = ", ".join(f"{kind} {partitions(run / 'export' / FORMATS[kind].file_name, args.threads)}"
                      for kind in ("tflite", "tflite-dynamic", "tflite-int8"))
    int8 = checks.get("tflite-int8", {})
    lines = [
        "## Inference", "",
        f"`python benchmarks/inference.py RUN --threads {args.threads} --batch {args.batch} "
        f"--latency-runs {args.latency_runs} --rounds {args.rounds}`, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU cores ({cpu}), TensorFlow {tf.__version__} (CPU), Keras {keras.__version__}, "
        f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}, {args.threads} threads everywhere. "
        f"The machine was shared with other work (load average {load[0]:.1f} at the start, {load[1]:.1f} "
        f"at the end, on {os.cpu_count()} cores): the figures are noisy; compare rows of this table only.", "",
        f"RUN: {args.data_note or Path(cfg['data']['path']).name} ({cfg['model']['backbone']} at {image_size} px, "
        f"{cfg['train']['epochs']} + {cfg['train']['fine_tune_epochs']} epochs). Images: its {n} test "
        f"images, the same for every row. Latency: one image per call, {args.latency_runs} calls per "
        f"model per round, p50/p99 over {args.rounds} interleaved rounds. Throughput: all {n} images in "
        f"batches of {args.batch}, best round. \"x\": ratio against Keras `model.predict` (higher is "
        f"better). Agreement: share of images whose top-1 class is the Keras model's. int8: "
        f"calibrated on {int8.get('calibration_images', '?')} training images. XNNPACK partitions "
        f"(1 = the whole graph in XNNPACK): {parts}.",
    ]
    if args.max_accuracy_drop != 0.01:
        lines[-1] += f" Missing exports were made with `--max-accuracy-drop {args.max_accuracy_drop}`."
    # the paragraphs wrapped like the rest of RESULTS.md; the table below stays one row a line
    return [textwrap.fill(line, 96, break_on_hyphens=False, break_long_words=False) for line in lines] + [""]


def main(argv=None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_threads(args.threads)
    from imgclf.data import load_dataset, load_images
    from imgclf.deploy.predict import load
    checks = ensure_exports(args.run, args.max_accuracy_drop)
    clf = load(args.run)
    dataset = load_dataset(args.run / "split.csv")
    images = load_images(dataset.paths["test"], clf.image_size)
    labels = np.array([clf.class_names.index(dataset.class_names[j]) for j in dataset.labels["test"]])
    models = load_models(args.run, args.threads)
    stats = measure(models, images, args)
    sizes = {"keras": (args.run / "model.keras").stat().st_size, "predict": (args.run / "model.keras").stat().st_size}
    sizes.update({kind: checks[kind]["bytes"] for kind in checks if kind in {k for _, k in ROWS}})
    load = (load_start, os.getloadavg()[0])
    lines = describe(args, args.run, len(images), clf.image_size, checks, load) + table(stats, labels, sizes)
    print("\n".join(lines))
    write_section(args.results, "\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
