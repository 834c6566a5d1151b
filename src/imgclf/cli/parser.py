"""The ``imgclf`` command's arguments: every subcommand, its flags and their help.

Example:
    >>> build_parser().parse_args(["inspect", "photos"]).command
    'inspect'
"""
from __future__ import annotations

import argparse

# Flags of `imgclf train` and the config keys they set; every one is optional and overrides
# the YAML config, which overrides the defaults.
TRAIN_FLAGS = [
    ("--backbone", "model.backbone", str, "pretrained base (see `imgclf backbones`; default efficientnet_lite0)"),
    ("--weights", "model.weights", str, "base weights: imagenet (default), none, or a local weights file"),
    ("--image-size", "data.image_size", int, "input side in pixels (default: planned)"),
    ("--epochs", "train.epochs", int, "phase 1 (head only) epochs at most (default: planned)"),
    ("--fine-tune-epochs", "train.fine_tune_epochs", int, "phase 2 epochs at most; 0 skips fine-tuning (default: planned)"),
    ("--lr", "train.lr", float, "phase 1 learning rate (default 1e-3)"),
    ("--fine-tune-lr", "train.fine_tune_lr", float, "phase 2 learning rate (default 3e-4)"),
    ("--batch-size", "data.batch_size", int, "images per batch (default 32)"),
    ("--seed", "seed", int, "one seed for split, shuffle, augmentation and initialisation (default 42)"),
    ("--name", "name", str, "run name: the run goes to RUNS_DIR/NAME (default: the data folder's name)"),
    ("--runs-dir", "runs_dir", str, "where runs are written (default runs)"),
    ("--val-fraction", "data.val_fraction", float, "validation fraction when the data has no val/ (default 0.1)"),
    ("--test-fraction", "data.test_fraction", float, "test fraction when the data has no test/ (default 0.1)"),
    ("--patience", "train.patience", int, "early-stopping patience in epochs (default 3)"),
    ("--schedule", "train.schedule", str, "learning-rate schedule: auto (default: cosine when planned), plateau, cosine, constant"),
    ("--keep", "train.keep", str, "weights to end with: best (lowest validation loss), last (the last epoch's), auto (default: last under a cosine schedule)"),
    ("--test-time-flip", "train.test_time_flip", str, "average each prediction with its mirror image's: off (default), on, or auto (when it helps validation and training flips horizontally)"),
    ("--label-smoothing", "train.label_smoothing", float, "label smoothing (default 0)"),
    ("--mixup", "train.mixup", float, "mixup on the cached features: Beta(a, a)'s a, e.g. 0.2 (default 0: off)"),
    ("--class-weights", "train.class_weights", str, "none (default) or balanced"),
    ("--dropout", "model.dropout", float, "head dropout (default 0.2)"),
    ("--hidden-units", "model.hidden_units", int, "hidden Dense layer in the head; 0 for none (default)"),
    ("--cache", "data.cache", str, "decoded images: memory (default), disk, none"),
    ("--views", "train.views", int, "views per training image in the feature cache (default 0: planned)"),
]


