"""serve/timeouts.py: a client that stalls after its headers, or in its body, or many half-sent
requests, are cut off after the read time-out while other clients keep being served."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from imgclf.serve.timeouts import server_options

READ_TIMEOUT = 1.0


async def _echo(scope, receive, send):
    """A tiny ASGI app: reads the whole body, answers its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.fixture(scope="module")
def url():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_echo, log_level="warning", lifespan="off",
                            **server_options(read_timeout=READ_TIMEOUT, max_connections=400))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(10)
    sock.close()


def _stalled(address, payload: bytes) -> socket.socket:
    client = socket.create_connection(address)
    client.sendall(payload)
    return client


def _closed_after(client: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed the connection, or None if it stayed open past limit."""
    client.settimeout(limit)
    start = time.monotonic()
    try:
        while True:
            data = client.recv(4096)
            if not data:
                return time.monotonic() - start
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        return time.monotonic() - start
    finally:
        client.close()


HEADERS_ONLY = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"  # then no body
HALF_HEADERS = b"GET /x HTTP/1.1\r\nHost: a\r\n"  # headers never finished


@pytest.mark.parametrize("payload", [HEADERS_ONLY, HALF_HEADERS, b""], ids=["body", "headers", "nothing"])
def test_a_stalled_client_is_cut_off_after_the_read_timeout(url, payload):
    took = _closed_after(_stalled(url, payload), limit=READ_TIMEOUT + 4)
    assert took is not None and took < READ_TIMEOUT + 1.5


def test_others_are_served_promptly_while_hundreds_of_requests_stall(url):
    stalled = [_stalled(url, HALF_HEADERS if i % 2 else HEADERS_ONLY) for i in range(300)]
    latencies = []
    with httpx.Client(base_url=f"http://{url[0]}:{url[1]}") as client:
        end = time.monotonic() + READ_TIMEOUT + 1
        while time.monotonic() < end:
            start = time.monotonic()
            answer = client.post("/x", content=b"12345")
            latencies.append(time.monotonic() - start)
            assert answer.status_code == 200 and answer.text == "5"
    assert max(latencies) < 0.5, max(latencies)
    closed = [_closed_after(s, limit=3) for s in stalled]
    assert all(took is not None for took in closed)  # every stalled one was cut off


def test_a_slow_but_steady_request_within_the_limit_is_answered(url):
    client = socket.create_connection(url)
    client.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
    for byte in b"abcd":
        time.sleep(READ_TIMEOUT / 8)
        client.sendall(bytes([byte]))
    client.settimeout(5)
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    client.close()
