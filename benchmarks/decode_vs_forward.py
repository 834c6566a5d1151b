"""Does decoding need machines of its own (tf.data service)? Decode rate against the frozen
forward rate on the same images, one core each.

tf.data service (a dispatcher and decode workers) pays when decoding, not the network, limits
a job. This measures, on one core (taskset by the caller, or ``--threads 1``), images/s of:
  decode   imgclf's loader: read + decode + resize to SIZE (imgclf.data.load_images)
  forward  the frozen EfficientNet-Lite0 base + pooling at SIZE in LiteRT (the cache's runtime)
and prints decode / forward: above 1, one core decodes faster than one core runs the network,
so a worker's own CPU keeps up with its share of the cache and a decode service adds nothing.

    taskset -c 0 python benchmarks/decode_vs_forward.py /work/data/photos/train --size 224
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a folder of images (searched recursively)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()

    from imgclf.data import load_images
    from imgclf.runtime import compile_forward
    from imgclf.training.features import pooled_model
    from imgclf.training.model import build_network

    paths = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = paths[:args.images]
    started = time.perf_counter()
    images = np.asarray(load_images([str(p) for p in paths], args.size, workers=1))
    decode = len(paths) / (time.perf_counter() - started)

    net = build_network("efficientnet_lite0", 10, args.size)
    forward = compile_forward(pooled_model(net), "tflite", threads=1)
    forward(images[:64].astype(np.float32))  # warm up
    started = time.perf_counter()
    for i in range(0, len(images), 64):
        forward(images[i:i + 64].astype(np.float32))
    rate = len(images) / (time.perf_counter() - started)
    side = image_size(paths[0])
    print(f"{len(paths)} images ({side}) at {args.size} px, CPUs {sorted(os.sched_getaffinity(0))}: "
          f"decode {decode:.0f}/s, frozen forward (LiteRT) {rate:.0f}/s, decode / forward {decode / rate:.1f}")
    return 0


def image_size(path: Path) -> str:
    from PIL import Image
    with Image.open(path) as img:
        return f"{img.width}x{img.height} {img.format}"


if __name__ == "__main__":
    raise SystemExit(main())
