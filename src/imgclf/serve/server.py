"""Running the service: ``imgclf serve`` on one process or several, on a socket bound first.

The socket is bound before the model loads, so a busy port fails at once in one line; then the
model loads (and warms up) before the first connection is accepted.

Example:
    >>> serve("runs/digits", port=8080)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import asdict
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.serve.access import exposure_warning
from imgclf.serve.app import create_app, log
from imgclf.serve.requests import Limits
from imgclf.serve.timeouts import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, server_options

_ENV = "IMGCLF_SERVE"  # how `--workers N` hands the source and limits to each worker process


def app_from_env():
    """The FastAPI app each ``--workers`` process makes (the process's entry point), configured by
    :func:`serve` through the environment; the model loads here, before the worker accepts a
    connection, with TensorFlow's start-up lines hidden as in the command line."""
    from imgclf.console import import_tensorflow_quietly
    from imgclf.deploy.formats import runs_without_tensorflow
    spec = json.loads(os.environ[_ENV])
    if not runs_without_tensorflow(spec["source"]):
        import_tensorflow_quietly()
    try:
        return create_app(spec["source"], limits=Limits(**spec.get("limits", {})), preload=True,
                          **spec.get("access", {}))
    except ImgclfError as exc:
        from uvicorn.config import STARTUP_FAILURE
        log.error("imgclf: error: %s", exc)
        sys.exit(STARTUP_FAILURE)  # tells uvicorn's supervisor to stop, not to restart us forever


def _listen_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio turns on TCP_NODELAY for accepted connections only
    # then. uvicorn's own listener for --workers leaves it out, and every keep-alive response
    # then waits ~40 ms on Nagle and delayed ACKs (Kludex/uvicorn#3149).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ImgclfError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def serve(source: str | Path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          limits: Limits | None = None, log_level: str = "info", api_key: str | None = None,
          cors_origins: tuple[str, ...] = (), access_log: bool = False,
          read_timeout: float = DEFAULT_READ_TIMEOUT, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
    """Serve a model until interrupted: the API, the page and the OpenAPI schema.

    Args:
        source: a run directory or exported model.
        host: the address to bind; loopback by default, so nothing is exposed by accident.
        port: the TCP port.
        workers: processes, each loading the model once before it takes requests.
        limits: request limits.
        log_level: uvicorn's log level.
        api_key: required as ``Authorization: Bearer <key>`` on /predict and /model (None: open);
            without one, binding a non-loopback address prints a one-line warning.
        cors_origins: browser origins on other hosts allowed to call the API.
        access_log: imgclf's one line per request (method, path, status, latency, images)
            instead of uvicorn's access lines.
        read_timeout: seconds a client has to send a whole request (headers and body).
        max_connections: open connections at most; more are answered 503.

    Example:
        >>> serve("runs/digits", port=8080)  # doctest: +SKIP
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess
    if not Path(source).exists():
        raise ImgclfError(f"{source}: no such run directory or model file")
    if workers < 1:
        raise ImgclfError(f"--workers must be at least 1, got {workers}")
    limits = limits or Limits()
    if read_timeout <= 0 or max_connections < 1:
        raise ImgclfError(f"--read-timeout must be above 0 and --max-connections at least 1, got "
                          f"{read_timeout} and {max_connections}")
    options = {**server_options(read_timeout, max_connections), "access_log": not access_log}
    access = {"api_key": api_key, "cors_origins": tuple(cors_origins), "access_log": access_log}
    warning = exposure_warning(host, api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    sock = _listen_socket(host, port)  # a busy port fails here, before the model loads
    try:
        if workers == 1:
            app = create_app(source, limits=limits, preload=True, **access)  # a bad model fails here, in one line
            uvicorn.Server(uvicorn.Config(app, log_level=log_level, **options)).run(sockets=[sock])
            return
        os.environ[_ENV] = json.dumps({"source": str(Path(source).resolve()), "limits": asdict(limits),
                                       "access": access})
        config = uvicorn.Config("imgclf.serve.server:app_from_env", factory=True, host=host, port=port,
                                workers=workers, log_level=log_level, **options)
        logging.getLogger("uvicorn.error").info("imgclf: %d workers on http://%s:%d", workers, host, port)
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        sock.close()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise ImgclfError(f"{source}: the workers could not load the model (the reason is above)")
