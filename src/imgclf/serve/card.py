"""The model card: what ``GET /model`` and the page show about the model being served.

Example:
    >>> model_card("runs/digits", load("runs/digits"))["metrics"]["accuracy"]
    0.93
"""
from __future__ import annotations

from pathlib import Path

from imgclf.record import RunRecord


def model_card(source: str | Path, classifier) -> dict:
    """The model card (a JSON-ready dict): backbone, format, input size, classes, test metrics.

    The metrics and backbone come from the model's own record, else the run it belongs to
    (``RunRecord.around``: the source itself, or up to two folders above an exported model).
    A model with no run gives None there.

    Example:
        >>> model_card("runs/digits", load("runs/digits"))["metrics"]["accuracy"]
        0.93
    """
    source = Path(source)
    record = RunRecord.around(source)
    run = record.read_run_info() if record else {}
    metrics = record.read_metrics() if record else {}
    info = getattr(classifier, "info", None) or {}
    card = {"name": (record.path if record else source).resolve().stem, "source": str(source),
            "format": getattr(classifier, "format", "keras"),
            "backbone": info.get("backbone") or run.get("backbone"),
            "image_size": classifier.image_size, "num_classes": len(classifier.class_names),
            "class_names": list(classifier.class_names), "metrics": None,
            "temperature": info.get("temperature", getattr(classifier, "temperature", 1.0)),
            "temperature_in_graph": info.get("temperature_in_graph") is True,
            "test_time_flip": bool(getattr(classifier, "flip", False) or info.get("flip_in_graph") is True)}
    if "accuracy" in metrics:
        from imgclf.evaluation.metrics import HEADLINES
        card["metrics"] = {"n": metrics.get("n"), "top_k": metrics.get("top_k"),
                           **{h.name: h.value(metrics) for h in HEADLINES},
                           **{f"{h.name}_ci": h.interval(metrics) for h in HEADLINES if h.interval(metrics)}}
    return card
