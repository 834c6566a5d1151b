"""``imgclf predict``: to the terminal, into a file that resumes (``--out``, ``--shard I/N``),
merging shard files (``--merge``), or one shard a worker under the cluster flags
(``--workers``, merged on the chief through the shared folder of ``--out``); the rows come
from ``deploy.Classifier.predict_paths`` and their file format from ``deploy.batch``.

Example:
    $ imgclf predict runs/fashion photos --shard 1/2 --out preds-1.csv
    $ imgclf predict runs/fashion photos --shard 2/2 --out preds-2.csv
    $ imgclf predict runs/fashion photos --merge preds-1.csv preds-2.csv --out preds.csv
"""
from __future__ import annotations

import sys
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.record import RunRecord


def cmd_predict(args) -> int:
    from imgclf.data.shards import Shard
    from imgclf.deploy.batch import format_for_file
    if args.merge:
        return _merge(args)
    if args.batch_size < 1:
        raise ImgclfError(f"--batch-size {args.batch_size}: expected a whole number of at least 1")
    exists(args.run)
    shard = Shard.parse(args.shard) if args.shard else None
    cluster = _cluster(args)
    if cluster.size > 1:
        if shard or not args.out:
            raise ImgclfError("--workers predicts one shard a worker and merges them on the chief: it needs "
                              "--out FILE (in a folder every worker can write) and no --shard")
        shard = Shard(cluster.index, cluster.size)
    if shard and not args.out:
        raise ImgclfError("--shard needs --out FILE: the shard's own output, which running it again resumes")
    if args.format == "table" and args.out:
        raise ImgclfError("--out writes csv or json, not table")
    fmt = format_for_file(args.out, args.format) if args.out else (args.format or "table")
    min_confidence = _min_confidence(args)
    every = inputs(args.images, unique=bool(args.out))
    paths = shard.take(every, unit=args.batch_size) if shard else every  # one process's batches
    _tensorflow(args, args.run)
    from imgclf.deploy.predict import load
    clf = load(args.run, num_threads=args.threads)
    if cluster.size > 1:
        out, args.out = args.out, _part(args.out, shard)
        _predict_to_file(args, clf, paths, fmt, min_confidence, shard)
        if cluster.is_chief:
            return _gather(every, out, fmt, cluster)
        print(f"imgclf: {cluster.describe()}: shard written to {args.out}; the chief merges it", file=sys.stderr)
        return 0
    if args.out:
        return _predict_to_file(args, clf, paths, fmt, min_confidence, shard)
    from imgclf.deploy.batch import header
    sys.stdout.write(header(fmt) if fmt != "table" else "")
    failed = 0
    for row in _rows(args, clf, paths, min_confidence):
        failed += row["error"] is not None
        _print_row(row, fmt, min_confidence)
        sys.stdout.flush()
    if failed:
        print(f"imgclf: {failed} file(s) could not be read (listed above)", file=sys.stderr)
    return 0


def _rows(args, clf, paths, min_confidence):
    from imgclf.ranking import answer
    rows = clf.predict_paths(paths, top_k=args.top_k, batch_size=args.batch_size)
    return ({**row, "label": answer(row["top"], min_confidence)} for row in rows)


def _print_row(row: dict, fmt: str, min_confidence: float) -> None:
    from imgclf.deploy.batch import row_text
    if fmt != "table":
        sys.stdout.write(row_text(row, fmt))
    elif row["error"]:
        print(f"{row['path']}  ERROR: {row['error']}")
    else:
        shown = "  ".join(f"{c} {p:.1%}" for c, p in row["top"])
        print(f"{row['path']}  " + (f"unknown (below {min_confidence:.0%}; {shown})" if row["label"] == "unknown" else shown))


def _predict_to_file(args, clf, paths, fmt, min_confidence, shard) -> int:
    from imgclf.deploy.batch import ShardOutput
    out = ShardOutput(args.out, fmt, paths, ranks=max(1, min(args.top_k, len(clf.class_names))),
                      batch=args.batch_size)
    which = f"shard {shard}: " if shard else ""
    print(f"imgclf: {which}{len(paths)} images, {out.done} already in {args.out}", file=sys.stderr)
    failed = 0
    for row in _rows(args, clf, out.todo(), min_confidence):
        failed += row["error"] is not None
        out.write(row)
    if failed:
        print(f"imgclf: {failed} file(s) could not be read (their rows in {args.out} give the reason)",
              file=sys.stderr)
    return 0


def _cluster(args):
    """The cluster of --workers/--worker-index; TF_CONFIG counts only with --out and without
    --shard (a stray TF_CONFIG must not change where plain predictions or a shard go)."""
    from imgclf.training.distribute import Cluster
    if args.workers or args.worker_index is not None or (args.out and not args.shard):
        from imgclf.cli.commands import _cluster as cluster
        return cluster(args)
    return Cluster()


