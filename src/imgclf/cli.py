"""The ``imgclf`` command: subcommands, each a thin call into the Python API.

Example:
    $ imgclf train data/fashion --epochs 5 --image-size 96
    $ imgclf predict runs/fashion shoe.png --top-k 3
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from imgclf.errors import ImgclfError

# Flags of `imgclf train` and the config keys they set; every one is optional and overrides
# the YAML config, which overrides the defaults.
TRAIN_FLAGS = [
    ("--backbone", "model.backbone", str, "pretrained base (see `imgclf backbones`; default efficientnet_lite0)"),
    ("--weights", "model.weights", str, "base weights: imagenet (default), none, or a local weights file"),
    ("--image-size", "data.image_size", int, "input side in pixels (default: from the images, 96 to the backbone's size)"),
    ("--epochs", "train.epochs", int, "phase 1 (head only) epochs at most (default 10)"),
    ("--fine-tune-epochs", "train.fine_tune_epochs", int, "phase 2 epochs at most; 0 skips fine-tuning (default 5)"),
    ("--lr", "train.lr", float, "phase 1 learning rate (default 1e-3)"),
    ("--fine-tune-lr", "train.fine_tune_lr", float, "phase 2 learning rate (default 1e-4)"),
    ("--batch-size", "data.batch_size", int, "images per batch (default 32)"),
    ("--seed", "seed", int, "one seed for split, shuffle, augmentation and initialisation (default 42)"),
    ("--name", "name", str, "run name: the run goes to RUNS_DIR/NAME (default: the data folder's name)"),
    ("--runs-dir", "runs_dir", str, "where runs are written (default runs)"),
    ("--val-fraction", "data.val_fraction", float, "validation fraction when the data has no val/ (default 0.1)"),
    ("--test-fraction", "data.test_fraction", float, "test fraction when the data has no test/ (default 0.1)"),
    ("--patience", "train.patience", int, "early-stopping patience in epochs (default 3)"),
    ("--schedule", "train.schedule", str, "learning-rate schedule: plateau (default), cosine, constant"),
    ("--label-smoothing", "train.label_smoothing", float, "label smoothing (default 0)"),
    ("--class-weights", "train.class_weights", str, "none (default) or balanced"),
    ("--dropout", "model.dropout", float, "head dropout (default 0.2)"),
    ("--hidden-units", "model.hidden_units", int, "hidden Dense layer in the head; 0 for none (default)"),
    ("--cache", "data.cache", str, "decoded images: memory (default), disk, none"),
    ("--views", "train.views", int, "views per training image in the feature cache (default 0: by data size)"),
]


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a classifier by transfer learning (two phases)",
                       description="Train a classifier on labelled images: phase 1 fits a new head on "
                                   "the frozen pretrained base, phase 2 fine-tunes the top of the base. "
                                   "Writes runs/NAME/ with the model, history, metrics, plots and report.html.")
    p.add_argument("data", nargs="?", help="a folder per class, a root with train/ val/ test/, or a CSV of path,label")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint "
                   "(its own config and split are used; other options are refused)")
    p.add_argument("--config", help="YAML config file; flags override it")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fine-tune-layers", type=int, help="unfreeze the top N weighted layers of the base")
    group.add_argument("--fine-tune-blocks", type=int, help="unfreeze the top K blocks of the base (default: the backbone's)")
    for flag, _, kind, text in TRAIN_FLAGS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, e.g. --set data.augment.zoom=0.2 (repeatable)")
    p.add_argument("--plain", action="store_true",
                   help="no feature cache: run the whole network on every image in every epoch (slower; "
                        "for comparison)")
    p.add_argument("--workers", metavar="HOST:PORT,...",
                   help="data-parallel training on several machines (MultiWorkerMirroredStrategy): every "
                        "worker's address, the same list on each; run the same command on each machine "
                        "with its own --worker-index. Without it, TF_CONFIG is used when set")
    p.add_argument("--worker-index", type=int, metavar="I",
                   help="this machine's position in --workers (0 is the chief, which writes the run)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _cluster(args):
    from imgclf.distribute import configure_cluster
    workers = [w.strip() for w in args.workers.split(",") if w.strip()] if args.workers else None
    return configure_cluster(workers, args.worker_index)


def _cmd_train(args) -> int:
    if args.resume:
        return _cmd_resume(args)
    from imgclf.config import load_config
    from imgclf.workflow import run_training
    overrides = {key: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, key, _, _ in TRAIN_FLAGS}
    overrides["train.fine_tune_layers"] = args.fine_tune_layers
    overrides["train.fine_tune_blocks"] = args.fine_tune_blocks
    overrides["train.feature_cache"] = False if args.plain else None
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ImgclfError(f"--set {item}: expected KEY=VALUE")
        overrides[key.strip()] = value
    cfg = load_config(args.config, {**({"data.path": args.data} if args.data else {}), **overrides})
    result = run_training(cfg, verbose=not args.quiet, cluster=_cluster(args))
    _summarise(result, args.quiet)
    return 0


def _summarise(result, quiet: bool) -> None:
    if result.run_dir is None:
        print(f"worker done after {len(result.history)} epochs; the chief (worker 0) wrote the run")
        return
    if quiet and result.metrics:  # verbose runs have printed the full table already
        m = result.metrics
        print(f"test: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro']['f1']:.4f}, "
              f"top-{m['top_k']} {m['top_k_accuracy']:.4f} on {m['n']} images")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.html'})")


def _cmd_resume(args) -> int:
    from imgclf.workflow import resume_training
    given = [flag for flag, *_ in TRAIN_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) is not None]
    given += ["DATA"] * bool(args.data) + ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
    if given:
        raise ImgclfError(f"--resume continues a run with its own settings; drop {', '.join(given)}")
    result = resume_training(args.resume, verbose=not args.quiet, cluster=_cluster(args))
    _summarise(result, args.quiet)
    return 0


def _cmd_evaluate(args) -> int:
    from imgclf.workflow import evaluate_run
    evaluate_run(args.run, data=args.data)
    return 0


def _expand(items: list[str]):
    from imgclf.images import IMAGE_EXTENSIONS
    for item in items:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    yield f
        elif path.exists():
            yield path
        else:
            raise ImgclfError(f"{path}: no such file or folder")


def _cmd_predict(args) -> int:
    from imgclf.predict import load
    clf = load(args.run, num_threads=args.threads)
    rows = clf.predict_paths(_expand(args.images), top_k=args.top_k, batch_size=args.batch_size)
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer:
        writer.writerow(["path", "rank", "label", "probability", "error"])
    failed = 0
    for row in rows:
        failed += row["error"] is not None
        if args.format == "json":
            print(json.dumps({"path": row["path"], "error": row["error"],
                              "top": [{"label": c, "probability": round(p, 6)} for c, p in row["top"]]}))
        elif writer:
            if row["error"]:
                writer.writerow([row["path"], "", "", "", row["error"]])
            for rank, (label, prob) in enumerate(row["top"], 1):
                writer.writerow([row["path"], rank, label, f"{prob:.6f}", ""])
        elif row["error"]:
            print(f"{row['path']}  ERROR: {row['error']}")
        else:
            print(f"{row['path']}  " + "  ".join(f"{c} {p:.1%}" for c, p in row["top"]))
        sys.stdout.flush()
    if failed:
        print(f"imgclf: {failed} file(s) could not be read (listed above)", file=sys.stderr)
    return 0


def _cmd_inspect(args) -> int:
    from imgclf.data import load_dataset
    dataset = load_dataset(args.data, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                           seed=args.seed)
    if args.json:
        print(json.dumps(dataset.report.to_dict(), indent=2))
    else:
        print(dataset.report.format_text())
    return 0


def _cmd_backbones(args) -> int:
    from imgclf import backbones
    if not args.verify:
        print(backbones.format_table())
        return 0
    for result in backbones.verify(args.names or None):
        print(backbones.format_verify(result))
    return 0


def _cmd_datasets(args) -> int:
    from imgclf import datasets
    if args.dataset == "fashion-mnist":
        summary = datasets.write_fashion_mnist(args.out, source=args.source, seed=args.seed,
                                               train_per_class=args.train_per_class,
                                               test_per_class=args.test_per_class)
    else:
        summary = datasets.write_digits(args.out, per_class=args.per_class, seed=args.seed)
    counts = summary["counts"]
    splits = counts if all(isinstance(v, dict) for v in counts.values()) else {"all": counts}
    parts = ", ".join(f"{split} {sum(c.values())}" for split, c in splits.items())
    print(f"wrote {summary['dataset']} to {summary['out_dir']}: {len(summary['classes'])} classes, "
          f"{parts} images")
    return 0


def _cmd_serve(args) -> int:
    from imgclf.serve import Limits, serve
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_images=args.max_images,
                    max_pixels=args.max_pixels)
    serve(args.run, host=args.host, port=args.port, workers=args.workers, limits=limits)
    return 0


def _cmd_export(args) -> int:
    from imgclf.export import FORMATS, Exporter
    formats = list(FORMATS) if args.format == "all" else [args.format]
    exporter, failed = Exporter(args.run), 0
    for fmt in formats:
        out = Path(args.out) / FORMATS[fmt] if args.out and args.format == "all" else args.out
        try:
            result = exporter.export(fmt, out, min_agreement=args.min_agreement,
                                     calibration_images=args.calibration_images, verbose=not args.quiet)
        except ImgclfError as exc:
            if len(formats) == 1:
                raise
            print(f"imgclf: error: {exc}", file=sys.stderr)  # go on with the other formats
            failed += 1
            continue
        m = result.metrics
        print(f"{fmt}: {result.path}  {m['bytes'] / 1e6:.1f} MB  accuracy {m['accuracy']:.4f} "
              f"(Keras {m['keras_accuracy']:.4f})  agreement {m['agreement']:.1%} on {m['n']} {m['split']} images")
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand.

    Example:
        >>> build_parser().parse_args(["inspect", "photos"]).command
        'inspect'
    """
    parser = argparse.ArgumentParser(prog="imgclf", description="Train, evaluate and ship image "
                                     "classifiers by transfer learning, offline and fast on a CPU.")
    from imgclf import __version__
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    p = sub.add_parser("evaluate", help="evaluate a run on its test split or another labelled folder",
                       description="Accuracy, precision, recall, F1 (per class, macro, weighted), top-k "
                                   "accuracy and the confusion matrix; writes metrics.json and plots.")
    p.add_argument("run", help="a run directory (runs/NAME)")
    p.add_argument("--data", help="a labelled dataset to evaluate on instead of the run's test split")
    p = sub.add_parser("predict", help="predict classes of images with a trained run or exported model",
                       description="Predict the top-k classes of image files or folders (searched "
                                   "recursively), streaming in batches; unreadable files are reported. "
                                   "The model is a run directory or an exported model (.keras, .tflite "
                                   "run by LiteRT, or a SavedModel folder).")
    p.add_argument("run", metavar="RUN_OR_MODEL",
                   help="a run directory (runs/NAME) or an exported model file or SavedModel folder")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table (default), json (one object per line) or csv")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="LiteRT threads for a .tflite model (default: every CPU)")
    p = sub.add_parser("export", help="export a run to Keras, SavedModel or TFLite, checked against it",
                       description="Export a run with its preprocessing (input: 0-255 RGB at the model's "
                                   "size) and class names inside. Each export runs on the run's test split "
                                   "and is refused unless its top-1 agreement with the Keras model reaches "
                                   "the threshold; results go to RUN/export/metrics.json.")
    p.add_argument("run", help="a run directory (runs/NAME)")
    p.add_argument("--format", default="tflite",
                   choices=["keras", "savedmodel", "tflite", "tflite-dynamic", "tflite-int8", "all"],
                   help="tflite (float32, default), tflite-dynamic (int8 weights), tflite-int8 (full "
                        "integer, uint8 input), savedmodel, keras, or all of them")
    p.add_argument("--out", help="the model file or SavedModel folder (with --format all: a folder); "
                                 "default RUN/export/")
    p.add_argument("--min-agreement", type=float,
                   help="least top-1 agreement with the Keras model, 0-1 (default 0.99 float, 0.97 quantised)")
    p.add_argument("--calibration-images", type=int, default=200,
                   help="training images that calibrate int8 ranges (default 200)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary lines")
    p = sub.add_parser("inspect", help="report on a dataset without training",
                       description="Classes, counts per split, image sizes and modes, imbalance, and every "
                                   "skipped file with the reason.")
    p.add_argument("data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p = sub.add_parser("backbones", help="list the pretrained backbones (or verify their weights)",
                       description="List backbones with input size, feature width, blocks and weight source. "
                                   "--verify runs each one whose weights are present on scikit-image's "
                                   "sample photos and prints its top-5 ImageNet labels.")
    p.add_argument("--verify", action="store_true", help="run the ImageNet heads on sample photos")
    p.add_argument("names", nargs="*", help="backbones to verify (default: all with weights present)")
    p = sub.add_parser("datasets", help="write a real dataset as class folders (offline)",
                       description="Write Fashion-MNIST (from Debian's dataset-fashion-mnist, --source, "
                                   "or a download when online) or scikit-learn's digits as class folders.")
    p.add_argument("dataset", choices=["fashion-mnist", "digits"])
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--source", help="folder with the four Fashion-MNIST .gz files")
    p.add_argument("--train-per-class", type=int, help="fashion-mnist: keep N training images per class")
    p.add_argument("--test-per-class", type=int, help="fashion-mnist: keep N test images per class")
    p.add_argument("--per-class", type=int, help="digits: keep N images per class")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("serve", help="serve a model: HTTP API and a web page",
                       description="Serve a run (or exported model) with FastAPI and uvicorn: POST /predict "
                                   "(multipart, JSON base64 or a raw image), GET /health, GET /model, "
                                   "/openapi.json, and a web page at /. Binds to loopback unless --host says otherwise.")
    p.add_argument("run", metavar="RUN_OR_MODEL", help="a run directory (runs/NAME) or an exported model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes, each loading the model once (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="request body limit in MiB (default 10)")
    p.add_argument("--max-images", type=int, default=16, help="images per request (default 16)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="pixels per image (default 25 million)")
    return parser


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "export": _cmd_export,
            "inspect": _cmd_inspect, "backbones": _cmd_backbones, "datasets": _cmd_datasets,
            "serve": _cmd_serve}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imgclf`` command; returns the exit status.

    Example:
        >>> main(["backbones"])
        0
    """
    # Process-wide settings belong here, in the command, never at import of the package.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ImgclfError as exc:
        print(f"imgclf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgclf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
