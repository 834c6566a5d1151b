"""Frozen feature extraction: imgclf's cache builder against the backbone's best runtimes.

Measures, in one run and on the same images, images/s of:
  tf        the base + pooling as a tf.function (what a plain Keras loop runs)
  tflite    the same network as TFLite under LiteRT's XNNPACK delegate: the reference
  imgclf    imgclf.training.features.CachedData building the phase-1 feature cache (1 view, no
            augmentation): conversion, batching and copies included
and prints imgclf / tflite (target: >= 0.9).

    python benchmarks/feature_extraction.py --sizes 96 224 --images 2048
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def rate(fn, images: np.ndarray, batch: int) -> float:
    fn(images[:batch].astype(np.float32))  # warm up (tracing, allocation)
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i:i + batch].astype(np.float32))
    return len(images) / (time.perf_counter() - start)


def measure(size: int, count: int, batch: int) -> dict:
    import keras

    from imgclf.config import RunConfig, TrainConfig
    from imgclf.training.features import CachedData
    from imgclf.runtime.forward import compile_forward
    from imgclf.training.model import build_network

    net = build_network("efficientnet_lite0", 10, size)
    extractor = keras.Model(net.base.input, net.pool(net.base.output))
    images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count) % 10
    result = {"size": size, "images": count, "batch": batch}
    result["tf"] = rate(compile_forward(extractor, "tf"), images, batch)
    result["tflite"] = rate(compile_forward(extractor, "tflite", batch_size=batch), images, batch)
    cfg = dataclasses.replace(RunConfig(), train=TrainConfig(fine_tune_epochs=0, views=1, runtime="auto"))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=batch))
    start = time.perf_counter()
    data = CachedData(net, cfg, (images, labels), (images[:0], labels[:0]),
                      cache_dir=Path(tempfile.mkdtemp()))
    result["imgclf"] = count / (time.perf_counter() - start)
    result["imgclf_runtime"] = data.stats["runtime"]
    result["ratio_imgclf_vs_tflite"] = result["imgclf"] / result["tflite"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"{'size':>5} {'tf img/s':>9} {'tflite img/s':>13} {'imgclf img/s':>13} {'imgclf/tflite':>14}")
    for size in args.sizes:
        r = measure(size, args.images, args.batch)
        print(f"{size:>5} {r['tf']:>9.0f} {r['tflite']:>13.0f} {r['imgclf']:>13.0f} "
              f"{r['ratio_imgclf_vs_tflite']:>14.2f}  ({r['imgclf_runtime']})")


if __name__ == "__main__":
    main()
