"""serve.py: every endpoint and every limit, against a real uvicorn on a free loopback port."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import _corpus
from _tiny_run import LIMITS, live_server, tiny_app, tiny_run, wait_ready
from imgclf.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return sorted(tiny_run(tmp_path_factory)[1].rglob("*.png"))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return tiny_app(tmp_path_factory)


@pytest.fixture(scope="module")
def url(app):
    with live_server(app) as base:
        yield base


@pytest.fixture()
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def png(width: int, height: int, noise: bool = False) -> bytes:
    shape = (height, width, 3)
    pixels = np.random.default_rng(0).integers(0, 256, shape, np.uint8) if noise else np.full(shape, 90, np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str)
    assert fragment in json.dumps(body), body
    return body


def test_health_model_card_and_openapi(client, run):
    health = client.get("/health").json()
    assert health["status"] == "ready" and health["pid"] > 0
    card = client.get("/model").json()
    metrics = json.loads((run / "metrics.json").read_text())
    assert card["backbone"] == "efficientnet_lite0" and card["image_size"] == 32
    assert card["class_names"] == [str(d) for d in range(10)] and card["num_classes"] == 10
    assert card["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"]) and card["metrics"]["n"] == 30
    assert card["metrics"]["accuracy_ci"] == metrics["accuracy_ci"]  # the interval travels with the number
    assert card["temperature"] == json.loads((run / "run.json").read_text())["calibration"]["temperature"]
    assert card["limits"]["max_images"] == LIMITS["max_images"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_page_and_its_assets_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/assets/app.js", "/assets/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""")
    for text in (page.text, client.get("/assets/style.css").text, client.get("/assets/app.js").text):
        assert not external.search(text)  # no CDN, no external font: the browser test checks requests too


def test_multipart_predictions_match_the_python_api(client, app, digits):
    paths = digits[:3]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = client.post("/predict", params={"top_k": 3}, files=files)
    assert response.status_code == 200, response.text
    got = response.json()
    expected = list(app.state.imgclf.classifier.predict_paths(paths, top_k=3))
    assert got["top_k"] == 3 and [p["name"] for p in got["predictions"]] == [p.name for p in paths]
    for row, want in zip(got["predictions"], expected):
        assert [t["label"] for t in row["top"]] == [label for label, _ in want["top"]]
        np.testing.assert_allclose([t["probability"] for t in row["top"]], [p for _, p in want["top"]],
                                   atol=1e-5)


def test_json_base64_data_url_and_raw_body_agree(client, digits):
    data = digits[5].read_bytes()
    b64 = base64.b64encode(data).decode()
    multipart = client.post("/predict", files={"file": ("d.png", data, "image/png")}).json()["predictions"][0]
    as_json = client.post("/predict", json={"images": [b64, f"data:image/png;base64,{b64}"]}).json()
    raw = client.post("/predict", content=data, headers={"content-type": "image/png"}).json()
    for row in [*as_json["predictions"], raw["predictions"][0]]:
        assert [t["label"] for t in row["top"]] == [t["label"] for t in multipart["top"]]
    assert [p["name"] for p in as_json["predictions"]] == ["image-0", "image-1"]


def test_top_k_option(client, digits):
    data = digits[0].read_bytes()
    def post(**params):
        return client.post("/predict", params=params, content=data, headers={"content-type": "image/png"})
    top = post(top_k=4).json()["predictions"][0]["top"]
    probs = [t["probability"] for t in top]
    assert len(top) == 4 and probs == sorted(probs, reverse=True)
    assert post().json()["top_k"] == 5
    assert post(top_k=20).json()["top_k"] == 10  # more than there are classes: all of them
    for bad in (0, -1, 21, "abc", "1e309"):
        assert_error(post(top_k=bad), 422, "top_k")


def test_min_confidence_answers_unknown(client, digits):
    data = digits[0].read_bytes()
    def post(**params):
        return client.post("/predict", params=params, content=data, headers={"content-type": "image/png"})
    plain = post().json()["predictions"][0]
    assert plain["label"] == plain["top"][0]["label"]  # 0 by default: always an answer
    top_p = plain["top"][0]["probability"]
    assert post(min_confidence=top_p).json()["predictions"][0]["label"] == plain["label"]
    if top_p < 1.0:
        above = post(min_confidence=min(1.0, top_p + 1e-3)).json()
        assert above["predictions"][0]["label"] == "unknown" and above["min_confidence"] > top_p
    for bad in (-0.1, 1.5, "abc"):
        assert_error(post(min_confidence=bad), 422, "min_confidence")


