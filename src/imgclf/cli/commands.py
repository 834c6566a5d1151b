"""The subcommands, each a thin call into the Python API.

Example:
    >>> COMMANDS["inspect"](build_parser().parse_args(["inspect", "photos"]))
    0
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from imgclf.cli.explain import cmd_explain
from imgclf.cli.parser import TRAIN_FLAGS
from imgclf.cli.predicting import cmd_predict, exists as _exists
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
    overrides["data.strict"] = True if args.strict_data else None
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ImgclfError(f"--set {item}: expected KEY=VALUE")
        overrides[key.strip()] = value
    if args.budget is not None:
        from imgclf.options import parse_duration
        overrides["train.budget_s"] = parse_duration(args.budget)
    cfg = load_config(args.config, {**({"data.path": args.data} if args.data else {}), **overrides})
    _mlflow_installed(args)
    _tensorflow(args)
    result = run_training(cfg, verbose=not args.quiet, cluster=_cluster(args), started=args.started,
                          show_plan=True, mlflow=args.mlflow)
    _summarise(result, args.quiet)
    return 0


def _mlflow_installed(args) -> None:
    if args.mlflow:  # before any training: a missing MLflow must not cost the run's time
        from imgclf.evaluation.tracking import check_installed
        check_installed()


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
    _mlflow_installed(args)
    _tensorflow(args)
    result = resume_training(args.resume, verbose=not args.quiet, cluster=_cluster(args), mlflow=args.mlflow)
    _summarise(result, args.quiet)
    return 0


def _cmd_evaluate(args) -> int:
    from imgclf.workflow import evaluate_run
    RunRecord.finished(args.run)
    _tensorflow(args)
    evaluate_run(args.run, data=args.data, intervals=not args.no_ci)
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


def _cmd_check(args) -> int:
    from imgclf import health
    from imgclf.data import load_dataset
    from imgclf.health.page import write_page
    if args.drop_suspects and not args.write_clean:
        raise ImgclfError("--drop-suspects goes with --write-clean FILE.csv")
    if args.write_clean and not args.write_clean.lower().endswith(".csv"):
        raise ImgclfError(f"--write-clean {args.write_clean}: expected a .csv file name")
    backbone = None if args.backbone.lower() == "none" else args.backbone
    if backbone:
        from imgclf.backbones import get_spec
        get_spec(backbone)  # an unknown name fails before the data is read
    dataset = load_dataset(args.data, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                           seed=args.seed)
    if backbone:
        _tensorflow(args)
    report = health.check_dataset(dataset, backbone=backbone, image_size=args.image_size, seed=args.seed)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format_text())
    err = sys.stderr if args.json else sys.stdout
    if args.html:
        print(f"page: {write_page(report, args.html)}", file=err)
    if args.write_clean:
        kept, left = health.write_clean_csv(report, args.write_clean, args.drop_suspects)
        print(f"clean: {args.write_clean}: {kept} images kept, {left} left out", file=err)
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
    from imgclf.serve.access import read_api_key
    _exists(args.run)
    api_key = read_api_key(args.api_key_file)  # a bad key file fails before TensorFlow loads
    _tensorflow(args, model=args.run)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_images=args.max_images,
                    max_pixels=args.max_pixels)
    serve(args.run, host=args.host, port=args.port, workers=args.workers, limits=limits, api_key=api_key,
          cors_origins=tuple(args.cors_origin), access_log=args.access_log, read_timeout=args.read_timeout,
          max_connections=args.max_connections)
    return 0


def _cmd_export(args) -> int:
    from imgclf.deploy.export import Exporter
    from imgclf.deploy.formats import FORMATS
    formats = list(FORMATS) if args.format == "all" else [args.format]
    if args.min_agreement is not None:
        raise ImgclfError("--min-agreement was replaced by --max-accuracy-drop (default 0.01): exports are now "
                          "judged by the accuracy they lose, not by agreement")
    RunRecord.finished(args.run)
    _tensorflow(args)
    exporter, failed = Exporter(args.run), 0
    for fmt in formats:
        out = Path(args.out) / FORMATS[fmt].file_name if args.out and args.format == "all" else args.out
        try:
            result = exporter.export(fmt, out, max_accuracy_drop=args.max_accuracy_drop,
                                     calibration_images=args.calibration_images, verbose=not args.quiet)
        except ImgclfError as exc:
            if len(formats) == 1:
                raise
            print(f"imgclf: error: {exc}", file=sys.stderr)  # go on with the other formats
            failed += 1
            continue
        m = result.metrics
        lo, hi = m["accuracy_change_ci"]
        print(f"{fmt}: {result.path}  {m['bytes'] / 1e6:.1f} MB  accuracy {m['accuracy']:.4f} "
              f"(Keras {m['keras_accuracy']:.4f}, change {m['accuracy_change']:+.4f} [{lo:+.4f}, {hi:+.4f}], "
              f"McNemar p {m['mcnemar_p']:.2f})  agreement {m['agreement']:.1%} on {m['n']} {m['split']} images")
    return 2 if failed else 0


def _cmd_runs(args) -> int:
    from imgclf.evaluation.runs import format_runs, list_runs
    if args.compare:
        from imgclf.evaluation.runs_page import write_comparison
        a, b = (_run_in(args.runs_dir, name) for name in args.compare)
        out = write_comparison(a, b, args.out or f"compare-{a.path.name}-{b.path.name}.html")
        print(f"wrote {out}")
        return 0
    rows = list_runs(args.runs_dir, sort=args.sort)
    print(json.dumps(rows, indent=2) if args.json else format_runs(rows))
    return 0


def _run_in(runs_dir: str, name: str) -> RunRecord:
    """A run given by its name in ``runs_dir`` or by its own path; one line if it is neither."""
    for path in (Path(runs_dir) / name, Path(name)):
        if RunRecord(path).config_path.is_file():
            return RunRecord(path)
    raise ImgclfError(f"{name}: no such run (looked in {runs_dir} and for a run directory {name})")


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": cmd_predict, "explain": cmd_explain,
            "export": _cmd_export, "inspect": _cmd_inspect, "check": _cmd_check, "backbones": _cmd_backbones,
            "datasets": _cmd_datasets,
            "serve": _cmd_serve, "runs": _cmd_runs}
