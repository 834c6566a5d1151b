"""Decoding cost of phone formats against JPEG: one photo-sized image (scikit-image's astronaut,
tiled to 2016x1512, a 3-megapixel phone-like frame) written as JPEG, HEIC and AVIF at quality
90, then decoded by imgclf.data.read_image (the one decoder) N times each.

    PYTHONPATH=src python benchmarks/phone_formats.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from pillow_heif import register_heif_opener
    from skimage import data
    from imgclf.data.images import read_image
    register_heif_opener()  # the writer; read_image registers the reader itself
    frame = np.tile(data.astronaut(), (3, 4, 1))[:1512, :2016]
    print(f"frame {frame.shape[1]}x{frame.shape[0]}, {args.repeats} decodes each")
    for fmt in ("JPEG", "HEIF", "AVIF"):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format=fmt, quality=90)
        blob = buf.getvalue()
        read_image(io.BytesIO(blob))  # warm-up: plugin registration, codec start-up
        started = time.perf_counter()
        for _ in range(args.repeats):
            pixels = np.asarray(read_image(io.BytesIO(blob)))
        ms = 1000 * (time.perf_counter() - started) / args.repeats
        error = np.abs(pixels.astype(int) - frame).mean()
        print(f"{fmt:5s} {len(blob) / 1024:7.0f} KB  decode {ms:6.1f} ms  mean abs error {error:.2f}")


if __name__ == "__main__":
    main()
