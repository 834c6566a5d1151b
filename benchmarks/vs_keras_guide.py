"""imgclf against the Keras transfer-learning guide's recipe, same data, backbone and budget.

The guide (https://keras.io/guides/transfer_learning/) is re-implemented as written, apart from
its data source and backbone: images come from ``keras.utils.image_dataset_from_directory``
(labels inferred, ``label_mode="categorical"``, ``color_mode="rgb"``, squashed to S x S), are
augmented per image in the tf.data pipeline (RandomFlip("horizontal"), RandomRotation(0.1)),
then ``.batch(64).prefetch(AUTOTUNE).cache()`` as in the guide (the cache sits after the
augmentation, so every epoch after the first replays epoch 1's augmented images). The frozen
base is called with ``training=False``, then GlobalAveragePooling2D, Dropout(0.2), Dense(C)
logits; Adam() + categorical cross-entropy (from logits) for E epochs; then
``base_model.trainable = True``, recompile with Adam(1e-5), F more epochs. Fixed epochs, no early
stopping, no BatchNorm fix (in Keras 3 ``fit`` still lets BatchNorm drift: keras-team/keras#20285).
The guide's Xception weights cannot be had offline, so both recipes use the same base:
``imgclf.backbones.build_backbone("efficientnet_lite0", S, weights="imagenet")``, which takes
raw 0-255 RGB with its normalisation inside (hence no Rescaling layer).

imgclf runs ``imgclf.train(...)`` on the same train/val/test folders with the same S and E+F
budget and its own defaults for everything else (early stopping, schedule, which blocks to
unfreeze...). Both are scored with scikit-learn on the official Fashion-MNIST test images.

Timing. Each recipe runs in its own subprocess (fair peak RSS from getrusage, no shared
caches); the imports of what both use (Python, TensorFlow, Keras, scikit-learn's metrics) are
excluded, everything else (imgclf's plotting libraries included) (decoding, training, the test
predictions; for imgclf also its feature cache and report) is counted in "total". "other" is
total minus the two training phases (for imgclf it includes "cache s", from run.json). The
guide's test accuracy after its head phase is also measured, as a diagnostic left out of its times.

Time-to-accuracy. imgclf's API gives no hook to score the test set after each epoch, and
scoring an epoch's weights would be optimistic anyway (imgclf keeps its best-val weights, not
the last). So imgclf is rerun from scratch at a ladder of smaller budgets (one head epoch and no
fine-tuning, since the head alone may already be enough; then ceil of 1/8, 1/4, 1/2 of E and F;
then E+F itself), smallest first, and the first budget whose final test accuracy is
>= the guide's final test accuracy counts with its whole wall time. The reported ratio is that
time over the guide's total time (below 1: imgclf reaches the guide's accuracy sooner). The
ladder is coarse, so the time is an upper bound on what a perfectly chosen budget would take.

Example:
    python benchmarks/vs_keras_guide.py --dataset fashion-mnist-1k --image-size 96 \\
        --epochs 10 --fine-tune-epochs 5 --imgclf-plain --out /tmp/vs_guide.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {"fashion-mnist-1k": 100, "fashion-mnist": None}  # training images per class
BACKBONE = "efficientnet_lite0"
NOTE = ("The guide's Xception weights are not available offline: both recipes use imgclf's "
        f"{BACKBONE} ImageNet base (raw 0-255 input, normalisation inside).")


def prepare_data(dataset: str, data_dir: Path, val_fraction: float, seed: int) -> Path:
    """train/ val/ test/ class folders: official test set; val is a seeded stratified share of train."""
    import numpy as np
    from imgclf.data.datasets import write_fashion_mnist
    tree = data_dir / f"{dataset}-seed{seed}"
    if (tree / "READY").is_file():
        return tree
    raw = data_dir / f"{dataset}-raw"
    write_fashion_mnist(raw, train_per_class=DATASETS[dataset], seed=seed)
    shutil.rmtree(tree, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for class_dir in sorted((raw / "train").iterdir()):
        files = sorted(class_dir.glob("*.png"))
        val = set(rng.choice(len(files), round(len(files) * val_fraction), replace=False).tolist())
        for i, f in enumerate(files):
            dst = tree / ("val" if i in val else "train") / class_dir.name / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            f.rename(dst)
    (raw / "test").rename(tree / "test")
    shutil.rmtree(raw)
    (tree / "READY").write_text(f"{dataset} val_fraction={val_fraction} seed={seed}\n")
    return tree


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_guide(root: Path, size: int, epochs: int, fine_tune_epochs: int, batch_size: int, seed: int) -> dict:
    """The guide's recipe, in this process. Returns timings and test scores."""
    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import accuracy_score, f1_score
    from imgclf.backbones import build_backbone
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    def load(split, shuffle):  # unbatched, like the guide's TFDS splits
        return keras.utils.image_dataset_from_directory(
            root / split, labels="inferred", label_mode="categorical", color_mode="rgb",
            image_size=(size, size), batch_size=None, shuffle=shuffle, seed=seed, verbose=False)
    train_ds, validation_ds, test_ds = load("train", True), load("val", False), load("test", False)
    num_classes = len(train_ds.class_names)
    augmentation_layers = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
    def data_augmentation(x):
        for layer in augmentation_layers:
            x = layer(x)
        return x

    train_ds = train_ds.map(lambda x, y: (data_augmentation(x), y))
    train_ds = train_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()
    validation_ds = validation_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()
    test_uncached = test_ds.batch(batch_size)  # for the untimed diagnostic below only
    test_ds = test_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()

    base_model = build_backbone(BACKBONE, size, weights="imagenet")
    base_model.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = base_model(inputs, training=False)  # no Rescaling: the base normalises 0-255 itself
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)

    def compile_and_fit(optimizer, n):  # the guide's compile + fit, timed; n=0 skips the fit
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy()])
        t = time.perf_counter()
        h = model.fit(train_ds, epochs=n, validation_data=validation_ds, verbose=0).history if n else {}
        return time.perf_counter() - t, [round(v, 4) for v in h.get("val_categorical_accuracy", [])]

    setup = time.perf_counter() - start
    head_s, head_val = compile_and_fit(keras.optimizers.Adam(), epochs)
    t = time.perf_counter()  # not in the guide: test accuracy before fine-tuning, left out of the times
    y_true = np.concatenate([np.argmax(y, axis=1) for _, y in test_uncached])
    head_acc = float(accuracy_score(y_true, np.argmax(model.predict(test_uncached, verbose=0), axis=1)))
    untimed = time.perf_counter() - t
    base_model.trainable = True
    fine_s, fine_val = compile_and_fit(keras.optimizers.Adam(1e-5), fine_tune_epochs)
    t = time.perf_counter()
    y_pred = np.argmax(model.predict(test_ds, verbose=0), axis=1)
    test_s = time.perf_counter() - t
    return {"recipe": "keras guide", "budget": [epochs, fine_tune_epochs], "epochs_run": [epochs, fine_tune_epochs],
            "head_s": head_s, "fine_tune_s": fine_s, "other_s": setup + test_s,
            "total_s": time.perf_counter() - start - untimed, "head_accuracy": head_acc,
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "val_accuracy": {"head": head_val, "fine_tune": fine_val}, "batch_size": batch_size}


