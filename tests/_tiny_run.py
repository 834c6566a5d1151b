"""Shared by the serving tests: one tiny real run per test session, and a live loopback server.

The run is trained once per pytest process (the first module that asks pays ~30-60 s) and
reused by test_serve.py and test_browser.py, without a conftest.py.
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_CACHE: dict = {}


def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run_dir, digits_dir): a real two-phase run on scikit-learn's digits at 32 px."""
    if "run" not in _CACHE:
        from imgclf.data.datasets import write_digits
        from imgclf.workflow import train
        root = tmp_path_factory.mktemp("tiny-run")
        write_digits(root / "digits", per_class=12)
        result = train(root / "digits", runs_dir=root / "runs", name="digits", verbose=False, image_size=32,
                       epochs=2, fine_tune_epochs=1, batch_size=16, seed=3, val_fraction=0.2,
                       test_fraction=0.25)
        _CACHE["run"], _CACHE["digits"] = result.run_dir, root / "digits"
    return _CACHE["run"], _CACHE["digits"]


# Tight enough that every limit can be hit with small test files.
LIMITS = dict(max_upload_bytes=3_000_000, max_images=4, max_pixels=1_000_000, max_top_k=20)


def tiny_app(tmp_path_factory):
    """The app over :func:`tiny_run` with :data:`LIMITS`, model loaded (once per session)."""
    if "app" not in _CACHE:
        from imgclf.serve import Limits, create_app
        _CACHE["app"] = create_app(tiny_run(tmp_path_factory)[0], limits=Limits(**LIMITS), preload=True)
    return _CACHE["app"]


def free_socket() -> socket.socket:
    """A listening-ready TCP socket on a free loopback port (handed to uvicorn: no port race)."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so; without it
    # Nagle and delayed ACKs add 40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def live_server(app, timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn in a thread on 127.0.0.1; yields its base URL."""
    import uvicorn
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    """Poll ``/health`` until it answers 200."""
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")
