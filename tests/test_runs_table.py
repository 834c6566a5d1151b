"""`imgclf runs`: the table of a folder's runs (complete, interrupted, with and without
intervals), its sorting and JSON, and the --compare page."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from _tiny_run import tiny_run
from imgclf.cli import main
from imgclf.config import load_config
from imgclf.evaluation.metrics import compute_metrics
from imgclf.evaluation.plots import plot_confusion, plot_per_class
from imgclf.record import RunRecord

CLASSES = ["cat", "dog", "<b>owl</b>"]


def _history(epochs: int, seconds: float = 2.0) -> list[dict]:
    return [{"phase": "head" if i < 2 else "fine_tune", "epoch": i + 1, "loss": 1.0 / (i + 1),
             "accuracy": 0.5 + 0.1 * i, "val_loss": 1.1 / (i + 1), "val_accuracy": 0.45 + 0.1 * i,
             "seconds": seconds} for i in range(epochs)]


def fake_run(runs, name, *, complete=True, accuracy_target=0.8, ci=False, size=64, budget=0.0, seconds=30.0):
    """A run directory as training leaves it, written through RunRecord without training."""
    record = RunRecord.create(runs, name)
    record.write_config(load_config(None, {"data.path": "photos", "data.image_size": size,
                                           "train.budget_s": budget, "model.backbone": "efficientnet_lite0"}))
    record.write_labels(CLASSES)
    history = _history(4 if complete else 2)
    record.write_history(history, list(history[0]))
    if not complete:
        record.write_checkpoint({"epoch": np.array(2)})
        return record
    rng = np.random.default_rng(len(name))
    labels = np.repeat(np.arange(3), 20)
    right = rng.random(60) < accuracy_target
    predicted = np.where(right, labels, (labels + 1) % 3)
    metrics = compute_metrics(labels, np.eye(3)[predicted] * 0.9 + 0.1 / 3, CLASSES, intervals=False)
    if ci:
        metrics["accuracy_ci"] = [metrics["accuracy"] - 0.01, metrics["accuracy"] + 0.02]
        metrics["macro"]["f1_ci"] = [metrics["macro"]["f1"] - 0.03, metrics["macro"]["f1"] + 0.01]
    record.write_metrics(metrics)
    plot_confusion(np.array(metrics["confusion_matrix"]), CLASSES, record.plot_path("confusion"))
    plot_per_class(metrics, record.plot_path("per_class"))
    record.write_run_info({"seconds": seconds, "image_size": size, "backbone": "efficientnet_lite0"})
    record.mark_complete()
    return record


@pytest.fixture()
def runs(tmp_path):
    folder = tmp_path / "runs"
    fake_run(folder, "alpha", accuracy_target=0.6, seconds=95.0)
    fake_run(folder, "beta", accuracy_target=0.95, ci=True, size=96, budget=600.0, seconds=40.0)
    fake_run(folder, "gamma", complete=False)
    (folder / "not-a-run").mkdir()
    (folder / "notes.txt").write_text("a stray file")
    return folder


def test_the_table_lists_complete_and_interrupted_runs(runs, capsys):
    assert main(["runs", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "date", "backbone", "size", "budget", "wall", "accuracy", "macro-F1",
                                "epochs", "status"]
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert set(by_name) == {"alpha", "beta", "gamma"}  # not-a-run has no config.yaml
    beta = json.loads(json.dumps(RunRecord(runs / "beta").read_metrics()))
    acc, lo, hi = beta["accuracy"], *beta["accuracy_ci"]
    assert f"{acc:.3f} [{lo:.3f}, {hi:.3f}]" in by_name["beta"]
    assert "96 px" in by_name["beta"] and "10 min 0 s" in by_name["beta"] and "complete" in by_name["beta"]
    assert "[" not in by_name["alpha"] and "1 min 35 s" in by_name["alpha"] and "default" in by_name["alpha"]
    gamma = by_name["gamma"].split()
    assert gamma[-1] == "interrupted" and gamma[-2] == "2" and "4 s" in by_name["gamma"]  # its two epochs
    assert by_name["gamma"].count("–") == 2  # no test metrics yet


def test_sort_and_json(runs, capsys):
    assert main(["runs", str(runs), "--sort", "accuracy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["beta", "alpha", "gamma"]  # best first, no metrics last
    assert rows[0]["accuracy_ci"] == RunRecord(runs / "beta").read_metrics()["accuracy_ci"]
    assert rows[1]["accuracy_ci"] is None and rows[2]["status"] == "interrupted" and rows[2]["accuracy"] is None
    assert rows[0]["macro_f1"] == pytest.approx(RunRecord(runs / "beta").read_metrics()["macro"]["f1"])
    assert main(["runs", str(runs), "--sort", "wall", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["gamma", "beta", "alpha"]
    assert main(["runs", str(runs), "--sort", "name"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["alpha", "beta", "gamma"]


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such runs folder" in err
    assert main(["runs", str(runs), "--compare", "alpha", "zeta"]) == 2
    assert "zeta: no such run" in capsys.readouterr().err
    assert main(["runs", str(runs), "--sort", "colour"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sort colour: unknown key; use one of name, date," in err


def test_the_help_names_every_sort_key(capsys):
    from imgclf.evaluation.runs import SORT_KEYS
    with pytest.raises(SystemExit):
        main(["runs", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(key in help_text for key in SORT_KEYS)


def test_compare_page_puts_two_runs_side_by_side(runs, tmp_path, capsys):
    out = tmp_path / "cmp.html"
    assert main(["runs", str(runs), "--compare", "alpha", "beta", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = out.read_text()
    assert "<title>alpha vs beta" in page and "<script" not in page and "http" not in page.split("<body>")[1]
    assert "&lt;b&gt;owl&lt;/b&gt;" in page and "<b>owl</b>" not in page  # class names escaped
    a, b = (RunRecord(runs / n).read_metrics() for n in ("alpha", "beta"))
    for row_a, row_b in zip(a["per_class"], b["per_class"]):
        assert f"{row_a['f1']:.3f}" in page and f"{row_b['f1'] - row_a['f1']:.3f}" in page
    assert f"{b['accuracy'] - a['accuracy']:.3f}" in page
    # each run's per-class plot and confusion matrix, and its curves drawn from history.csv (the
    # fake runs have no curves figure), embedded
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert page.count('class="pair"') == 4


def test_compare_with_an_interrupted_run_draws_its_curves(runs, tmp_path):
    out = tmp_path / "cmp.html"
    assert main(["runs", str(runs), "--compare", "alpha", str(runs / "gamma"), "--out", str(out)]) == 0
    page = out.read_text()
    history = page.split('id="history"')[1].split("</section>")[0]
    assert history.count("data:image/png") == 2  # gamma's curves too, drawn from its two epochs
    assert "gamma: no confusion matrix." in page and "interrupted" in page


def test_a_real_run_is_listed(tmp_path_factory, capsys):
    run = tiny_run(tmp_path_factory)[0]
    assert main(["runs", str(run.parent), "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == run.name)
    metrics = RunRecord(run).read_metrics()
    assert row["status"] == "complete" and row["image_size"] == 32 and row["epochs"] == 3
    assert row["accuracy"] == metrics["accuracy"] and row["seconds"] > 0
    out = tmp_path_factory.mktemp("cmp") / "self.html"
    assert main(["runs", str(run.parent), "--compare", run.name, run.name, "--out", str(out)]) == 0
    assert out.read_text().count("data:image/png") == 6  # curves, per-class, confusion, twice