def run_imgclf(root: Path, size: int, epochs: int, fine_tune_epochs: int, batch_size: int | None,
               seed: int, plain: bool) -> dict:
    """imgclf.train() in this process, its run directory in a temporary folder."""
    # Imported before the clock, as run_guide imports them before its own: imgclf.workflow alone
    # imports neither TensorFlow nor Keras (until 2026-11-24 imgclf's time included their import).
    import keras  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import tensorflow  # noqa: F401
    from imgclf.workflow import train
    runs_dir = tempfile.mkdtemp(prefix="imgclf-bench-runs-")
    extra = {"batch_size": batch_size} if batch_size else {}
    try:
        start = time.perf_counter()
        result = train(str(root), image_size=size, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
                       feature_cache=not plain, seed=seed, runs_dir=runs_dir, name="bench",
                       verbose=False, **extra)
        total = time.perf_counter() - start
        info = json.loads((result.run_dir / "run.json").read_text())  # cached or plain, cache time
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    rows = result.history
    phase_s = {p: sum(r["seconds"] for r in rows if r["phase"] == p) for p in ("head", "fine_tune")}
    return {"recipe": f"imgclf ({info.get('path', 'plain' if plain else '?')})", "budget": [epochs, fine_tune_epochs],
            "epochs_run": [sum(r["phase"] == p for r in rows) for p in ("head", "fine_tune")],
            "head_s": phase_s["head"], "fine_tune_s": phase_s["fine_tune"], "cache_s": info.get("cache_seconds"),
            "other_s": total - phase_s["head"] - phase_s["fine_tune"], "total_s": total,
            "accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro"]["f1"],
            "val_accuracy": [round(r.get("val_accuracy", math.nan), 4) for r in rows], "run_info": info,
            "batch_size": batch_size or "imgclf default"}


