"""One image file -> 8-bit RGB, the only way pixels enter imgclf.

Every decode goes through :func:`read_image`, so training, evaluation and prediction see the
same pixels: EXIF orientation applied, transparency composited on white, grayscale, palette,
CMYK and 16-bit images brought to 8-bit RGB, and decompression bombs refused from the header
before any pixel is decoded.

Example:
    >>> img = read_image("photos/cat/1.jpg")
    >>> resize(img, 224).shape
    (224, 224, 3)
"""
from __future__ import annotations

import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.errors import ImgclfError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow plugins tried, in order; restricting them means a PSD or an SVG renamed .jpg is
# reported as "not an image" instead of being half-supported.
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
_ALPHA_MODES = ("RGBA", "LA", "La", "PA", "RGBa")
# Pillow raises any of these (and zlib.error) for a file that identifies but will not decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class BadImage(ImgclfError):
    """A file that cannot be used as an image; ``reason`` is short and human ("empty file").

    Example:
        >>> try:
        ...     read_image("notes.jpg")
        ... except BadImage as exc:
        ...     print(exc.reason)
        not an image
    """

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")


@dataclass(frozen=True)
class ImageInfo:
    """What an image file was before conversion: displayed size (after EXIF), mode, format."""

    width: int
    height: int
    mode: str
    format: str


def read_image(path: str | os.PathLike | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS, *,
               draft_size: int | None = None) -> Image.Image:
    """Decode one image file fully into an 8-bit RGB Pillow image.

    Args:
        path: a jpg, jpeg, png, bmp, gif (first frame), webp or tiff file, or an open binary
            file-like object holding one (``io.BytesIO(upload)``: decoded in memory).
        max_pixels: refuse images whose header claims more than this many pixels.
        draft_size: if given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as both
            sides stay at least this long (libjpeg's DCT scaling: much faster for photos that
            are about to be shrunk to ``draft_size`` anyway).

    Returns:
        A loaded image in mode "RGB", EXIF orientation applied.

    Raises:
        BadImage: with a short ``reason`` ("empty file", "not an image", "truncated or corrupt
            image data", "too large: ...").

    Example:
        >>> read_image("photos/cat/1.jpg").mode
        'RGB'
    """
    return _read(path, max_pixels, draft_size)[0]


def inspect_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Decode an image fully (catching bad files) and describe the original.

    A JPEG is entropy-decoded in full (where truncation and corruption show up) but its
    pixels are rebuilt at 1/8 scale, which is 2-3 times faster for photos.

    Args:
        path: the image file.
        max_pixels: as in :func:`read_image`.

    Returns:
        ImageInfo with the displayed width and height, the original Pillow mode and format.

    Raises:
        BadImage: as :func:`read_image`.

    Example:
        >>> inspect_image("scan.png")
        ImageInfo(width=640, height=480, mode='I;16', format='PNG')
    """
    return _read(path, max_pixels, 1)[1]


def inspect_and_read(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                     keep_pixels: int = 0) -> tuple[ImageInfo, Image.Image | None]:
    """:func:`inspect_image`, also handing back the decoded image when it is small.

    Tiny images (MNIST, CIFAR) cost more in per-file overhead than in decoding, so checking
    them and decoding them again for training doubles the data stage; a small image is
    decoded in full here (no JPEG draft), giving exactly :func:`read_image`'s pixels.

    Args:
        path: the image file.
        max_pixels: as in :func:`read_image`.
        keep_pixels: return the RGB image when it has at most this many pixels; 0: never.

    Returns:
        (ImageInfo, the RGB image or None).

    Raises:
        BadImage: as :func:`read_image`.

    Example:
        >>> info, img = inspect_and_read("digit.png", keep_pixels=64 * 64)
        >>> img.size, img.mode
        ((28, 28), 'RGB')
    """
    img, info = _read(path, max_pixels, 1, keep_pixels)
    return info, (img if info.width * info.height <= keep_pixels else None)


def resize(img: Image.Image, size: int) -> np.ndarray:
    """Squash an RGB image to ``size`` x ``size`` and return its pixels.

    The aspect ratio is not kept, as in Keras' ``image_dataset_from_directory`` default
    (``crop_to_aspect_ratio=False``): nothing of the object is cropped away, and
    classifiers cope with the stretch because training and prediction stretch alike.
    Pillow's bilinear filter widens with the reduction factor, so shrinking averages over
    the covered area instead of aliasing; ``reducing_gap`` first box-reduces big images by
    an integer factor, which is much faster and visually identical.

    Args:
        img: an RGB image (from :func:`read_image`).
        size: the side of the square output, in pixels.

    Returns:
        uint8 array of shape (size, size, 3).

    Example:
        >>> resize(read_image("photos/cat/1.jpg"), 96).shape
        (96, 96, 3)
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.array(img, dtype=np.uint8)


