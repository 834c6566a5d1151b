"""End to end: a real (tiny) two-phase run on real data, its artefacts, and the CLI around it."""
import csv
import json

import numpy as np
import pytest

from imgclf.cli import main
from imgclf.data.datasets import write_digits
from imgclf.deploy.predict import load
from imgclf.ranking import temper
from imgclf.workflow import evaluate_run, train

pytestmark = pytest.mark.slow
ARGS = dict(image_size=32, epochs=3, fine_tune_epochs=2, batch_size=16, seed=3, val_fraction=0.2,
            test_fraction=0.25, fine_tune_blocks=2)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits(root / "digits", per_class=12)
    return root


@pytest.fixture(scope="module")
def result(digits):
    return train(digits / "digits", runs_dir=digits / "runs", name="a", verbose=False, **ARGS)


def test_run_writes_every_artefact(result):
    run = result.run_dir
    for name in ["config.yaml", "labels.txt", "split.csv", "data_report.json", "model.keras", "history.csv",
                 "metrics.json", "report.html", "COMPLETE", "plots/training_curves.png",
                 "plots/confusion_matrix.png", "plots/per_class.png", "plots/mistakes.png", "plots/reliability.png"]:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert any((run / "logs").rglob("events.out.tfevents*"))
    assert (run / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    html = (run / "report.html").read_text()
    assert "data:image/png;base64" in html and "confusion" in html.lower()


def test_run_learns_and_records_both_phases(result):
    phases = {row["phase"] for row in result.history}
    assert phases == {"head", "fine_tune"}
    with open(result.run_dir / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.history)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    # "learns" means clearly above chance (0.10 on 10 balanced classes): the whole 95% interval
    # of the test accuracy lies above it (at 30 images that needs about 8 right; chance alone
    # reaches 8 with p < 1%), and the point estimate is at least three times chance.
    assert metrics["n"] == 30 and metrics["accuracy_ci"][0] > 0.10 and metrics["accuracy"] >= 0.30
    assert metrics == result.metrics


def test_saved_run_predicts_like_the_trained_model(result):
    clf = load(result.run_dir)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    in_memory = result.model(images.astype(np.float32), training=False).numpy()
    # the run's temperature (fitted on validation, in run.json) calibrates what leaves the model
    temperature = json.loads((result.run_dir / "run.json").read_text())["calibration"]["temperature"]
    assert clf.temperature == temperature != 1.0
    np.testing.assert_allclose(clf.predict_arrays(images), temper(in_memory, temperature), atol=1e-5)


def test_predict_paths_streams_and_reports_bad_files(result, digits, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = sorted((digits / "digits" / "3").iterdir())[:3]
    rows = list(load(result.run_dir).predict_paths([good[0], bad, *good[1:]], top_k=10, batch_size=2))
    assert [r["path"] for r in rows if r["error"]] == [str(bad)]
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 3 and all(len(r["top"]) == 10 for r in ok)
    # all 10 classes: a distribution (float32 sums of 10 terms are good to ~1e-7; 1e-5 is loose)
    assert all(abs(sum(p for _, p in r["top"]) - 1) < 1e-5 for r in ok)
    assert all([p for _, p in r["top"]] == sorted((p for _, p in r["top"]), reverse=True) for r in ok)


def test_predict_says_unknown_below_the_confidence_asked_for(result, digits, capsys):
    folder = str(digits / "digits" / "4")
    for p in ("0", "0.5", "1"):
        assert main(["predict", str(result.run_dir), folder, "--format", "json", "--min-confidence", p]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
        for row in rows:
            top_label, top_p = row["top"][0]["label"], row["top"][0]["probability"]
            assert row["label"] == (top_label if top_p >= float(p) else "unknown")
        if p == "0":
            assert all(row["label"] != "unknown" for row in rows)
        if p == "1":  # a calibrated tiny model is never certain
            assert all(row["label"] == "unknown" for row in rows)
    assert main(["predict", str(result.run_dir), folder, "--min-confidence", "2"]) == 2


def test_target_accuracy_picks_the_threshold_on_validation(result, digits, capsys):
    thresholds = json.loads((result.run_dir / "run.json").read_text())["calibration"]["thresholds"]
    assert thresholds, "the run keeps the thresholds its validation split reaches"
    row = thresholds[0]  # the lowest reachable target: answer on the most images
    folder = str(digits / "digits" / "4")
    assert main(["predict", str(result.run_dir), folder, "--format", "json",
                 "--target-accuracy", str(row["target_accuracy"])]) == 0
    out, err = capsys.readouterr()
    assert f"answering at confidence {row['min_confidence']:.3f}" in err and "validation:" in err
    for line in out.strip().splitlines():
        r = json.loads(line)
        assert r["label"] == (r["top"][0]["label"] if r["top"][0]["probability"] >= row["min_confidence"] else "unknown")
    assert main(["predict", str(result.run_dir), folder, "--target-accuracy", "1.5"]) == 2
    assert "--target-accuracy 1.5: must be between 0 and 1" in capsys.readouterr().err


def test_evaluate_reproduces_the_runs_metrics(result):
    again = evaluate_run(result.run_dir, verbose=False)
    assert again["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert again["confusion_matrix"] == result.metrics["confusion_matrix"]


def test_same_seed_same_split_and_metrics_through_the_cli(result, digits, capsys):
    argv = ["train", str(digits / "digits"), "--runs-dir", str(digits / "runs"), "--name", "b", "--quiet"]
    for key, value in ARGS.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    assert main(argv) == 0
    run_b = digits / "runs" / "b"
    assert (run_b / "split.csv").read_text() == (result.run_dir / "split.csv").read_text()
    metrics_b = json.loads((run_b / "metrics.json").read_text())
    assert metrics_b["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=0.04)
    assert main(["predict", str(run_b), str(digits / "digits" / "7"), "--format", "csv", "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].count(",") == 4 and len(lines) >= 13


@pytest.mark.parametrize("argv, fragment", [
    (["train", "/no/such/folder"], "/no/such/folder"),
    (["train", "{digits}", "--backbone", "alexnet"], "alexnet"),
    (["train", "{digits}", "--image-size", "16"], "image_size"),
    (["train", "{digits}", "--set", "train.epocs=3"], "train.epocs"),
    (["train", "{digits}", "--fine-tune-layers", "100000", "--epochs", "1", "--image-size", "32",
      "--runs-dir", "{root}/err-runs"], "fine_tune_layers"),
    (["evaluate", "/no/such/run"], "/no/such/run"),
    (["predict", "{root}", "{root}"], "model.keras"),
])
def test_user_errors_are_one_line(argv, fragment, digits, capsys):
    argv = [a.format(digits=digits / "digits", root=digits) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgclf: error:") and "\n" not in err and fragment in err


def test_a_budgeted_run_is_planned_recorded_and_kept_to_its_budget(digits, capsys):
    """`--budget` alone: every open setting is planned, the plan is printed and saved, the
    config records what was planned, and the run ends within its budget."""
    assert main(["train", str(digits / "digits"), "--runs-dir", str(digits / "runs"), "--name", "budget",
                 "--budget", "75s", "--image-size", "32", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan: 32 px, ") and "budget 1 min 15 s" in out
    run = digits / "runs" / "budget"
    plan = json.loads((run / "plan.json").read_text())
    recipe, actual = plan["plan"], plan["actual"]
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["image_size"] == recipe["image_size"] == 32  # the user's size is kept
    assert (cfg["train"]["epochs"], cfg["train"]["fine_tune_epochs"], cfg["train"]["views"]) == \
        (recipe["epochs"], recipe["fine_tune_epochs"], recipe["views"])
    assert cfg["train"]["budget_s"] == 75 and cfg["train"]["schedule"] == "cosine"
    assert recipe["expected_s"] <= 75 and actual["total"] <= 75 * 1.1
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["phase"] == "head" for r in rows) <= recipe["epochs"]
    assert "Plan" in (run / "report.html").read_text()
    assert not (run / "cache").exists()  # what only this run's resume could reuse goes when it is whole
