"""Reading one request into images, within limits: the body (counted as it arrives), then
multipart parts, base64 strings in JSON, or one raw image. Every refusal is an ApiError that
the app turns into a 4xx JSON answer; nothing is written to disk.

Example:
    >>> uploads = await read_uploads(request, await read_body(request, Limits().max_upload_bytes))
    >>> uploads[0][0]
    'shoe.png'
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from typing import Any

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from imgclf.errors import ImgclfError

_RAW_TYPES = ("application/octet-stream",)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service; anything beyond gets a 4xx, never a 500.

    Example:
        >>> Limits(max_upload_bytes=2_000_000).max_images
        16
    """

    max_upload_bytes: int = 10 * 1024 * 1024  # whole request body, counted as it arrives
    max_images: int = 16  # per request
    max_pixels: int = 25_000_000  # per image, from its header, before decoding
    max_top_k: int = 100
    decode_threads: int = 4  # requests decoding at once: bounds memory under load

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ImgclfError(f"serve limit {name} must be a positive integer, got {value!r}")


class ApiError(Exception):
    """A refusal with its HTTP status, a short ``error`` and a ``detail`` for the client."""

    def __init__(self, status: int, error: str, detail: Any = None):
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


class _InMemoryMultiPart(MultiPartParser):
    # The body is already bounded by Limits.max_upload_bytes; a spool this size never rolls
    # over to a temporary file, so no upload touches the disk.
    spool_max_size = 1 << 62


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limit`` bytes, or (400) when empty."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "upload too large", f"the request body may be at most {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():  # counted as it arrives: Content-Length may lie or be absent
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "upload too large", f"the request body may be at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client disconnected") from None
    if not size:
        raise ApiError(400, "empty body", "send images as multipart/form-data, JSON {\"images\": [base64]}, "
                                         "or one raw image body")
    return b"".join(chunks)


async def read_uploads(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in the body, by its content type (415 for any other)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _multipart(request, body)
    if media == "application/json":
        return _json_images(body)
    if media.startswith("image/") or media in _RAW_TYPES:
        return [("body", body)]
    raise ApiError(415, "unsupported content type", f"got '{media or 'none'}'; use multipart/form-data, "
                   "application/json or image/*")


async def _multipart(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    async def once():
        yield body
    try:
        form = await _InMemoryMultiPart(request.headers, once(), max_part_size=len(body)).parse()
    except (MultiPartException, ValueError, KeyError) as exc:
        raise ApiError(400, "malformed multipart body", str(exc)) from None
    files = []
    for _, value in form.multi_items():
        if not isinstance(value, str):
            files.append((value.filename or "upload", await value.read()))
    await form.close()
    return files


def _json_images(body: bytes) -> list[tuple[str, bytes]]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid JSON") from None
    items = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ApiError(400, "invalid JSON", 'expected {"images": ["<base64 or data: URL>", ...]}')
    images = []
    for i, item in enumerate(items):
        text = item.split("base64,", 1)[1] if item.startswith("data:") and "base64," in item else item
        try:
            images.append((f"image-{i}", base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid base64", {"index": i}) from None
    return images
