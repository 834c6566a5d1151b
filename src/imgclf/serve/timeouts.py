"""Slow and stalled clients: every request must arrive whole (headers and body) within a time
limit, and the server holds at most so many connections.

uvicorn bounds the idle time between keep-alive requests (``timeout_keep_alive``) and the open
connections (``limit_concurrency``, answered 503 beyond it) but never the time a client takes
to send a request: a client that stalls after its headers, or a thousand half-sent requests,
stay open forever. ``ReadTimeoutH11`` is uvicorn's own HTTP/1.1 protocol with that one limit
added: from a connection's start, or the first byte of each request, the request has
``read_timeout`` seconds to arrive whole; otherwise the connection is closed. Time spent
answering (running the model) does not count.

Example:
    >>> uvicorn.Config(app, **server_options(read_timeout=10, max_connections=256))
"""
from __future__ import annotations

import os

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_ENV = "IMGCLF_READ_TIMEOUT"  # how the limit reaches the --workers processes (spawned)
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 256


class ReadTimeoutH11(H11Protocol):
    """uvicorn's H11Protocol that closes a connection whose request has not arrived whole
    ``read_timeout`` seconds after the connection opened or the request's first byte."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._read_timer = None
        self._start_timer()  # a client that connects and sends nothing is timed too

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._start_timer()  # the first byte of a new request
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._stop_timer()
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _start_timer(self) -> None:
        self._read_timer = self.loop.call_later(read_timeout(), self._expired)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _expired(self) -> None:
        self._read_timer = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()  # headers or body still incomplete: drop the slow client


def read_timeout() -> float:
    """The limit in seconds (``$IMGCLF_READ_TIMEOUT``, set by :func:`server_options`)."""
    try:
        return float(os.environ.get(_ENV, "")) or DEFAULT_READ_TIMEOUT
    except ValueError:
        return DEFAULT_READ_TIMEOUT


def server_options(read_timeout: float = DEFAULT_READ_TIMEOUT,
                   max_connections: int = DEFAULT_MAX_CONNECTIONS) -> dict:
    """uvicorn.Config keywords for these limits (the environment carries the time-out into
    worker processes).

    Example:
        >>> server_options(5, 100)["limit_concurrency"]
        100
    """
    os.environ[_ENV] = repr(float(read_timeout))
    return {"http": ReadTimeoutH11, "limit_concurrency": max_connections, "timeout_keep_alive": 5}
