"""report.html is self-contained, escapes user text, and survives missing pieces."""
import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.evaluation.metrics import compute_metrics
from imgclf.evaluation.report import write_report
from imgclf.record import PLOTS

EVIL = "<script>alert(1)</script>"
NAMES = ["cat", "dog", EVIL]


class TagCounter(HTMLParser):
    """Counts open and close tags, and collects every src/href attribute."""

    def __init__(self):
        super().__init__()
        self.opened, self.closed, self.links = {}, {}, []

    def handle_starttag(self, tag, attrs):
        self.opened[tag] = self.opened.get(tag, 0) + 1
        self.links += [value for name, value in attrs if name in ("src", "href")]

    def handle_endtag(self, tag):
        self.closed[tag] = self.closed.get(tag, 0) + 1


def png(path: Path, color) -> Path:
    Image.new("RGB", (40, 30), color).save(path)
    return path


@pytest.fixture
def inputs(tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    plots = {key: png(tmp_path / PLOTS.get(key, f"{key}.png"), color) for key, color in
             [("history", "red"), ("confusion", "green"), ("per_class", "blue"),
              ("mistakes", "white"), ("extra", "black")]}
    history = [{"phase": "head", "epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 0.9,
                "val_accuracy": 0.6, "lr": 1e-3, "seconds": 2.0},
               {"phase": "fine_tune", "epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.7,
                "val_accuracy": 0.7, "lr": 1e-4, "seconds": 3.0}]
    data_report = {"classes": NAMES, "layout": "class folders", "imbalance": 1.5,
                   "counts": {"train": {n: 10 for n in NAMES}, "test": {n: 2 for n in NAMES}},
                   "sizes": {"width": {"min": 10, "median": 20, "max": 30}},
                   "modes": {"RGB": 36},
                   "skipped": [{"path": f"data/{EVIL}/bad{i}.jpg", "reason": "truncated"}
                               for i in range(20)]}
    return dict(title=f"run {EVIL}", config={"data": {"path": f"data/{EVIL}"},
                                             "model": {"backbone": "efficientnet_lite0"},
                                             "train": {"epochs": 5, "fine_tune_epochs": 1}},
                data_report=data_report, metrics=compute_metrics(y, probs, NAMES),
                history=history, plots=plots, run_info={"seconds": 12.5, "image_size": 96})


def test_report_is_self_contained_and_escaped(tmp_path, inputs):
    path = write_report(tmp_path / "report.html", **inputs)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()  # neither the class name nor any script of our own
    assert not re.search(r"https?://", text)
    parser = TagCounter()
    parser.feed(text)
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in parser.links)
    for tag in ("section", "table", "details", "html", "body", "main"):
        assert parser.opened.get(tag, 0) == parser.closed.get(tag, 0), tag
    assert parser.opened["section"] >= 6


def test_report_embeds_every_plot(tmp_path, inputs):
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(embedded) == len(inputs["plots"])
    expected = {p.read_bytes() for p in inputs["plots"].values()}
    assert {base64.b64decode(b) for b in embedded} == expected


def test_report_shows_numbers_and_structure(tmp_path, inputs):
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    accuracy = inputs["metrics"]["accuracy"]
    assert f"{100 * accuracy:.1f}%" in text
    assert "efficientnet_lite0" in text and "96 × 96 px" in text
    assert "20 files skipped" in text and "<details>" in text  # many skipped files fold away
    assert 'class="best"' in text  # the kept epoch is highlighted
    assert "macro avg" in text  # the classification report


def test_report_without_metrics_or_plots(tmp_path, inputs):
    inputs.update(metrics=None, plots={"confusion": tmp_path / "missing.png"})
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    assert "No test metrics" in text
    assert "No confusion matrix" in text
    assert "data:image/png" not in text


def test_report_with_nothing_but_a_title(tmp_path):
    path = write_report(tmp_path / "r.html", title="bare", config={}, data_report={},
                        metrics=None, history=[], plots={}, run_info={})
    text = path.read_text()
    assert "No data report" in text and "No training history" in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left behind


def test_report_tolerates_odd_config_values(tmp_path, inputs):
    inputs["config"] = {"data": {"path": Path("/x") / EVIL}, "weird": object()}
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    assert "<script" not in text.lower() and "&lt;script&gt;" in text


def test_wide_figures_scroll_instead_of_shrinking(tmp_path, inputs):
    Image.new("RGB", (3000, 1000), "white").save(tmp_path / "confusion_matrix.png")
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    assert '<div class="wide">' in text and 'style="width:1800px"' in text


def test_a_command_in_a_note_is_code_not_backticks_and_stays_escaped():
    from imgclf.evaluation.health_report import health_section
    html = health_section({"counts": {}, "groups": [], "checks": ["bytes"]}, data_path="data/<x>")
    assert "<code>imgclf check data/&lt;x&gt;</code>" in html and "`" not in html


def test_the_kept_epoch_follows_train_keep(tmp_path, inputs):
    from imgclf.evaluation.kept import kept_row
    history = inputs["history"] + [{"phase": "fine_tune", "epoch": 3, "loss": 0.4, "accuracy": 0.9,
                                    "val_loss": 0.8, "val_accuracy": 0.75, "lr": 1e-5, "seconds": 3.0}]
    assert kept_row(history, inputs["config"])["epoch"] == 2  # lowest validation loss
    last = {**inputs["config"], "train": {**inputs["config"]["train"], "keep": "last"}}
    assert kept_row(history, last)["epoch"] == 3 and kept_row([], last) is None
    text = write_report(tmp_path / "report.html", **{**inputs, "history": history, "config": last}).read_text()
    assert "last epoch (weights kept)" in text and "val accuracy, epoch 3" in text


def test_run_facts_are_short_and_nested_ones_fold_away_as_yaml(tmp_path, inputs):
    """run.json's calibration (a dict of lists) once showed as one Python repr of 2,000
    characters among the facts, and a cache size as 17.2119140625."""
    inputs["run_info"] = {"cache_mb": 17.2119140625, "views": 1, "calibration": {
        "temperature": 2.24, "thresholds": [{"target_accuracy": 0.9, "min_confidence": 0.39}]}}
    text = write_report(tmp_path / "report.html", **inputs).read_text()
    run = text[text.index("<h3>Run</h3>"):text.index("<h3>Config</h3>")]
    assert "17.21" in run and "17.2119" not in run
    assert "{&#x27;" not in run and "{'" not in run  # no dict repr
    assert "<details><summary>calibration</summary><pre>" in run and "min_confidence: 0.39" in run