def _read(path: str | os.PathLike | BinaryIO, max_pixels: int, draft_size: int | None, full_below: int = 0
          ) -> tuple[Image.Image, ImageInfo]:
    if hasattr(path, "read"):  # an upload held in memory: same rules, nothing touches the disk
        if path.seek(0, os.SEEK_END) == 0:
            raise BadImage("empty file")
        path.seek(0)
        return _decode(path, None, max_pixels, draft_size, full_below)
    path = Path(path)
    try:
        kind = file_kind(path)
        if kind:  # never open() a FIFO or a device: it blocks until a writer appears
            raise BadImage(f"not a regular file ({kind})", path)
        # Our own handle: leaving the block closes the file but keeps the decoded pixels
        # (closing a Pillow image instead would destroy them).
        with open(path, "rb") as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise BadImage("empty file", path)
            return _decode(fp, path, max_pixels, draft_size, full_below)
    except OSError as exc:
        raise BadImage(f"cannot read file ({exc.strerror or exc})", path) from None


def file_kind(path: str | os.PathLike) -> str | None:
    """None for a regular file (or a symlink to one); otherwise what it is ("a FIFO", "a
    folder", ...), found with ``stat`` so nothing is opened.

    Raises:
        OSError: the path cannot be stat'ed (missing, a dangling link, no permission).

    Example:
        >>> file_kind("/dev/null")
        'a device'
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _decode(fp, path: Path | None, max_pixels: int, draft_size: int | None, full_below: int = 0
            ) -> tuple[Image.Image, ImageInfo]:
    try:
        img = Image.open(fp, formats=_FORMATS)
    except UnidentifiedImageError:
        raise BadImage("not an image", path) from None
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (a process-wide limit) fired first; report it against ours.
        raise BadImage(_bomb_reason(str(exc), max_pixels), path) from None
    except _DECODE_ERRORS:
        raise BadImage("truncated or corrupt image header", path) from None
    width, height = img.size
    if width * height > max_pixels:
        raise BadImage(f"too large: {width}x{height} pixels exceeds the limit of {max_pixels}", path)
    mode, fmt = img.mode, img.format or "?"
    if draft_size and width * height > full_below:
        img.draft(None, (draft_size, draft_size))
    try:
        img.load()  # decode everything now, so a truncated file fails here, not later
    except _DECODE_ERRORS + (TypeError,):  # TypeError: Pillow on a TIFF tag of the wrong type (fuzzing)
        raise BadImage("truncated or corrupt image data", path) from None
    loaded = img.size
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except _DECODE_ERRORS + (KeyError, TypeError):
        pass  # a broken EXIF block must not cost the pixels; keep the stored orientation
    if img.size != loaded:  # turned by a quarter: report the size as displayed
        width, height = height, width
    return to_rgb(img, path), ImageInfo(width, height, mode, fmt)


def _bomb_reason(message: str, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", message)
    pixels = int(found.group(1)) if found else None
    if pixels is None or pixels > max_pixels:
        return f"too large: {pixels or 'too many'} pixels exceeds the limit of {max_pixels}"
    return f"too large: {pixels} pixels exceeds Pillow's limit (PIL.Image.MAX_IMAGE_PIXELS)"


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
