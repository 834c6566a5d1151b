"""imgclf against the Keras transfer-learning guide's recipe, same data, backbone, batch size and budget.

The guide (https://keras.io/guides/transfer_learning/) is re-implemented twice, apart from its
data source and backbone: as it intends (the main peer row) and as written (a second row).
Its text says that, when the base is unfrozen for fine-tuning, BatchNorm layers must stay in
inference mode, which it arranges by calling the base with ``training=False``; in Keras 3
``fit`` still runs a nested base's BatchNorm layers in training mode (keras-team/keras#20285),
so taken literally their statistics drift on the small fine-tuning batches. The "as intended"
row keeps them in inference mode the way Keras 3 honours, ``trainable = False`` on every
BatchNormalization layer of the base after ``base_model.trainable = True``; the "as written" row
leaves them and drifts. Both rows otherwise follow the guide: images come from ``keras.utils.image_dataset_from_directory``
(labels inferred, ``label_mode="categorical"``, ``color_mode="rgb"``, squashed to S x S), are
augmented per image in the tf.data pipeline (RandomFlip("horizontal"), RandomRotation(0.1)),
then ``.batch(B).prefetch(AUTOTUNE).cache()`` as in the guide (B: the guide's 64 is replaced by
``--batch-size``, default 32, which imgclf uses too) (the cache sits after the
augmentation, so every epoch after the first replays epoch 1's augmented images). The frozen
base is called with ``training=False``, then GlobalAveragePooling2D, Dropout(0.2), Dense(C)
logits; Adam() + categorical cross-entropy (from logits) for E epochs; then
``base_model.trainable = True``, recompile with Adam(1e-5), F more epochs. Fixed epochs, no early
stopping: the guide's score is its last epoch's. Its best epoch by validation accuracy, and the
test accuracy of that epoch's weights (kept in memory by a callback), are reported as well,
outside its times: imgclf keeps its best-validation weights, the guide as written does not.
The guide's Xception weights cannot be had offline, so both recipes use the same base:
``imgclf.backbones.build_backbone("efficientnet_lite0", S, weights="imagenet")``, which takes
raw 0-255 RGB with its normalisation inside (hence no Rescaling layer).

imgclf runs ``imgclf.train(...)`` on the same train/val/test folders with the same S and E+F
budget and its own defaults for everything else (early stopping, schedule, which blocks to
unfreeze...). Both are scored with scikit-learn on the official Fashion-MNIST test images, and
imgclf is compared with each guide row on the same test images by the paired bootstrap and
McNemar's test (``imgclf.evaluation.intervals.paired_comparison``), with each recipe's own 95%
bootstrap interval of accuracy. imgclf's frozen-part TFLite conversions are cached on disk by
what the model computes (``imgclf.runtime.forward``); the benchmark lists the cache before each
imgclf run and says which conversions it made and which it found cached.

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


def run_guide(root: Path, size: int, epochs: int, fine_tune_epochs: int, batch_size: int, seed: int,
              bn_frozen: bool = True) -> dict:
    """The guide's recipe, in this process: as it intends (``bn_frozen``: BatchNorm in inference
    mode while fine-tuning) or as written (BatchNorm drifts). Returns timings and test scores."""
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
    num_classes, train_ds_names = len(train_ds.class_names), list(train_ds.class_names)
    augmentation_layers = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
    def data_augmentation(x):
        for layer in augmentation_layers:
            x = layer(x)
        return x

    train_ds = train_ds.map(lambda x, y: (data_augmentation(x), y))
    train_ds = train_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()
    validation_ds = validation_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()
    test_uncached = test_ds.batch(batch_size)  # for the untimed diagnostic below only
    test_paths = [str(Path(p).relative_to(root / "test")) for p in test_ds.file_paths]
    test_ds = test_ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).cache()

    base_model = build_backbone(BACKBONE, size, weights="imagenet")
    base_model.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = base_model(inputs, training=False)  # no Rescaling: the base normalises 0-255 itself
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)

    class BestEpoch(keras.callbacks.Callback):  # not in the guide: the best-validation epoch's weights
        best, epoch, weights, done = -1.0, None, None, 0

        def on_epoch_end(self, epoch, logs=None):
            self.done += 1
            if (logs or {}).get("val_categorical_accuracy", -1.0) > self.best:
                self.best, self.epoch = logs["val_categorical_accuracy"], self.done
                self.weights = model.get_weights()

    best = BestEpoch()

    def compile_and_fit(optimizer, n):  # the guide's compile + fit, timed; n=0 skips the fit
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy()])
        t = time.perf_counter()
        h = model.fit(train_ds, epochs=n, validation_data=validation_ds, verbose=0,
                      callbacks=[best]).history if n else {}
        return time.perf_counter() - t, [round(v, 4) for v in h.get("val_categorical_accuracy", [])]

    setup = time.perf_counter() - start
    head_s, head_val = compile_and_fit(keras.optimizers.Adam(), epochs)
    t = time.perf_counter()  # not in the guide: test accuracy before fine-tuning, left out of the times
    y_true = np.concatenate([np.argmax(y, axis=1) for _, y in test_uncached])
    head_acc = float(accuracy_score(y_true, np.argmax(model.predict(test_uncached, verbose=0), axis=1)))
    untimed = time.perf_counter() - t
    base_model.trainable = True
    if bn_frozen:  # the guide's intent, in the form Keras 3's fit honours (keras-team/keras#20285)
        for layer in base_model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    fine_s, fine_val = compile_and_fit(keras.optimizers.Adam(1e-5), fine_tune_epochs)
    t = time.perf_counter()
    y_pred = np.argmax(model.predict(test_ds, verbose=0), axis=1)
    test_s = time.perf_counter() - t
    total = time.perf_counter() - start - untimed
    model.set_weights(best.weights)  # untimed: what the best-validation epoch would have scored
    best_pred = np.argmax(model.predict(test_uncached, verbose=0), axis=1)
    names = train_ds_names
    recipe = "keras guide, as intended (BatchNorm frozen)" if bn_frozen else "keras guide, as written (BatchNorm drifts)"
    return {"recipe": recipe, "budget": [epochs, fine_tune_epochs], "epochs_run": [epochs, fine_tune_epochs],
            "best_epoch": best.epoch, "best_val_accuracy": round(float(best.best), 4),
            "best_epoch_test_accuracy": float(accuracy_score(y_true, best_pred)),
            "predictions": dict(zip(test_paths, (names[i] for i in y_pred))),
            "head_s": head_s, "fine_tune_s": fine_s, "other_s": setup + test_s,
            "total_s": total, "head_accuracy": head_acc,
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
        predictions = _imgclf_predictions(result.run_dir, root / "test")  # untimed, for the paired test
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
            "best_val_accuracy": max((r.get("val_accuracy", -1.0) for r in rows), default=None),
            "predictions": predictions,
            "batch_size": batch_size or "imgclf default"}


def _imgclf_predictions(run_dir: Path, test_dir: Path) -> dict[str, str]:
    """The run's top class for every test image, by its path under ``test_dir``."""
    from imgclf.deploy.predict import load
    paths = sorted(test_dir.glob("*/*.png"))
    rows = load(run_dir).predict_paths(paths, top_k=1)
    return {str(Path(row["path"]).relative_to(test_dir)): row["top"][0][0] for row in rows}


