"""Any Pillow mode to 8-bit RGB, the way a person would expect to see it (data.images decodes,
this converts).

Example:
    >>> to_rgb(Image.new("I;16", (4, 4), 65535)).getpixel((0, 0))
    (255, 255, 255)
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

_ALPHA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")


def to_rgb(img: Image.Image, path: str | os.PathLike | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB the way a person would expect to see it.

    Transparency is composited on white (a transparent background is nearly always white
    on screen, and black would invent a dark frame). 16-bit values are scaled by 1/257 so
    that 65535 maps to 255 (clipping would turn most of a 16-bit image white). Pillow
    already reduces 16-bit colour PNG/TIFF to 8 bits by their high byte, within one level
    of 1/257. Float ("F") images are taken as 0-1 if their maximum is at most 1, else 0-255.

    Args:
        img: a loaded Pillow image in any mode.
        path: named in the error if the mode cannot be converted.

    Returns:
        The image in mode "RGB" (the same object if it already was).

    Example:
        >>> to_rgb(Image.new("I;16", (4, 4), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_wide_to_uint8(img)).convert("RGB")
    try:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            white.alpha_composite(rgba)
            return white.convert("RGB")
        return img.convert("RGB")
    except ValueError:
        from imgclf.data.images import BadImage  # images imports this module
        raise BadImage(f"unsupported colour mode {mode}", path) from None


def _wide_to_uint8(img: Image.Image) -> np.ndarray:
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = np.nanmax(values) if values.size else 0.0
        scale = 255.0 if top <= 1.0 else 1.0
        return np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    # "I;16*" holds 16-bit samples; Pillow also uses 32-bit "I" for 16-bit sources
    # (some PNG and TIFF variants), so "I" is read as 16-bit too.
    values = np.asarray(img).astype(np.int64)
    return np.clip((values + 128) // 257, 0, 255).astype(np.uint8)