@pytest.mark.parametrize("case, status, fragment", [
    ("empty body", 400, "empty body"),
    ("text/plain body", 415, "unsupported content type"),
    ("no content type", 415, "unsupported content type"),
    ("not an image", 415, "not an image"),
    ("truncated jpeg", 415, "truncated"),
    ("empty file part", 415, "empty file"),
    ("decompression bomb", 413, "too large"),
    ("over the pixel limit", 413, "exceeds the limit of 1000000"),
    ("too many images", 413, "at most 4"),
    ("no files in the form", 400, "no images"),
    ("multipart without boundary", 400, "malformed multipart"),
    ("invalid json", 400, "invalid JSON"),
    ("json of the wrong shape", 400, "expected"),
    ("invalid base64", 400, "invalid base64"),
    ("empty image list", 400, "no images"),
])
def test_each_limit_is_a_clear_4xx(client, digits, case, status, fragment):
    good = digits[0].read_bytes()
    jpeg = _corpus.noise_jpeg()
    requests = {
        "empty body": dict(content=b"", headers={"content-type": "image/png"}),
        "text/plain body": dict(content=b"hello", headers={"content-type": "text/plain"}),
        "no content type": dict(content=good),
        "not an image": dict(files=[("files", ("a.png", good, "image/png")),
                                    ("files", ("b.png", b"hello", "image/png"))]),
        "truncated jpeg": dict(files={"f": ("t.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")}),
        "empty file part": dict(files={"f": ("e.png", b"", "image/png")}),
        "decompression bomb": dict(files={"f": ("bomb.png", _corpus.bomb_png(), "image/png")}),
        "over the pixel limit": dict(files={"f": ("big.png", png(1100, 1000), "image/png")}),
        "too many images": dict(files=[("files", (f"{i}.png", good, "image/png")) for i in range(5)]),
        "no files in the form": dict(content=b'--zz\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                                             b'hello\r\n--zz--\r\n',
                                     headers={"content-type": "multipart/form-data; boundary=zz"}),
        "multipart without boundary": dict(content=b"--x\r\n",
                                           headers={"content-type": "multipart/form-data"}),
        "invalid json": dict(content=b'{"images": [', headers={"content-type": "application/json"}),
        "json of the wrong shape": dict(json={"images": [1, 2]}),
        "invalid base64": dict(json={"images": ["not base64!"]}),
        "empty image list": dict(json={"images": []}),
    }
    body = assert_error(client.post("/predict", **requests[case]), status, fragment)
    if case == "not an image":
        assert body["detail"]["index"] == 1 and body["detail"]["name"] == "b.png"


def test_upload_size_is_enforced_while_reading_not_from_content_length(client):
    limit = LIMITS["max_upload_bytes"]
    assert_error(client.post("/predict", content=b"x" * (limit + 1), headers={"content-type": "image/png"}),
                 413, "upload too large")

    def chunks():  # chunked transfer: no Content-Length to trust
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
    assert_error(client.post("/predict", content=chunks(), headers={"content-type": "image/png"}),
                 413, "upload too large")


def test_uploads_never_touch_the_disk(client, monkeypatch):
    from starlette.formparsers import MultiPartParser
    data = png(820, 820, noise=True)  # ~2 MB: Starlette would spool it to a temporary file
    assert MultiPartParser.spool_max_size < len(data) < LIMITS["max_upload_bytes"]
    opened = []
    def spy(name, real):
        def wrapper(*args, **kwargs):
            opened.append(name)
            return real(*args, **kwargs)
        return wrapper
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, spy(name, getattr(tempfile, name)))
    response = client.post("/predict", files={"f": ("noise.png", data, "image/png")})
    assert response.status_code == 200 and opened == []


