"""One image file -> 8-bit RGB, the only way pixels enter imgclf.

Every decode goes through :func:`read_image`, so training, evaluation and prediction see the
same pixels: EXIF orientation applied, transparency composited on white, grayscale, palette,
CMYK and 16-bit images brought to 8-bit RGB, and decompression bombs refused from the header
before any pixel is decoded. HEIC/HEIF (phone photos) decode through the ``pillow-heif`` plugin,
registered with Pillow on the first decode; AVIF through Pillow's own plugin.

Example:
    >>> img = read_image("photos/cat/1.jpg")
    >>> resize(img, 224).shape
    (224, 224, 3)
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import zlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgclf.data.colour import to_rgb
from imgclf.errors import ImgclfError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif",
                    ".avif")
DEFAULT_MAX_PIXELS = 64_000_000

# Pillow plugins tried, in order; restricting them means a PSD or an SVG renamed .jpg is
# reported as "not an image" instead of being half-supported.
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "HEIF", "AVIF")
# The major brands of an ISO base media file that is a HEIF (HEIC, AVIF) still image.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
# Pillow raises any of these (and zlib.error) for a file that identifies but will not decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, RuntimeError, struct.error,
                  zlib.error)


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
    sha256: str = ""  # of the file's bytes (read anyway to decode): imgclf.health's exact duplicates


def read_image(path: str | os.PathLike | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS, *,
               draft_size: int | None = None) -> Image.Image:
    """Decode one image file fully into an 8-bit RGB Pillow image.

    Args:
        path: a jpg, jpeg, png, bmp, gif (first frame), webp, tiff, heic/heif or avif file
            (the primary image of a HEIF container), or an open binary
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
        # The file is read whole (Pillow would read it all to decode anyway), hashed, and decoded
        # from memory: the hash costs no second read (imgclf.health's exact duplicates). No image
        # within max_pixels needs more than 8 bytes a pixel (16-bit RGBA, uncompressed), so a
        # larger file is refused before it is read into memory.
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            if size == 0:
                raise BadImage("empty file", path)
            if size > 8 * max_pixels + 2**20:
                raise BadImage(f"file too large for an image within the pixel limit ({size / 2**20:.0f} MB)", path)
            blob = fp.read()
    except OSError as exc:
        raise BadImage(f"cannot read file ({exc.strerror or exc})", path) from None
    img, info = _decode(io.BytesIO(blob), path, max_pixels, draft_size, full_below)
    return img, dataclasses.replace(info, sha256=hashlib.sha256(blob).hexdigest())


def _register_plugins() -> None:
    """pillow-heif's HEIF opener, once per process, when the first image is decoded (not at
    import: importing imgclf changes nothing in Pillow)."""
    global _plugins_registered
    if not _plugins_registered:
        from pillow_heif import register_heif_opener
        register_heif_opener()
        _plugins_registered = True


_plugins_registered = False


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
    _register_plugins()
    try:
        img = Image.open(fp, formats=_FORMATS)
    except UnidentifiedImageError:
        # libheif refuses a damaged HEIF/AVIF file while Pillow identifies it: say which it is.
        fp.seek(0)
        head = fp.read(12)
        damaged = head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS
        raise BadImage("truncated or corrupt image header" if damaged else "not an image", path) from None
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
