"""What `imgclf train DATA --budget B` makes of each budget: wall time, plan, accuracy, memory.

For each budget the command runs in a child process under ``/usr/bin/time -v`` (wall time and
peak RSS of the whole process, imports included), with no other flag unless ``--flags`` adds
some; the plan and what each stage took come from the run's plan.json, the best validation
accuracy from history.csv (the epoch whose weights are kept), test accuracy and macro-F1 from
metrics.json, the test-time flip's decision with the validation accuracy without and with it
from run.json, and where the run was kept. With ``--budgets default`` and every setting given in
``--flags`` no plan is made (no probe): the former fixed defaults run as they did. ``--logreg`` adds a peer: a logistic regression on the frozen backbone's pooled
features (ImageNet weights, no fine-tuning), its regularisation chosen on the validation split.

Example:
    $ python benchmarks/budget.py data/fmnist-1k --budgets 1m,3m --logreg --out /tmp/budget.json
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_budget(data: str, budget: str, runs: Path, flags: list[str]) -> dict:
    name = f"b{budget}"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "imgclf", "train", data, "--runs-dir", str(runs),
           "--name", name, *(["--budget", budget] if budget != "default" else []), "--quiet", *flags]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("imgclf: error:")]
        return {"budget": budget, "error": errors[0] if errors else "failed"}
    run = runs / name
    planned = (run / "plan.json").is_file()  # not when every setting is given: the former defaults, no probe
    plan = json.loads((run / "plan.json").read_text()) if planned else {"plan": None, "actual": None}
    budget_s = plan["plan"]["budget_s"] if planned else None
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    import yaml

    from imgclf.evaluation.kept import kept_row
    best = kept_row(rows, yaml.safe_load((run / "config.yaml").read_text()))  # the epoch whose weights were kept
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    cuts = [line for line in proc.stdout.splitlines() if line.startswith("budget: ")]  # cuts and re-fits
    return {"budget": budget, "budget_s": budget_s, "wall_s": round(wall, 1),
            "ratio": round(wall / budget_s, 3) if planned else None, "plan": plan["plan"], "actual": plan["actual"],
            "epochs_run": {"head": sum(r["phase"] == "head" for r in rows),
                           "fine_tune": sum(r["phase"] == "fine_tune" for r in rows)},
            "val_accuracy": round(float(best["val_accuracy"]), 4), "test_accuracy": round(metrics["accuracy"], 4),
            "test_macro_f1": round(metrics["macro"]["f1"], 4),
            "peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None, "cut": cuts,
            "flip": {k: v for k, v in (json.loads((run / "run.json").read_text())["calibration"].get("flip") or {}).items()
                     if k in ("flip", "val_accuracy")}, "run_dir": str(run)}


def logistic_regression(data: str, size: int = 96) -> dict:
    """The frozen ImageNet base's pooled features -> scikit-learn's logistic regression; C chosen
    on validation accuracy, then refit on train and scored on test."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from imgclf.console import import_tensorflow_quietly
    import_tensorflow_quietly()
    import keras

    from imgclf.data import load_dataset, load_images
    from imgclf.runtime import compile_forward
    from imgclf.training.model import build_network
    start = time.monotonic()
    ds = load_dataset(data, seed=42)
    net = build_network("efficientnet_lite0", ds.num_classes, size)
    forward = compile_forward(keras.Model(net.base.input, net.pool(net.base.output)), "tflite")
    feats = {}
    for split in ("train", "val", "test"):
        images = load_images(ds.paths[split], size)
        feats[split] = np.concatenate([forward(np.asarray(images[i:i + 64], np.float32))
                                       for i in range(0, len(images), 64)])
    scores = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(feats["train"], ds.labels["train"])
        scores[c] = accuracy_score(ds.labels["val"], model.predict(feats["val"]))
    c = max(scores, key=scores.get)
    model = LogisticRegression(C=c, max_iter=2000).fit(feats["train"], ds.labels["train"])
    pred = model.predict(feats["test"])
    return {"peer": "frozen features + logistic regression", "image_size": size, "C": c,
            "val_accuracy": round(scores[c], 4), "test_accuracy": round(accuracy_score(ds.labels["test"], pred), 4),
            "test_macro_f1": round(f1_score(ds.labels["test"], pred, average="macro"), 4),
            "wall_s": round(time.monotonic() - start, 1)}


def table(results: list[dict]) -> str:
    lines = ["| budget | wall | wall / budget | plan | epochs run | val acc | test acc | macro-F1 | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['budget']} | refused: {r['error']} | | | | | | | |")
            continue
        p = r["plan"]
        plan = (f"{p['image_size']} px, {p['views']} views, top {p['fine_tune_blocks']} blocks, "
                f"{p['epochs']}+{p['fine_tune_epochs']}, {p['runtime']}") if p else "as the flags say (no plan)"
        run = f"{r['epochs_run']['head']}+{r['epochs_run']['fine_tune']}"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(f"| {r['budget']} | {r['wall_s']} s | {ratio} | {plan} | {run} | "
                     f"{r['val_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['test_macro_f1']:.4f} | "
                     f"{r['peak_rss_mb']} MB |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--budgets", default="1m,3m,10m", help="comma-separated; 'default': no --budget flag")
    parser.add_argument("--flags", default="", help="extra `imgclf train` flags, e.g. '--seed 1'")
    parser.add_argument("--logreg", action="store_true", help="add the logistic-regression peer")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    runs = Path(tempfile.mkdtemp(prefix="imgclf-budget-"))
    results = []
    for budget in args.budgets.split(","):
        results.append(run_budget(args.data, budget.strip(), runs, args.flags.split()))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))
    peer = logistic_regression(args.data) if args.logreg else None
    if peer:
        print(json.dumps(peer))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "peer": peer}, indent=2) + "\n")


if __name__ == "__main__":
    main()
