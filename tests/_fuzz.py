"""Fuzz targets shared by tests/test_fuzz.py (a bounded run) and benchmarks/fuzz.py (a long one).

Each target takes bytes (a mutated file or body) and must return a result or raise ImgclfError
(or BadImage, the decoder's own one-line error); anything else is a failure. Seeds are small
real files made here, so nothing is downloaded.
"""
from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.data.images import BadImage, read_image
from imgclf.errors import ImgclfError

EXPECTED = (ImgclfError, BadImage)


def image_seeds() -> dict[str, bytes]:
    """A small real image in each decoded format."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    seeds = {}
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        seeds[fmt.lower()] = buf.getvalue()
    return seeds


def decode(data: bytes) -> None:
    read_image(io.BytesIO(data), max_pixels=4_000_000)


def tiny_model():
    """A real (tiny) Keras image classifier: 16 px RGB in, 3 classes out."""
    import keras
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    return model


def tflite_seed(model) -> bytes:
    from imgclf.runtime import add_tflite_metadata, convert_tflite
    return add_tflite_metadata(convert_tflite(model), {"class_names": ["a", "b", "c"], "image_size": 16})


def keras_seed(model, folder: Path) -> bytes:
    path = folder / "seed.keras"
    model.save(path)
    return path.read_bytes()


def load_model_file(data: bytes, path: Path) -> None:
    """Through deploy.load, as `imgclf predict` opens a file, then one prediction."""
    from imgclf.deploy.predict import load
    path.write_bytes(data)
    (path.parent / "labels.txt").write_text("a\nb\nc\n")
    clf = load(path, num_threads=1)
    clf.predict_arrays(np.zeros((2, clf.image_size, clf.image_size, 3), np.uint8))


def checkpoint_seed(folder: Path) -> bytes:
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import TrainState, save_checkpoint
    state = TrainState("head", 1, False, [{"epoch": 1, "loss": 0.5}], {"best": 0.5, "best_epoch": 1, "wait": 0},
                       {"current": 1e-3, "best": 0.5, "wait": 0}, 2, weights=[np.ones((3, 2))], optimizer=[np.zeros(2)])
    save_checkpoint(RunRecord(folder), state)
    return RunRecord(folder).checkpoint_path.read_bytes()


def load_checkpoint_bytes(data: bytes, folder: Path) -> None:
    from imgclf.record import RunRecord
    from imgclf.training.checkpoint import load_checkpoint
    RunRecord(folder).checkpoint_path.write_bytes(data)
    load_checkpoint(RunRecord(folder))


def body_seeds(image: bytes) -> dict[str, tuple[str, bytes]]:
    """(content type, body) of each kind of request the server reads."""
    import base64
    import json
    boundary = "XyZ"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                 f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return {"multipart": (f"multipart/form-data; boundary={boundary}", multipart),
            "json": ("application/json", json.dumps({"images": [base64.b64encode(image).decode()]}).encode()),
            "raw": ("image/png", image)}


def read_request(content_type: str, body: bytes) -> None:
    """The server's request reader (read_body, read_uploads) on one body, as a live request."""
    from starlette.requests import Request
    from imgclf.serve.requests import ApiError, read_body, read_uploads

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"",
             "headers": [(b"content-type", content_type.encode("latin-1")),
                         (b"content-length", str(len(body)).encode())]}

    async def run():
        request = Request(scope, receive)
        try:
            await read_uploads(request, await read_body(request, 3_000_000))
        except ApiError:
            pass  # an HTTP 4xx answer: what a bad body should get
    asyncio.run(run())


def mutate(seed: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    """``seed`` with bytes replaced at (position mod length, value) and cut at ``cut`` (mod length)."""
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    return bytes(data)


def zip_member_mutate(seed: bytes, member: int, flips, cut) -> bytes:
    """A zip (a .keras, an .npz) with one member's bytes mutated and the zip rewritten, so the
    mutation reaches the parser behind the zip's checksums."""
    src = zipfile.ZipFile(io.BytesIO(seed))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        names = src.namelist()
        for i, name in enumerate(names):
            data = src.read(name)
            dst.writestr(name, mutate(data, flips, cut) if i == member % len(names) and data else data)
    return out.getvalue()