def child_main(args) -> None:
    import keras  # noqa: F401  (imports are not timed, for either recipe)
    import tensorflow  # noqa: F401
    e, f = args.budget
    if args.child == "guide":
        out = run_guide(args.root, args.image_size, e, f, args.batch_size or 64, args.seed)
    else:
        out = run_imgclf(args.root, args.image_size, e, f, args.batch_size, args.seed, args.child == "imgclf-plain")
    out["peak_rss_mb"] = _peak_rss_mb()
    Path(args.result).write_text(json.dumps(out))


def spawn(kind: str, budget: tuple[int, int], root: Path, args, log_dir: Path) -> dict:
    """Run one recipe in a fresh interpreter; its JSON result, or {"error": ...}."""
    result = log_dir / f"{kind}-{budget[0]}+{budget[1]}.json"
    log = result.with_suffix(".log")
    cmd = [sys.executable, __file__, "--child", kind, "--root", str(root), "--result", str(result),
           "--budget", str(budget[0]), str(budget[1]), "--image-size", str(args.image_size), "--seed", str(args.seed)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print(f"  running {kind} {budget[0]}+{budget[1]} ...", flush=True)
    with log.open("w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code or not result.is_file():
        tail = log.read_text()[-1500:]
        print(f"  {kind} failed (exit {code}); log tail:\n{tail}", flush=True)
        return {"recipe": kind, "budget": list(budget), "error": f"exit {code}", "log_tail": tail}
    out = json.loads(result.read_text())
    print(f"    {out['total_s']:.1f} s, test accuracy {out['accuracy']:.4f}", flush=True)
    return out


def ladder(epochs: int, fine_tune_epochs: int) -> list[tuple[int, int]]:
    """Budgets smaller than E+F, smallest first: 1+0 (the head alone), then ceil of 1/8, 1/4,
    1/2 of each phase.

    Example:
        >>> ladder(10, 5)
        [(1, 0), (2, 1), (3, 2), (5, 3)]
    """
    steps = {(max(1, math.ceil(epochs * q)), math.ceil(fine_tune_epochs * q)) for q in (1 / 8, 1 / 4, 1 / 2)}
    return sorted(b for b in steps | {(1, 0)} if b != (epochs, fine_tune_epochs))


def time_to_accuracy(kind, full: dict, target: float, root, args, log_dir) -> dict:
    """Smallest budget on the ladder whose final test accuracy reaches target, and its wall time."""
    if "error" in full or full["accuracy"] < target:
        return {"reached": False, "sweep": []}
    sweep = []
    if args.sweep:
        for budget in ladder(*args.budget):
            run = spawn(kind, budget, root, args, log_dir)
            if "error" in run:
                continue
            sweep.append({k: run[k] for k in ("budget", "epochs_run", "total_s", "accuracy", "macro_f1")})
            if run["accuracy"] >= target:
                return {"reached": True, "budget": list(budget), "seconds": run["total_s"], "sweep": sweep}
    return {"reached": True, "budget": full["budget"], "seconds": full["total_s"], "sweep": sweep,
            "upper_bound": not args.sweep}


def format_table(rows: list[dict]) -> str:
    head = ("recipe", "budget", "epochs run", "head s", "fine-tune s", "cache s", "other s", "total s",
            "test acc", "macro-F1", "peak RSS MB")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append((r["recipe"], "{}+{}".format(*r["budget"]), "FAILED") + ("",) * 8)
            continue
        lines.append((r["recipe"], "{}+{}".format(*r["budget"]), "{}+{}".format(*r["epochs_run"]),
                      *("-" if r.get(k) is None else f"{r[k]:.1f}"
                        for k in ("head_s", "fine_tune_s", "cache_s", "other_s", "total_s")),
                      f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}", f"{r['peak_rss_mb']:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def main(args) -> dict:
    print(f"{NOTE}\nThe guide runs as written: fixed epochs, no early stopping, batch {args.batch_size or 64}, "
          "whole base unfrozen at 1e-5 with no BatchNorm fix. imgclf uses its defaults "
          "(early stopping, best weights kept, top blocks unfrozen, BatchNorm frozen).", flush=True)
    root = prepare_data(args.dataset, args.data_dir, args.val_fraction, args.seed)
    counts = {s: sum(1 for _ in (root / s).glob("*/*.png")) for s in ("train", "val", "test")}
    print(f"data: {root} {counts}; image size {args.image_size}; budget {args.budget[0]}+{args.budget[1]}", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="vs-keras-guide-"))
    load_before = os.getloadavg()
    guide = spawn("guide", tuple(args.budget), root, args, log_dir)
    kinds = (["imgclf"] if not args.skip_fast else []) + (["imgclf-plain"] if args.imgclf_plain else [])
    rows, tta = [guide], {}
    for kind in kinds:
        full = spawn(kind, tuple(args.budget), root, args, log_dir)
        rows.append(full)
        if "error" not in guide:
            tta[kind] = time_to_accuracy(kind, full, guide["accuracy"], root, args, log_dir)
    print("\n" + format_table(rows))
    if "error" not in guide:
        print(f"\ntime to reach the guide's final test accuracy {guide['accuracy']:.4f} (guide: {guide['total_s']:.1f} s); "
              "imgclf rerun from scratch at budgets of 1+0, 1/8, 1/4, 1/2 and all of E+F, smallest first; "
              "the first that reaches it counts with its whole wall time")
    for kind, t in tta.items():
        if t["reached"]:
            t["ratio_to_guide_total"] = t["seconds"] / guide["total_s"]
            bound = " (upper bound: --no-sweep)" if t.get("upper_bound") else ""
            print(f"  {kind}: budget {t['budget'][0]}+{t['budget'][1]}, {t['seconds']:.1f} s = "
                  f"{t['ratio_to_guide_total']:.2f} x the guide's total{bound}")
        else:
            print(f"  {kind}: not reached within {args.budget[0]}+{args.budget[1]}")
        for s in t["sweep"]:
            print(f"    {s['budget'][0]}+{s['budget'][1]} (ran {s['epochs_run'][0]}+{s['epochs_run'][1]}): "
                  f"{s['total_s']:.1f} s, test acc {s['accuracy']:.4f}")
    if "error" not in guide:
        v = guide["val_accuracy"]
        print(f"guide val accuracy per epoch: head {v['head']}, fine-tune {v['fine_tune']}; test accuracy "
              f"after the head phase {guide['head_accuracy']:.4f} (untimed), after fine-tuning {guide['accuracy']:.4f}")
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (shared machine: timings are noisy)")
    shutil.rmtree(log_dir, ignore_errors=True)
    return {"dataset": args.dataset, "image_size": args.image_size, "budget": args.budget, "seed": args.seed,
            "counts": counts, "note": NOTE, "recipes": rows, "time_to_guide_accuracy": tta,
            "load_average": [load_before[0], os.getloadavg()[0]], "cpus": os.cpu_count()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist-1k")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10, help="phase 1 (head) epochs, both recipes")
    p.add_argument("--fine-tune-epochs", type=int, default=5, help="phase 2 epochs, both recipes")
    p.add_argument("--batch-size", type=int, default=0, help="0: each recipe's own (guide 64, imgclf default)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "imgclf-bench-data")
    p.add_argument("--imgclf-plain", action="store_true", help="also time imgclf with feature_cache=False")
    p.add_argument("--skip-fast", action="store_true", help="skip imgclf with feature_cache=True")
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="no reruns at smaller budgets: time-to-accuracy is the full run's (an upper bound)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--child", choices=("guide", "imgclf", "imgclf-plain"), help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child:
        args.budget = [args.epochs, args.fine_tune_epochs]
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.child:
        child_main(ARGS)
    else:
        RESULTS = main(ARGS)
        if ARGS.out:
            ARGS.out.write_text(json.dumps(RESULTS, indent=2) + "\n")
            print(f"results: {ARGS.out}")