def _part(out: str, shard) -> str:
    return f"{out}.part-{shard.index + 1}-of-{shard.count}"


def _gather(every, out: str, fmt: str, cluster, patience_s: float = 600.0) -> int:
    """On the chief: wait for every worker's part (beside ``out``: a folder they all reach), then
    merge them into ``out`` and remove them. A part that stops growing for ``patience_s`` is
    a worker that died: one line says to run it again (it resumes)."""
    import time

    from imgclf.data.shards import Shard
    from imgclf.deploy.batch import merge
    parts = [Path(_part(out, Shard(i, cluster.size))) for i in range(cluster.size)]
    print(f"imgclf: {cluster.describe()}: waiting for the other workers' shards", file=sys.stderr)
    last, changed = None, time.monotonic()
    while True:
        sizes = [p.stat().st_size if p.exists() else -1 for p in parts]
        if sizes != last:
            last, changed = sizes, time.monotonic()
        try:
            failed = merge(every, [p for p in parts if p.exists()], out, fmt)
            break
        except ImgclfError as exc:
            waiting = "have no prediction" in str(exc) or "cut off" in str(exc)
            if not waiting or time.monotonic() - changed > patience_s:
                raise
        time.sleep(0.5)
    for p in parts:
        p.unlink()
    print(f"imgclf: merged {len(parts)} workers' shards into {out}"
          + (f"; {failed} file(s) could not be read (their rows give the reason)" if failed else ""), file=sys.stderr)
    return 0


def _merge(args) -> int:
    from imgclf.deploy.batch import format_for_file, merge
    if args.shard or not args.out:
        raise ImgclfError("--merge FILE... goes with --out FILE (the merged output) and without --shard")
    out = Path(args.out)
    if any(Path(f).resolve() == out.resolve() for f in args.merge):
        raise ImgclfError(f"--out {out} is one of the files to merge; choose another name")
    fmt = format_for_file(out, args.format)
    failed = merge(inputs(args.images, unique=True), args.merge, out, fmt)
    print(f"imgclf: merged {len(args.merge)} file(s) into {out}"
          + (f"; {failed} file(s) could not be read (their rows give the reason)" if failed else ""), file=sys.stderr)
    return 0


def inputs(items: list[str], unique: bool = False) -> list[Path]:
    """The image files named on the command line, in order: files as given, folders searched
    recursively in sorted order. ``unique``: refuse a file named twice (a file output holds each
    image once)."""
    from imgclf.data.images import IMAGE_EXTENSIONS
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += [f for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        elif path.exists():
            paths.append(path)
        else:
            raise ImgclfError(f"{path}: no such file or folder")
    if unique and len(set(map(str, paths))) != len(paths):
        seen: set[str] = set()
        twice = next(p for p in map(str, paths) if p in seen or seen.add(p))
        raise ImgclfError(f"{twice} is named twice in the input; a file output holds each image once")
    return paths


def _min_confidence(args) -> float:
    """--min-confidence, or the threshold --target-accuracy picks from the run's validation split
    (said on stderr, with the test coverage at it)."""
    if args.target_accuracy is None:
        if not 0.0 <= args.min_confidence <= 1.0:
            raise ImgclfError(f"--min-confidence {args.min_confidence}: must be between 0 and 1")
        return args.min_confidence
    from imgclf.evaluation.calibration import pick_threshold
    if not 0.0 < args.target_accuracy < 1.0:
        raise ImgclfError(f"--target-accuracy {args.target_accuracy}: must be between 0 and 1")
    record = RunRecord(args.run)
    thresholds = record.read_run_info().get("calibration", {}).get("thresholds") if record.run_info_path.is_file() else None
    row = pick_threshold(thresholds or [], args.target_accuracy, args.run)
    test = (f"; test: {row['test_accuracy']:.3f} accurate on {row['test_coverage']:.0%}"
            if row.get("test_coverage") is not None and row.get("test_accuracy") is not None else "")
    print(f"imgclf: --target-accuracy {args.target_accuracy}: answering at confidence {row['min_confidence']:.3f} "
          f"or more (validation: {row['val_accuracy']:.3f} accurate on {row['val_coverage']:.0%} of images{test})",
          file=sys.stderr)
    return row["min_confidence"]


def exists(path: str) -> None:
    if not Path(path).exists():
        raise ImgclfError(f"{path}: no such run directory or model file")


def _tensorflow(args, model):
    from imgclf.cli.commands import _tensorflow as quietly
    quietly(args, model=model)