def _add_train(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a classifier by transfer learning (two phases)",
                       description="Train a classifier on labelled images: phase 1 fits a new head on "
                                   "the frozen pretrained base, phase 2 fine-tunes the top of the base. "
                                   "Writes runs/NAME/ with the model, history, metrics, plots and report.html.")
    p.add_argument("data", nargs="?", help="a folder per class, a root with train/ val/ test/, or a CSV of path,label")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint "
                   "(its own config and split are used; other options are refused)")
    p.add_argument("--config", help="YAML config file; flags override it")
    p.add_argument("--budget", metavar="DURATION",
                   help="time for the whole run, e.g. 90s, 10m, 1h: the input size, depth, views and epochs "
                        "you leave open are planned to fit it (default: what the former fixed recipe is "
                        "expected to take on this machine, measured by the probe)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fine-tune-layers", type=int, help="unfreeze the top N weighted layers of the base")
    group.add_argument("--fine-tune-blocks", type=int, help="unfreeze the top K blocks of the base (default: planned)")
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
    p.add_argument("--mlflow", action="store_true",
                   help="log the finished run to MLflow: config as params, history and test metrics as "
                        "metrics, report, plots and model as artefacts; to $MLFLOW_TRACKING_URI (which also "
                        "turns this on) or a local file store RUNS_DIR/mlruns. Needs imgclf[mlflow]")
    p.add_argument("--strict-data", action="store_true",
                   help="refuse to train when a val/test image is an identical copy of a train image")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand.

    Example:
        >>> build_parser().parse_args(["inspect", "photos"]).command
        'inspect'
    """
    from imgclf import __version__
    parser = argparse.ArgumentParser(prog="imgclf", description="Train, evaluate and ship image "
                                     "classifiers by transfer learning, offline and fast on a CPU.")
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's own start-up log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_predict, _add_explain, _add_export, _add_inspect, _add_check,
                _add_backbones, _add_datasets, _add_serve, _add_runs):
        add(sub, common)
    return parser


def _add_evaluate(sub, common) -> None:
    p = sub.add_parser("evaluate", parents=[common],
                       help="evaluate a run on its test split or another labelled folder",
                       description="Accuracy, precision, recall, F1 (per class, macro, weighted), top-k "
                                   "accuracy and the confusion matrix; writes metrics.json and plots.")
    p.add_argument("run", help="a run directory (runs/NAME)")
    p.add_argument("--data", help="a labelled dataset to evaluate on instead of the run's test split")
    p.add_argument("--no-ci", action="store_true",
                   help="skip the 95%% bootstrap confidence intervals (faster on very large test sets)")


def _model_kinds() -> str:
    from imgclf.deploy.formats import FORMATS
    suffixes = sorted({row.suffix for row in FORMATS.values() if row.suffix})
    return f"a run directory (runs/NAME), an exported {', '.join(suffixes)} file or a SavedModel folder"


def _add_predict(sub, common) -> None:
    p = sub.add_parser("predict", parents=[common],
                       help="predict classes of images with a trained run or exported model",
                       description="Predict the top-k classes of image files or folders (searched "
                                   "recursively), streaming in batches; unreadable files are reported. "
                                   f"The model is {_model_kinds()}.")
    p.add_argument("run", metavar="RUN_OR_MODEL", help=_model_kinds())
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--format", choices=["table", "json", "csv"],
                   help="table (default), json (one object per line) or csv; with --out, from its suffix")
    p.add_argument("--out", metavar="FILE", help="write csv or json rows to FILE, each image's rows whole; "
                   "run again, it predicts only the images not yet in FILE")
    p.add_argument("--shard", metavar="I/N", help="predict only shard I of N (1-based) of the input list (files "
                   "in the order given, folders sorted): contiguous slices, for N jobs of a scheduler; needs --out")
    p.add_argument("--merge", nargs="+", metavar="FILE", help="merge the shards' --out files into --out, rows in "
                   "input order (the same IMAGE_OR_DIR as the shards; the model is not loaded)")
    p.add_argument("--workers", metavar="HOST:PORT,...", help="as for train (or TF_CONFIG, with --out): worker I "
                   "predicts shard I+1 of N into OUT.part-..., the chief (0) waits and merges them into --out; the "
                   "folder of --out must be shared")
    p.add_argument("--worker-index", type=int, metavar="I", help="this machine's position in --workers")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64); shards are "
                   "cut on whole batches, so shards merged equal one process byte for byte at the same size")
    p.add_argument("--threads", type=int, help="LiteRT / ONNX Runtime threads (default: every CPU)")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="answer \"unknown\" when the top (calibrated) probability is below P, 0-1 (default 0: "
                        "always answer); the report's coverage table shows what each P costs")
    p.add_argument("--target-accuracy", type=float, metavar="A",
                   help="instead of --min-confidence: the lowest confidence at which the run's validation "
                        "images were at least A accurate (0-1); says the test coverage at it")


def _add_explain(sub, common) -> None:
    p = sub.add_parser("explain", parents=[common], help="show where a run's model looked (Grad-CAM overlays)",
                       description="For each image, the run's answer and its calibrated confidence over a "
                                   "Grad-CAM heat map of that answer (computed on the trained Keras model): one "
                                   "DIR/<name>.gradcam.png per image.")
    p.add_argument("run", metavar="RUN", help="a finished run directory (runs/NAME); exports have no gradients")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays (created if missing)")


def _add_export(sub, common) -> None:
    from imgclf.deploy.formats import FORMATS
    p = sub.add_parser("export", parents=[common], help="export a run to other formats, each checked against it",
                       description="Export a run with its preprocessing (input: 0-255 RGB at the model's "
                                   "size) and class names inside. Each export runs on the run's test split "
                                   "and is refused only when it loses significantly more accuracy than "
                                   "--max-accuracy-drop against the Keras model on the same images (the "
                                   "one-sided 95% paired-bootstrap lower bound of the drop exceeds it); "
                                   "agreement, the change with its interval and a per-class table go to "
                                   "RUN/export/metrics.json.")
    p.add_argument("run", help="a run directory (runs/NAME)")
    p.add_argument("--format", default="tflite", choices=[*FORMATS, "all"],
                   help="; ".join(f"{row.name}: {row.summary}" for row in FORMATS.values())
                   + "; all: every one (default tflite)")
    p.add_argument("--out", help="the model file or SavedModel folder (with --format all: a folder); "
                                 "default RUN/export/")
    p.add_argument("--max-accuracy-drop", type=float, default=0.01,
                   help="refuse an export whose accuracy drop is significantly larger than this, 0-1 "
                        "(default 0.01: one point)")
    p.add_argument("--min-agreement", type=float, help=argparse.SUPPRESS)  # replaced; commands explains
    p.add_argument("--calibration-images", type=int, default=200,
                   help="training images that calibrate int8 ranges (default 200)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary lines")


def _add_inspect(sub, common) -> None:
    p = sub.add_parser("inspect", parents=[common], help="report on a dataset without training",
                       description="Classes, counts per split, image sizes and modes, imbalance, and every "
                                   "skipped file with the reason.")
    p.add_argument("data")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)


def _add_check(sub, common) -> None:
    p = sub.add_parser("check", parents=[common], help="find duplicates, train/test leakage, label errors, outliers",
                       description="Check a dataset (any layout `train` accepts, split as `train` splits it "
                                   "with the same seed): exact duplicates (bytes, pixels), near duplicates "
                                   "(perceptual hash, backbone features), leakage across splits, conflicting "
                                   "labels, likely label errors (cleanlab), outliers, tiny images, extreme "
                                   "aspect ratios, grayscale among colour and class imbalance.")
    p.add_argument("data")
    p.add_argument("--json", action="store_true", help="print every finding as JSON instead of the summary")
    p.add_argument("--html", metavar="OUT", help="write a self-contained page with thumbnails of each finding")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="backbone whose features compare images (default efficientnet_lite0); none: hashes only")
    p.add_argument("--image-size", type=int, default=0, help="its input side (default: as `train` chooses)")
    p.add_argument("--write-clean", metavar="FILE.csv",
                   help="write path,label,split with duplicates collapsed and leaked copies out of val/test")
    p.add_argument("--drop-suspects", action="store_true",
                   help="with --write-clean: also leave out likely label errors and outliers")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)


def _add_backbones(sub, common) -> None:
    p = sub.add_parser("backbones", parents=[common], help="list the pretrained backbones (or verify their weights)",
                       description="List backbones with input size, feature width, blocks and weight source. "
                                   "--verify runs each one whose weights are present on scikit-image's "
                                   "sample photos and prints its top-5 ImageNet labels.")
    p.add_argument("--verify", action="store_true", help="run the ImageNet heads on sample photos")
    p.add_argument("names", nargs="*", help="backbones to verify (default: all with weights present)")


def _add_datasets(sub, common) -> None:
    p = sub.add_parser("datasets", parents=[common], help="write a real dataset as class folders (offline)",
                       description="Write Fashion-MNIST (from Debian's dataset-fashion-mnist, --source, "
                                   "or a download when online) or scikit-learn's digits as class folders.")
    p.add_argument("dataset", choices=["fashion-mnist", "digits"])
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--source", help="folder with the four Fashion-MNIST .gz files")
    p.add_argument("--train-per-class", type=int, help="fashion-mnist: keep N training images per class")
    p.add_argument("--test-per-class", type=int, help="fashion-mnist: keep N test images per class")
    p.add_argument("--per-class", type=int, help="digits: keep N images per class")
    p.add_argument("--seed", type=int, default=0)


def _add_serve(sub, common) -> None:
    p = sub.add_parser("serve", parents=[common], help="serve a model: HTTP API and a web page",
                       description="Serve a run (or exported model) with FastAPI and uvicorn: POST /predict "
                                   "(multipart, JSON base64 or a raw image), GET /health, GET /model, "
                                   "/openapi.json, and a web page at /. Binds to loopback unless --host says "
                                   "otherwise.")
    p.add_argument("run", metavar="RUN_OR_MODEL", help=_model_kinds())
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes, each loading the model once (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="request body limit in MiB (default 10)")
    p.add_argument("--max-images", type=int, default=16, help="images per request (default 16)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="pixels per image (default 25 million)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="require 'Authorization: Bearer <key>' on /predict and /model, the key being this "
                        "file's first line (default: $IMGCLF_API_KEY if set; /health stays open)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. https://app.example.com) call the API (repeatable)")
    p.add_argument("--access-log", action="store_true",
                   help="one line per request: time, client, method, path, status, latency ms, images")
    p.add_argument("--read-timeout", type=float, default=10.0,
                   help="seconds a client has to send a whole request; slower ones are cut off (default 10)")
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections at most; more are answered 503 (default 256)")


def _add_runs(sub, common) -> None:
    p = sub.add_parser("runs", parents=[common], help="list the runs in a folder, or compare two",
                       description="A table of the runs in RUNS_DIR: name, date, backbone, image size, "
                                   "budget, wall time, test accuracy and macro-F1 (with intervals when "
                                   "metrics.json has them), epochs, complete or interrupted. --compare A B "
                                   "writes one HTML page with both runs' curves, per-class F1 and "
                                   "confusion matrices side by side.")
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR", help="default runs")
    p.add_argument("--sort", default="date", metavar="KEY",  # checked by list_runs: no import here
                   help="name, date (default), backbone, size, budget, wall, accuracy, macro_f1 or status; "
                        "metrics sort best first")
    p.add_argument("--json", action="store_true", help="one JSON list of the rows")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two runs (names in RUNS_DIR, or run directories) to put side by side")
    p.add_argument("--out", help="with --compare: the HTML file (default compare-A-B.html)")
