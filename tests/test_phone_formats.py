"""HEIC/HEIF and AVIF read like every other format: decoding, EXIF orientation, the data check,
`inspect`, `predict` and the server's uploads; a corrupt HEIC is a skipped file with a reason."""
from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from _tiny_run import live_server, tiny_app, tiny_run
from imgclf.cli import main
from imgclf.data import IMAGE_EXTENSIONS, BadImage, load_dataset, load_images, read_image
from imgclf.data.images import inspect_image

FORMATS = {".heic": "HEIF", ".avif": "AVIF"}
RED, BLUE = (200, 30, 30), (30, 30, 200)


def encode(pixels: np.ndarray, suffix: str, orientation: int | None = None, **options) -> bytes:
    """A HEIC (pillow-heif's encoder, x265) or AVIF (Pillow's own) file of ``pixels``."""
    from pillow_heif import register_heif_opener
    register_heif_opener()  # the writer; imgclf registers the reader itself
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=FORMATS[suffix], quality=95, **options)
    return out.getvalue()


def halves(height: int = 24, width: int = 40) -> np.ndarray:
    """Left half red, right half blue: an orientation shows in where the colours end up."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, : width // 2], pixels[:, width // 2:] = RED, BLUE
    return pixels


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", FORMATS)
def test_decodes_close_to_the_source(tmp_path, suffix):
    source = halves()
    path = write(tmp_path / f"pic{suffix}", encode(source, suffix))
    img = read_image(path)
    assert img.mode == "RGB" and img.size == (40, 24)
    diff = np.abs(np.asarray(img).astype(int) - source)
    assert diff.mean() < 4, diff.mean()  # lossy, with chroma subsampling at the red/blue edge
    assert np.abs(np.asarray(img)[4:20, 4:16].astype(int) - RED).max() <= 8  # away from the edge
    assert inspect_image(path).format == FORMATS[suffix]
    assert suffix in IMAGE_EXTENSIONS and ".heif" in IMAGE_EXTENSIONS
    from_memory = read_image(io.BytesIO(path.read_bytes()))  # how the server decodes an upload
    assert np.array_equal(np.asarray(from_memory), np.asarray(img))


@pytest.mark.parametrize("suffix", FORMATS)
def test_exif_orientation_is_honoured(tmp_path, suffix):
    path = write(tmp_path / f"turned{suffix}", encode(halves(), suffix, orientation=6))  # 90 deg clockwise
    pixels = np.asarray(read_image(path)).astype(int)
    assert pixels.shape == (40, 24, 3)  # displayed upright: taller than wide
    assert np.abs(pixels[2, 12] - RED).max() <= 8 and np.abs(pixels[-3, 12] - BLUE).max() <= 8  # red on top
    info = inspect_image(path)
    assert (info.width, info.height) == (24, 40)


def test_a_corrupt_heic_is_refused_with_a_reason(tmp_path):
    data = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), ".heic")
    path = write(tmp_path / "cut.heic", data[: len(data) // 2])
    with pytest.raises(BadImage) as caught:
        read_image(path)
    assert caught.value.reason == "truncated or corrupt image data"
    with pytest.raises(BadImage) as caught:  # its file-type box, then cut inside what libheif opens
        read_image(write(tmp_path / "cut-early.heic", data[:80]))
    assert caught.value.reason == "truncated or corrupt image header"
    with pytest.raises(BadImage, match="not an image"):
        read_image(write(tmp_path / "text.heic", b"a note, not a phone photo\n" * 8))


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    """Two classes of HEIC and AVIF photos, one corrupt HEIC among them."""
    root = tmp_path_factory.mktemp("phone")
    rng = np.random.default_rng(1)
    for label, colour in (("red", RED), ("blue", BLUE)):
        for i in range(4):
            pixels = np.clip(np.array(colour) + rng.integers(-6, 7, (20, 20, 3)), 0, 255).astype(np.uint8)
            suffix = (".heic", ".avif")[i % 2]
            write(root / label / f"{i}{suffix}", encode(pixels, suffix))
    good = (root / "red" / "0.heic").read_bytes()
    write(root / "red" / "broken.heic", good[: len(good) // 2])
    return root


def test_the_data_check_and_inspect_list_them(phone, capsys):
    dataset = load_dataset(phone, val_fraction=0.25, test_fraction=0.25, seed=0)
    used = [p for split in ("train", "val", "test") for p in dataset.paths[split]]
    assert len(used) == 8 and {p[-5:] for p in used} == {".heic", ".avif"}
    skipped = {str(path): reason for path, reason in dataset.report.skipped}
    assert skipped == {str(phone / "red" / "broken.heic"): "truncated or corrupt image data"}
    images = load_images(used, 16)
    assert images.shape == (8, 16, 16, 3)
    assert main(["inspect", str(phone), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(sum(c.values()) for c in report["counts"].values()) == 8
    assert any("broken.heic" in str(item) and "corrupt" in str(item) for item in report["skipped"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)[0]


def _digit_photos(tmp_path_factory, folder):
    """Two of the tiny run's digits as a HEIC and an AVIF file, and their PNG twins."""
    digits = sorted(tiny_run(tmp_path_factory)[1].rglob("*.png"))[:2]
    pairs = []
    for png, suffix in zip(digits, FORMATS):
        pixels = np.asarray(Image.open(png).convert("RGB"))
        pairs.append((png, write(folder / f"{png.stem}{suffix}", encode(pixels, suffix))))
    return pairs


def test_predict_on_heic_and_avif(run, tmp_path_factory, capsys):
    pairs = _digit_photos(tmp_path_factory, tmp_path_factory.mktemp("photos"))
    folder = pairs[0][1].parent
    assert main(["predict", str(run), str(folder), "--format", "json", "--top-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["path"][-5:] for r in rows) == [".avif", ".heic"]
    assert all(r["error"] is None and len(r["top"]) == 3 for r in rows)


def test_a_heic_upload_is_served(tmp_path_factory):
    (png, heic), _ = _digit_photos(tmp_path_factory, tmp_path_factory.mktemp("uploads"))
    app = tiny_app(tmp_path_factory)
    with live_server(app) as url:
        files = [("files", (heic.name, heic.read_bytes(), "image/heic"))]
        response = httpx.post(f"{url}/predict", files=files, params={"top_k": 2}, timeout=60)
        raw = httpx.post(f"{url}/predict", content=heic.read_bytes(), timeout=60,
                         headers={"content-type": "image/heic"})
    assert response.status_code == 200, response.text
    assert raw.status_code == 200, raw.text
    got = response.json()["predictions"][0]
    assert got["name"] == heic.name and len(got["top"]) == 2
    assert raw.json()["predictions"][0]["top"][0] == got["top"][0]
