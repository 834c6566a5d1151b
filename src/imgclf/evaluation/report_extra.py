"""The report's sections about what its numbers are worth: calibration (ECE before and after the
temperature, the reliability diagram and table), the coverage-accuracy curve (how accurate the model is on
the share of images it is most confident about), and each export judged by the accuracy it loses
against the trained model (the paired change with its interval, per class).

Each section reads what the run record holds and renders nothing when there is nothing yet.

Example:
    >>> extra_sections(RunRecord("runs/fashion"))  # doctest: +ELLIPSIS
    '<section id="exports">...'
"""
from __future__ import annotations

from pathlib import Path

from imgclf.evaluation.html import bar, e, facts, figure, note, num, pct, section, table
from imgclf.record import RunRecord


def extra_sections(record: RunRecord) -> str:
    """Every extra section the run's files support, as HTML."""
    calibration = record.read_metrics().get("calibration") or {}
    flip = (record.read_run_info().get("calibration") or {}).get("flip")
    return (calibration_section(calibration, record.plot_path("reliability"), flip) + coverage_section(calibration)
            + export_section(record.read_export_metrics()))


def flip_text(flip: dict) -> str:
    """The test-time flip decision in words: ``on (chosen on validation); with the mirror image
    averaged in, validation accuracy 93.90% -> 94.20%, ...``."""
    said = ("on" if flip.get("flip") else "off") + (" (chosen on validation)" if flip.get("setting") == "auto"
                                                      else f" (train.test_time_flip: {e(flip.get('setting'))})")
    acc, loss = flip.get("val_accuracy"), flip.get("val_loss")
    if acc and loss:
        return (f"{said}; with the mirror image averaged in, validation accuracy {100 * acc['plain']:.2f}% → "
                f"{100 * acc['flip']:.2f}%, log loss {num(loss['plain'], 4)} → {num(loss['flip'], 4)}")
    return f"{said}; {e(flip.get('reason', ''))}"


def calibration_section(calibration: dict, diagram: Path | None = None, flip: dict | None = None) -> str:
    """ECE and log loss before/after the temperature, and the test-time flip chosen on
    validation (``flip``: run.json's calibration.flip); the reliability diagram (``diagram``, a PNG
    of calibration_plots.plot_reliability), and its table under <details>."""
    if "reliability" not in calibration:
        return ""
    items = [("test-time flip", flip_text(flip))] if flip and flip.get("setting") != "off" else []  # off: the default
    items += [("temperature (fitted on validation)", num(calibration["temperature"], 3)),
             ("ECE before", pct(calibration["ece_before"])), ("ECE after", pct(calibration["ece_after"])),
             ("log loss before", num(calibration["log_loss_before"], 4)),
             ("log loss after", num(calibration["log_loss_after"], 4))]
    rows = [[f"{pct(r['low'])}–{pct(r['high'])}", e(r["n"]), pct(r["confidence"]),
             f"<td class=num{bar(r['accuracy'])}>{pct(r['accuracy'])}</td>",
             num(None if r["accuracy"] is None else r["accuracy"] - r["confidence"], 3)]
            for r in calibration["reliability"] if r["n"]]
    text = (f"Reliability on the test images, {calibration['bins']} equal-width confidence bins, after the "
            "temperature: a calibrated model's accuracy in each bin equals its mean confidence. ECE is the "
            "image-weighted mean gap.")
    listing = table(["confidence bin", "images", "mean confidence", "accuracy", "gap"], rows, {1, 2, 3, 4})
    body = (facts(items) + note(text) + figure(diagram, "reliability diagram", "The reliability diagram is missing.")
            + f"<details><summary>the reliability table</summary>{listing}</details>")
    return section("calibration", "Calibration", body)


def coverage_section(calibration: dict) -> str:
    """Accuracy when the model answers only above a confidence (the rest is "unknown")."""
    rows = [[pct(r["coverage"]), pct(r["min_confidence"]), f"<td class=num{bar(r['accuracy'])}>{pct(r['accuracy'])}</td>"]
            for r in calibration.get("coverage") or []]
    if not rows:
        return ""
    text = ("If the model answered only on the test images it is most confident about (and said \"unknown\" "
            "otherwise): the share it answers, the confidence that takes, and its accuracy on them. "
            "`imgclf predict --min-confidence P` abstains below P.")
    return section("coverage", "Coverage and accuracy", note(text) + table(["coverage", "confidence at least",
                                                                          "accuracy"], rows, {0, 1, 2}))


def _signed(value) -> str:
    return "–" if value is None else f"{100 * float(value):+.1f}"


def export_section(exports: dict) -> str:
    """One row per export: accuracy against the Keras model's, the paired change with its 95%
    interval, McNemar's p, agreement and the verdict; per-class changes under <details>."""
    if not exports:
        return ""
    rows, details = [], []
    for name, m in exports.items():
        if "accuracy_change" not in m:  # an entry an older imgclf wrote
            continue
        lo, hi = m.get("accuracy_change_ci") or (None, None)
        verdict = "kept" if m.get("passed") else "refused"
        rows.append([e(name), pct(m.get("accuracy")), pct(m.get("keras_accuracy")),
                     f"{_signed(m['accuracy_change'])} [{_signed(lo)}, {_signed(hi)}]",
                     num(m.get("mcnemar_p"), 3), pct(m.get("agreement")), e(m.get("n")), verdict])
        per_class = [[e(r["class"]), e(r["n"]), pct(r["reference_recall"]), pct(r["recall"]), _signed(r["change"])]
                     for r in m.get("per_class") or []]
        details.append(f"<details><summary>{e(name)}: change per class</summary>"
                       + table(["class", "images", "Keras recall", "export recall", "change (points)"],
                               per_class, {1, 2, 3, 4}) + "</details>")
    if not rows:
        return ""
    first = next(iter(exports.values()))
    rule = (f"An export is refused only when its accuracy drop is significantly larger than "
            f"{pct(first.get('max_accuracy_drop'))}: when the one-sided 95% paired-bootstrap lower bound "
            "of the drop, on the same images, exceeds it. Agreement is shown but decides nothing.")
    body = (note(rule) + table(["format", "accuracy", "Keras", "change (points) [95% CI]", "McNemar p",
                                "agreement", "images", "verdict"], rows, {1, 2, 3, 4, 5, 6})
            + "".join(details))
    return section("exports", "Exports: what each one loses", body)