def conversion_cache() -> set[str]:
    """The frozen-part TFLite conversions imgclf has cached on this machine (file names)."""
    from imgclf.files import user_cache_dir
    folder = user_cache_dir() / "tflite"
    return {p.name for p in folder.glob("*.tflite")} if folder.is_dir() else set()


def paired(reference: dict, other: dict) -> dict:
    """``other`` against ``reference`` on the same test images (imgclf.evaluation.intervals)."""
    import numpy as np
    from imgclf.evaluation.intervals import metric_intervals, paired_comparison
    paths = sorted(reference["predictions"])
    if sorted(other["predictions"]) != paths:
        raise SystemExit("the two recipes predicted different test images")
    names = sorted({p.split("/")[0] for p in paths})
    y_true = np.array([names.index(p.split("/")[0]) for p in paths])
    pred = [np.array([names.index(r["predictions"][p]) for p in paths]) for r in (reference, other)]
    result = paired_comparison(y_true, pred[0], pred[1], len(names))
    ci = [metric_intervals(y_true, y, y == y_true, len(names))["accuracy"] for y in pred]
    return {"reference": reference["recipe"], "other": other["recipe"], "n": len(paths),
            "reference_accuracy_ci": ci[0], "other_accuracy_ci": ci[1], "change": result["change"],
            "change_ci": result["change_ci"], "mcnemar_p": result["mcnemar_p"], "discordant": result["discordant"]}


