"""Load test for ``imgclf serve``: N concurrent clients on loopback, bounded, then a report.

Each client is a thread with its own keep-alive HTTP connection that POSTs one image as
multipart to ``/predict`` again and again. The run stops by itself when ``--requests`` have been
sent or ``--duration`` seconds have passed, whichever comes first. It reports requests/s,
p50/p90/p99/max latency and the error count (any answer but 200, or a broken connection);
0 errors is the bar.

With ``--run`` the script starts ``imgclf serve RUN --workers W`` itself on a free loopback port,
waits for ``/health``, measures, and stops the server; with ``--url`` it measures a server that
is already running (loopback only: this is not a tool for loading other people's machines).
The image is a seeded noise PNG at the model's input size unless ``--image`` names one.

Example:
    python benchmarks/serve_load.py --run runs/digits --clients 8 --requests 2000 --duration 30
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --clients 4 --json
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BOUNDARY = "imgclf-load-boundary"


def multipart_body(image: bytes, filename: str = "image.png") -> tuple[bytes, str]:
    """One image as a multipart/form-data body; returns (body, content type)."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def noise_png(size: int, seed: int = 0) -> bytes:
    """A seeded RGB noise image, PNG-encoded (noise: no shortcut in decoding or the model)."""
    import numpy as np
    from PIL import Image
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(round(q / 100 * (len(sorted_values) - 1))))]


def run_load(url: str, body: bytes, content_type: str, *, clients: int = 8, requests: int = 1000,
             duration: float = 30.0, path: str = "/predict?top_k=5") -> dict:
    """Send at most ``requests`` POSTs from ``clients`` threads for at most ``duration`` seconds.

    Args:
        url: the server's base URL, on loopback.
        body, content_type: the request body and its Content-Type, sent every time.
        clients: concurrent connections.
        requests: the most requests sent in all.
        duration: the most seconds spent sending.
        path: the path (and query) posted to.

    Returns:
        A dict: requests, errors, error_kinds, seconds, requests_per_s, p50_ms, p90_ms, p99_ms, max_ms.

    Example:
        >>> body, kind = multipart_body(noise_png(32))
        >>> run_load("http://127.0.0.1:8000", body, kind, clients=2, requests=20)["errors"]
        0
    """
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"serve_load: {url}: loopback addresses only")
    lock, issued, latencies, errors = threading.Lock(), [0], [], {}
    start = time.perf_counter()
    deadline = start + duration

    def take() -> bool:
        with lock:
            if issued[0] >= requests or time.perf_counter() >= deadline:
                return False
            issued[0] += 1
            return True

    def client() -> None:
        conn = None
        while take():
            t0 = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                kind = None if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                kind, conn = type(exc).__name__, None
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                if kind:
                    errors[kind] = errors.get(kind, 0) + 1
        if conn:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)
    return {"requests": len(ms), "errors": sum(errors.values()), "error_kinds": errors, "clients": clients,
            "seconds": round(seconds, 3), "requests_per_s": round(len(ms) / seconds, 1) if seconds else 0.0,
            "p50_ms": round(_percentile(ms, 50), 1), "p90_ms": round(_percentile(ms, 90), 1),
            "p99_ms": round(_percentile(ms, 99), 1), "max_ms": round(ms[-1], 1) if ms else float("nan")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def wait_ready(url: str, timeout: float, server: subprocess.Popen | None = None, workers: int = 1) -> None:
    """Poll ``/health`` (a new connection each time) until ``workers`` different processes said ready.

    Each ``--workers`` process loads its model before it accepts connections, so a request never
    reaches an unready worker; waiting for all of them only makes the measurement fair.
    """
    deadline, pids = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            server.log.seek(0)
            tail = "".join(server.log.readlines()[-15:])
            raise SystemExit(f"serve_load: the server exited with status {server.returncode}:\n{tail}")
        status, body = _get_json(f"{url}/health")
        if status == 200:
            pids.add(body.get("pid"))
            if len(pids) >= workers:
                return
        time.sleep(0.05 if status == 200 else 0.2)
    raise SystemExit(f"serve_load: {url}: {len(pids)} of {workers} workers ready after {timeout:.0f} s")


def start_server(run: str, workers: int) -> tuple[subprocess.Popen, str]:
    """``imgclf serve RUN`` in a child process on a free loopback port; returns (process, URL)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "imgclf", "serve", run, "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server can never block on it
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    server.log = log
    return server, f"http://127.0.0.1:{port}"


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it hangs."""
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    server.log.close()


def format_report(report: dict) -> str:
    """One line for people."""
    kinds = ", ".join(f"{k}: {v}" for k, v in report["error_kinds"].items()) or "none"
    return (f"{report['requests']} requests from {report['clients']} clients in {report['seconds']} s: "
            f"{report['requests_per_s']} req/s, p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
            f"max {report['max_ms']} ms, errors {report['errors']} ({kinds})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="a run (or exported model): start `imgclf serve` on it")
    where.add_argument("--url", help="a server already running on loopback")
    parser.add_argument("--workers", type=int, default=1, help="with --run: server processes (default 1)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=2000, help="requests at most (default 2000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds at most (default 30)")
    parser.add_argument("--image", help="an image file to send (default: noise at the model's input size)")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    server, url = start_server(args.run, args.workers) if args.run else (None, args.url.rstrip("/"))
    try:
        wait_ready(url, args.startup_timeout, server, args.workers if server else 1)
        card = _get_json(f"{url}/model")[1]
        image = Path(args.image).read_bytes() if args.image else noise_png(int(card.get("image_size", 224)))
        report = run_load(url, *multipart_body(image), clients=args.clients, requests=args.requests,
                          duration=args.duration)
        report.update(workers=args.workers if server else None, image_size=card.get("image_size"),
                      backbone=card.get("backbone"), image_bytes=len(image))
    finally:
        if server:
            stop_server(server)
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
