"""Can full-integer TFLite lose less? Variants of the int8 conversion of one finished run, each
judged like `imgclf export` judges it: the paired accuracy change against the Keras model (the
same temperature-folded model every export converts), on the validation split (where a choice
is made) and on the test split (only reported).

Variants:
  default        200 seeded training images calibrate the ranges, every op int8 (today's export)
  cal-1000       1,000 calibration images
  cal-aug        the 200 images plus one augmented view of each (the run's own augmenter)
  float-softmax  200 images; the final SOFTMAX kept in float (selective quantisation with
                 tf.lite.experimental.QuantizationDebugger's denylist), so close calls are not
                 rounded to 1/256 steps
  float-head     200 images; the final FULLY_CONNECTED and SOFTMAX kept in float

Usage:
    python benchmarks/int8.py runs/fashion-demo [--variants default,float-softmax]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from imgclf.console import quiet_native_stderr


def convert(model, calibration, denylist=()):
    if not denylist:  # today's export, through the export's own converter
        from imgclf.runtime.litert import convert_tflite
        return convert_tflite(model, "int8", calibration)
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.inference_input_type = tf.uint8
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(denylist))
    with quiet_native_stderr():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([image[None].astype(np.float32)] for image in calibration[:50]),
            debug_options=options)
        return debugger.get_nondebug_quantized_model()


def augmented(images, cfg):
    from imgclf.data.augment import build_augmenter
    augmenter = build_augmenter(cfg.data.augment, cfg.seed)
    views = [np.asarray(augmenter(images[i:i + 64].astype(np.float32), training=True)) for i in range(0, len(images), 64)]
    return np.concatenate([images, np.clip(np.concatenate(views), 0, 255).astype(np.uint8)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--variants", default="default,cal-1000,cal-aug,float-softmax,float-head")
    args = parser.parse_args()

    from imgclf.data import load_images
    from imgclf.deploy.export import Exporter
    from imgclf.deploy.predict import Classifier
    from imgclf.evaluation import compare, evaluate_on
    from imgclf.runtime import LiteRTRuntime

    exporter = Exporter(args.run)
    model, folded = exporter.tempered()
    clf = exporter.clf
    splits = {}
    reference_test, test_images, _ = exporter.held_out()
    dataset = exporter.dataset
    val_images = load_images(dataset.paths["val"], clf.image_size)
    val_labels = dataset.labels_for(clf.class_names, "val")
    splits["val"] = (evaluate_on(clf, val_images, val_labels, intervals=False), val_images)
    splits["test"] = (reference_test, test_images)
    recipes = {"default": (200, False, ()), "cal-1000": (1000, False, ()), "cal-aug": (200, True, ()),
               "float-softmax": (200, False, ("SOFTMAX",)), "float-head": (200, False, ("FULLY_CONNECTED", "SOFTMAX"))}
    rows = []
    for name in args.variants.split(","):
        count, aug, denylist = recipes[name]
        started = time.time()
        calibration = exporter.calibration(count)
        if aug:
            calibration = augmented(calibration, exporter.cfg)
        data = convert(model, calibration, denylist)
        seconds = time.time() - started
        exported = Classifier(LiteRTRuntime(data), clf.class_names, clf.image_size, exporter.record.path,
                              temperature=1.0 if folded else clf.temperature)
        row = {"variant": name, "calibration_images": len(calibration), "float_ops": list(denylist),
               "bytes": len(data), "convert_s": round(seconds, 1)}
        for split, (reference, images) in splits.items():
            c = compare(reference, evaluate_on(exported, images, reference.labels, intervals=False))
            row[split] = {k: c[k] for k in ("n", "accuracy", "keras_accuracy", "accuracy_change",
                                            "accuracy_change_ci", "agreement", "mcnemar_p")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"# {time.strftime('%Y-%m-%d')}, run {args.run}, temperature folded: {folded}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