def child_main(args) -> None:
    import keras  # noqa: F401  (imports are not timed, for either recipe)
    import tensorflow  # noqa: F401
    e, f = args.budget
    if args.child in ("guide", "guide-as-written"):
        out = run_guide(args.root, args.image_size, e, f, args.batch_size, args.seed, args.child == "guide")
    else:
        cached_before = conversion_cache()
        out = run_imgclf(args.root, args.image_size, e, f, args.batch_size, args.seed, args.child == "imgclf-plain")
        out["conversions"] = {"cached_before": len(cached_before), "made": sorted(conversion_cache() - cached_before)}
    out["peak_rss_mb"] = _peak_rss_mb()
    Path(args.result).write_text(json.dumps(out))


def spawn(kind: str, budget: tuple[int, int], root: Path, args, log_dir: Path) -> dict:
    """Run one recipe in a fresh interpreter; its JSON result, or {"error": ...}. With
    ``--results DIR`` a result already there (a child run by hand, e.g. alongside) is read instead."""
    result = (args.results or log_dir) / f"{kind}-{budget[0]}+{budget[1]}.json"
    log = result.with_suffix(".log")
    if args.results and result.is_file():
        print(f"  {kind} {budget[0]}+{budget[1]}: read {result}", flush=True)
        return _report_conversions(kind, json.loads(result.read_text()))
    cmd = [sys.executable, __file__, "--child", kind, "--root", str(root), "--result", str(result),
           "--budget", str(budget[0]), str(budget[1]), "--image-size", str(args.image_size), "--seed", str(args.seed)]
    cmd += ["--batch-size", str(args.batch_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    print(f"  running {kind} {budget[0]}+{budget[1]} ...", flush=True)
    with log.open("w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if code or not result.is_file():
        tail = log.read_text()[-1500:]
        print(f"  {kind} failed (exit {code}); log tail:\n{tail}", flush=True)
        return {"recipe": kind, "budget": list(budget), "error": f"exit {code}", "log_tail": tail}
    return _report_conversions(kind, json.loads(result.read_text()))


def _report_conversions(kind: str, out: dict) -> dict:
    if "conversions" in out:
        c = out["conversions"]
        print(f"    TFLite conversion cache: {c['cached_before']} file(s) before; made in this run: "
              f"{', '.join(c['made']) or 'none (every conversion it used was cached)'}", flush=True)
    print(f"    {kind}: {out['total_s']:.1f} s, test accuracy {out['accuracy']:.4f}", flush=True)
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
    print(f"{NOTE}\nThe guide runs as it intends (BatchNorm in inference mode while fine-tuning: the peer "
          "row) and as written (BatchNorm drifts: keras-team/keras#20285): fixed epochs, no early stopping, "
          f"whole base unfrozen at 1e-5. Batch {args.batch_size} for every recipe. imgclf uses its defaults "
          "otherwise (early stopping, best weights kept, top blocks unfrozen, BatchNorm frozen).", flush=True)
    root = prepare_data(args.dataset, args.data_dir, args.val_fraction, args.seed)
    counts = {s: sum(1 for _ in (root / s).glob("*/*.png")) for s in ("train", "val", "test")}
    print(f"data: {root} {counts}; image size {args.image_size}; budget {args.budget[0]}+{args.budget[1]}", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="vs-keras-guide-"))
    load_before = os.getloadavg()
    guide = spawn("guide", tuple(args.budget), root, args, log_dir)
    written = spawn("guide-as-written", tuple(args.budget), root, args, log_dir)
    kinds = (["imgclf"] if not args.skip_fast else []) + (["imgclf-plain"] if args.imgclf_plain else [])
    rows, tta = [guide, written], {}
    for kind in kinds:
        full = spawn(kind, tuple(args.budget), root, args, log_dir)
        rows.append(full)
        if "error" not in guide:
            tta[kind] = time_to_accuracy(kind, full, guide["accuracy"], root, args, log_dir)
    comparisons = [paired(ref, row) for row in rows[2:] for ref in (guide, written)
                   if "error" not in row and "error" not in ref]
    print("\n" + format_table(rows))
    for g in (guide, written):
        if "error" not in g:
            v = g["val_accuracy"]
            print(f"{g['recipe']}: val accuracy per epoch: head {v['head']}, fine-tune {v['fine_tune']}; best "
                  f"epoch {g['best_epoch']} (val {g['best_val_accuracy']:.4f}, its weights' test accuracy "
                  f"{g['best_epoch_test_accuracy']:.4f}, untimed); test accuracy after the head phase "
                  f"{g['head_accuracy']:.4f} (untimed), after fine-tuning {g['accuracy']:.4f}")
    print("\npaired on the same test images (imgclf minus guide; 95% stratified paired bootstrap, McNemar):")
    for c in comparisons:
        print(f"  {c['other']} vs {c['reference']}: {100 * c['change']:+.1f} points "
              f"[{100 * c['change_ci'][0]:+.1f}, {100 * c['change_ci'][1]:+.1f}], McNemar p {c['mcnemar_p']:.2g}, "
              f"{c['discordant']} discordant of {c['n']}; accuracies {c['other_accuracy_ci']} vs {c['reference_accuracy_ci']}")
    if "error" not in guide:
        print(f"\ntime to reach the fair guide's final test accuracy {guide['accuracy']:.4f} (guide: "
              f"{guide['total_s']:.1f} s); imgclf rerun from scratch at budgets of 1+0, 1/8, 1/4, 1/2 and all "
              "of E+F, smallest first; the first that reaches it counts with its whole wall time")
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
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (shared machine: timings are noisy)")
    shutil.rmtree(log_dir, ignore_errors=True)
    for row in rows:
        row.pop("predictions", None)
    return {"dataset": args.dataset, "image_size": args.image_size, "budget": args.budget, "seed": args.seed,
            "batch_size": args.batch_size, "counts": counts, "note": NOTE, "recipes": rows,
            "paired": comparisons, "time_to_guide_accuracy": tta,
            "load_average": [load_before[0], os.getloadavg()[0]], "cpus": os.cpu_count()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist-1k")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10, help="phase 1 (head) epochs, both recipes")
    p.add_argument("--fine-tune-epochs", type=int, default=5, help="phase 2 epochs, both recipes")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per batch, every recipe (default 32: imgclf's default; the guide's text uses 64)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "imgclf-bench-data")
    p.add_argument("--imgclf-plain", action="store_true", help="also time imgclf with feature_cache=False")
    p.add_argument("--skip-fast", action="store_true", help="skip imgclf with feature_cache=True")
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="no reruns at smaller budgets: time-to-accuracy is the full run's (an upper bound)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--results", type=Path, help="folder for the recipes' results; one already there is read, "
                   "not rerun (children run by hand side by side: their times then overlap)")
    p.add_argument("--child", choices=("guide", "guide-as-written", "imgclf", "imgclf-plain"), help=argparse.SUPPRESS)
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
