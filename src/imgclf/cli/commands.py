"""The subcommands, each a thin call into the Python API.

Example:
    >>> COMMANDS["inspect"](build_parser().parse_args(["inspect", "photos"]))
    0
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from imgclf.cli.parser import TRAIN_FLAGS
from imgclf.errors import ImgclfError
from imgclf.record import RunRecord


def _tensorflow(args, model: str | None = None) -> None:
    """Import TensorFlow now, before anything else does, without its C++ start-up lines (all of
    them with --verbose); a no-op for a model file that runs without it (``model``).

    Commands call it once their cheap checks have passed, so a typo costs no TensorFlow import."""
    from imgclf.deploy.formats import runs_without_tensorflow
    if args.verbose or (model is not None and runs_without_tensorflow(model)):
        return
    from imgclf.console import import_tensorflow_quietly
    import_tensorflow_quietly()


def _cluster(args):
    from imgclf.training.distribute import configure_cluster
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
    if args.budget is not None:
        from imgclf.options import parse_duration
        overrides["train.budget_s"] = parse_duration(args.budget)
    cfg = load_config(args.config, {**({"data.path": args.data} if args.data else {}), **overrides})
    _tensorflow(args)
    result = run_training(cfg, verbose=not args.quiet, cluster=_cluster(args), started=args.started,
                          show_plan=True)
    _summarise(result, args.quiet)
    return 0


def _summarise(result, quiet: bool) -> None:
    if result.run_dir is None:
        print(f"worker done after {len(result.history)} epochs; the chief (worker 0) wrote the run")
        return
    if quiet and result.metrics:  # verbose runs have printed the full table already
        from imgclf.evaluation.metrics import summary_line
        print(f"test: {summary_line(result.metrics)}")
    print(f"run: {result.run_dir}  (report: {result.run_dir / 'report.html'})")


def _cmd_resume(args) -> int:
    from imgclf.workflow import resume_training
    given = [flag for flag, *_ in TRAIN_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) is not None]
    given += ["DATA"] * bool(args.data) + ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
    given += ["--budget"] * (args.budget is not None)
    if given:
        raise ImgclfError(f"--resume continues a run with its own settings; drop {', '.join(given)}")
    RunRecord.interrupted(args.resume)
    _tensorflow(args)
    result = resume_training(args.resume, verbose=not args.quiet, cluster=_cluster(args))
    _summarise(result, args.quiet)
    return 0


def _cmd_evaluate(args) -> int:
    from imgclf.workflow import evaluate_run
    RunRecord.finished(args.run)
    _tensorflow(args)
    evaluate_run(args.run, data=args.data)
    return 0


def _expand(items: list[str]):
    from imgclf.data.images import IMAGE_EXTENSIONS
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
    from imgclf.deploy.predict import load
    _exists(args.run)
    _tensorflow(args, model=args.run)
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
    _tensorflow(args)
    for result in backbones.verify(args.names or None):
        print(backbones.format_verify(result))
    return 0


def _cmd_datasets(args) -> int:
    from imgclf.data import datasets
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
    _exists(args.run)
    _tensorflow(args, model=args.run)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_images=args.max_images,
                    max_pixels=args.max_pixels)
    serve(args.run, host=args.host, port=args.port, workers=args.workers, limits=limits,
          read_timeout=args.read_timeout, max_connections=args.max_connections)
    return 0


def _cmd_export(args) -> int:
    from imgclf.deploy.export import Exporter
    from imgclf.deploy.formats import FORMATS
    formats = list(FORMATS) if args.format == "all" else [args.format]
    RunRecord.finished(args.run)
    _tensorflow(args)
    exporter, failed = Exporter(args.run), 0
    for fmt in formats:
        out = Path(args.out) / FORMATS[fmt].file_name if args.out and args.format == "all" else args.out
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


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "export": _cmd_export,
            "inspect": _cmd_inspect, "backbones": _cmd_backbones, "datasets": _cmd_datasets,
            "serve": _cmd_serve}


def _exists(path: str) -> None:
    if not Path(path).exists():
        raise ImgclfError(f"{path}: no such run directory or model file")
