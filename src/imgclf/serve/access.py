"""Who may use the service and what it did: the API key (``Authorization: Bearer <key>`` on the
model's routes, compared in constant time), where it comes from (a file or ``IMGCLF_API_KEY``),
the warning for an exposed server without one, and the one-line-per-request access log.

Example:
    >>> key = read_api_key("secrets/imgclf.key")       # or $IMGCLF_API_KEY when None
    >>> app = create_app("runs/digits", api_key=key)   # /predict and /model now need it
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from imgclf.errors import ImgclfError
from imgclf.serve.requests import ApiError

API_KEY_ENV = "IMGCLF_API_KEY"


def read_api_key(path: str | Path | None = None, environ: dict | None = None) -> str | None:
    """The API key: the first line of ``path`` when given, else ``$IMGCLF_API_KEY``, else None
    (no key: the service is open).

    Raises:
        ImgclfError: the file is missing, unreadable or empty.

    Example:
        >>> read_api_key(None, {"IMGCLF_API_KEY": "s3cret"})
        's3cret'
    """
    if path is None:
        return (environ if environ is not None else os.environ).get(API_KEY_ENV) or None
    try:
        key = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImgclfError(f"{path}: cannot read the API key file ({getattr(exc, 'strerror', None) or exc})") from None
    if not key or not key[0].strip():
        raise ImgclfError(f"{path}: the API key file is empty")
    return key[0].strip()


def require_key(authorization: str | None, key: str | None) -> None:
    """Refuse (401) a request whose ``Authorization`` header is not ``Bearer <key>``; no-op without a key.

    Example:
        >>> require_key("Bearer s3cret", "s3cret")  # passes
    """
    if key is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest on bytes: constant time for any input, even non-ASCII text
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise ApiError(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'")


def exposure_warning(host: str, key: str | None) -> str | None:
    """The one-line warning for binding beyond this machine without a key; None when fine.

    Example:
        >>> exposure_warning("0.0.0.0", None)[:30]
        'imgclf: warning: serving on 0.'
    """
    if key is not None or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to anything
    return (f"imgclf: warning: serving on {host} without an API key: anyone who can reach it can use "
            f"the model (--api-key-file FILE or ${API_KEY_ENV})")


class AccessLog:
    """ASGI middleware: one line per HTTP request, written when its response has been sent:
    ``2026-12-02T01:50:07 127.0.0.1 POST /predict 200 12.3 ms 2 images``. The image count is
    what the route left in ``request.state.images`` (0 for the others).

    Example:
        >>> app.add_middleware(AccessLog)
    """

    def __init__(self, app, out: Callable[[], TextIO] = lambda: sys.stdout):
        self.app, self.out = app, out

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]
        state = scope.setdefault("state", {})

        async def capture(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            ms = 1000 * (time.perf_counter() - started)
            client = (scope.get("client") or ("-",))[0]
            stream = self.out()
            stream.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {client} {scope['method']} {scope['path']} "
                         f"{status[0]} {ms:.1f} ms {state.get('images', 0)} images\n")
            stream.flush()
