"""Generated image files for the data tests: good ones in every format and mode, and bad ones.

Everything is written into a tmp dir by the tests; nothing here runs at import.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE = (255, 0, 0), (0, 160, 0), (0, 0, 255)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC, as the PNG spec lays it out."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG file from raw parts: header, one IDAT (already compressed), end."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def bomb_png(side: int = 100_000) -> bytes:
    """A PNG whose header claims side x side RGB pixels, with a body of a few bytes."""
    return png_bytes(side, side, 8, 2, zlib.compress(b"\x00" * 64))


def rgb16_png(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one) from a uint16 (H, W, 3) array."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    return png_bytes(width, height, 16, 2, zlib.compress(rows))


def noise_jpeg(size=(64, 48), seed=0) -> bytes:
    """A JPEG with plenty of entropy-coded data, so cutting it really truncates pixels."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def quadrant_image(width: int = 40, height: int = 20) -> Image.Image:
    """Green, with the top-left quadrant red: shows where a rotation moved the corner."""
    img = Image.new("RGB", (width, height), GREEN)
    img.paste(RED, (0, 0, width // 2, height // 2))
    return img


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 40x20 JPEG whose EXIF says: rotate before display."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    quadrant_image().save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def write_good(folder: Path) -> dict[str, Path]:
    """One good image per format and unusual mode; returns name -> path."""
    f = Path(folder)
    out = {}
    out["rgb.jpg"] = save(Image.new("RGB", (32, 24), RED), f / "rgb.jpg", quality=95)
    out["gray.png"] = save(Image.new("L", (16, 16), 100), f / "gray.png")
    out["bilevel.bmp"] = save(Image.new("1", (16, 16), 1), f / "bilevel.bmp")
    gray16 = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16).repeat(4, axis=0)
    out["gray16.png"] = save(Image.fromarray(gray16), f / "gray16.png")
    rgb16 = np.zeros((4, 4, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 257 * 128, 0
    (f / "rgb16.png").write_bytes(rgb16_png(rgb16))
    out["rgb16.png"] = f / "rgb16.png"
    out["cmyk.jpg"] = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), f / "cmyk.jpg", quality=95)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    pal.paste(1, (0, 0, 4, 8))  # left half red (index 1), right half index 0 = transparent
    out["palette.png"] = save(pal, f / "palette.png", transparency=0)
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 4, 8))
    out["rgba.png"] = save(rgba, f / "rgba.png")
    (f / "rotated.jpg").write_bytes(exif_rotated_jpeg(6))
    out["rotated.jpg"] = f / "rotated.jpg"
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    out["anim.gif"] = save(frames[0], f / "anim.gif", save_all=True, append_images=frames[1:])
    out["pic.webp"] = save(Image.new("RGB", (12, 12), BLUE), f / "pic.webp", lossless=True)
    out["pic.tiff"] = save(Image.new("RGB", (12, 10), GREEN), f / "pic.tiff")
    out["pic.bmp"] = save(Image.new("RGB", (10, 12), RED), f / "pic.bmp")
    return out


def write_bad(folder: Path) -> dict[str, tuple[Path, str]]:
    """One file per way of being bad; returns name -> (path, expected reason prefix)."""
    f = Path(folder)
    f.mkdir(parents=True, exist_ok=True)
    jpeg = noise_jpeg()
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt image data"),
        "empty.jpg": (b"", "empty file"),
        "text.jpg": (b"this is a note, not a photo\n" * 4, "not an image"),
        "bomb.png": (bomb_png(), "too large"),
    }
    out = {}
    for name, (data, reason) in cases.items():
        (f / name).write_bytes(data)
        out[name] = (f / name, reason)
    return out


COLOURS = {"apple": (200, 30, 30), "grape": (90, 30, 140), "lime": (40, 200, 40)}


def write_classes(root: Path, per_class: int = 10, size=(12, 10), classes=COLOURS) -> Path:
    """root/<class>/NNN.png: solid colour per class, a little noise so files differ."""
    rng = np.random.default_rng(0)
    for name, colour in classes.items():
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.integers(-5, 6, (size[1], size[0], 3)), 0, 255)
            save(Image.fromarray(pixels.astype(np.uint8)), Path(root) / name / f"{i:03d}.png")
    return Path(root)