def test_garbage_never_gets_a_500(client):
    rng = np.random.default_rng(1)
    junk = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    bodies = [b"", junk, b"[" * 100_000, b'{"images": "x"}', b"null", b'{"images": ["AAAAAAAA"]}']
    types = ["", "application/json", "multipart/form-data; boundary=zz", "multipart/form-data; boundary=",
             "image/jpeg", "application/octet-stream", "text/html; charset=klingon", "*/*"]
    paths = ["/", "/health", "/model", "/predict", "/predict?top_k=", "/predict?top_k=%00", "/openapi.json",
             "/assets/nope.js", "/assets/../serve.py", "/assets/%2e%2e/serve.py", "/nope", "/predict/x"]
    for path in paths:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            for body, kind in zip(bodies, types):
                headers = {"content-type": kind} if kind else {}
                response = client.request(method, path, content=body, headers=headers)
                assert response.status_code < 500, (method, path, kind, response.text)
                if response.status_code >= 400:
                    assert "error" in response.json() or "status" in response.json(), (method, path)
    assert "import" not in client.get("/assets/../serve.py").text


def test_concurrent_requests_get_their_own_answers(client, digits):
    files = digits[:8]
    alone = [client.post("/predict", content=p.read_bytes(), headers={"content-type": "image/png"}).json()
             for p in files]

    def ask(i):
        with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
            answer = c.post("/predict", content=files[i].read_bytes(), headers={"content-type": "image/png"})
            return i, answer.json()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, [i % 8 for i in range(32)]))
    for i, answer in together:
        assert answer["predictions"][0]["top"][0]["label"] == alone[i]["predictions"][0]["top"][0]["label"]
        assert answer["predictions"][0]["top"][0]["probability"] == pytest.approx(
            alone[i]["predictions"][0]["top"][0]["probability"], abs=1e-5)


def test_health_is_503_until_the_model_is_loaded(app, monkeypatch):
    from imgclf.deploy import predict
    from imgclf.serve import create_app
    release = threading.Event()

    def slow_load(source):
        release.wait(30)
        return app.state.imgclf.classifier
    monkeypatch.setattr(predict, "load", slow_load)
    with live_server(create_app("anything")) as base:
        health = httpx.get(f"{base}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert_error(httpx.get(f"{base}/model"), 503, "loading")
        assert_error(httpx.post(f"{base}/predict", content=b"x", headers={"content-type": "image/png"}), 503)
        release.set()
        wait_ready(base, timeout=30)
        assert httpx.get(f"{base}/model").json()["image_size"] == 32


def test_a_model_that_fails_to_load_is_reported_by_health(monkeypatch):
    from imgclf.deploy import predict
    from imgclf.errors import ImgclfError
    from imgclf.serve import create_app

    def broken(source):
        raise ImgclfError(f"{source}: no model.keras")
    monkeypatch.setattr(predict, "load", broken)
    with live_server(create_app("runs/broken")) as base:
        for _ in range(100):
            body = httpx.get(f"{base}/health").json()
            if body["status"] != "loading":
                break
            threading.Event().wait(0.05)
        assert body == {"status": "failed", "detail": "runs/broken: no model.keras"}


def test_serve_command_line(capsys):
    args = build_parser().parse_args(["serve", "runs/x"])
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8000, 1)  # loopback unless asked
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "RUN_OR_MODEL" in capsys.readouterr().out
    assert main(["serve", "/no/such/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgclf: error:") and "\n" not in err and "/no/such/run" in err
    assert main(["serve", ".", "--max-images", "0"]) == 2
    assert "max_images" in capsys.readouterr().err


@pytest.mark.slow
def test_a_short_load_run_through_the_command_line_has_no_errors(run, tmp_path):
    """The benchmark script starts `imgclf serve RUN` itself, loads it for a few seconds, stops it."""
    spec = importlib.util.spec_from_file_location("serve_load", REPO / "benchmarks" / "serve_load.py")
    serve_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve_load)
    server, base = serve_load.start_server(str(run), workers=1)
    try:
        serve_load.wait_ready(base, timeout=180, server=server)
        report = serve_load.run_load(base, *serve_load.multipart_body(serve_load.noise_png(32)),
                                     clients=4, requests=300, duration=4)
    finally:
        serve_load.stop_server(server)
    assert report["errors"] == 0, report
    assert report["requests"] >= 20 and report["p99_ms"] >= report["p50_ms"] > 0
    assert server.returncode is not None


def test_the_workers_listener_keeps_tcp_nodelay_on():
    """uvicorn's own --workers socket leaves proto 0, so asyncio skips TCP_NODELAY (Kludex/uvicorn#3149)."""
    import socket
    from imgclf.serve.server import _listen_socket
    sock = _listen_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
