"""A server you can expose: the API key (401/200), CORS for the allowed origins only, the warning
for an open non-loopback bind, the access log, and the page asking for the key in a browser."""
from __future__ import annotations

import re
import shutil
import socket

import pytest
from fastapi.testclient import TestClient

from _tiny_run import live_server, tiny_run
from imgclf.cli import main
from imgclf.errors import ImgclfError
from imgclf.serve import Limits, create_app
from imgclf.serve.access import exposure_warning, read_api_key

KEY = "k3y-for-tests"
ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    return sorted(tiny_run(tmp_path_factory)[1].rglob("*.png"))[0]


@pytest.fixture(scope="module")
def app(run):
    return create_app(run, limits=Limits(max_images=4), preload=True, api_key=KEY, cors_origins=(ALLOWED,),
                      access_log=True)


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def files(path, n=1):
    return [("files", (path.name, path.read_bytes(), "image/png"))] * n


def bearer(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def test_the_key_is_required_on_the_model_routes_only(client, digit):
    assert client.get("/health").status_code == 200  # load balancers need no key
    assert client.get("/").status_code == 200  # nor does the page, which then asks for it
    for headers in ({}, bearer("wrong"), bearer(KEY + "x"), {"Authorization": KEY},
                    {"Authorization": f"Basic {KEY}"}, bearer("")):
        for response in (client.get("/model", headers=headers),
                         client.post("/predict", files=files(digit), headers=headers)):
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"] == "unauthorized"
    assert client.get("/model", headers=bearer()).json()["num_classes"] == 10
    response = client.post("/predict", files=files(digit), headers={"authorization": f"bearer {KEY}"})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


def test_without_a_key_the_routes_stay_open(run, digit):
    with TestClient(create_app(run, preload=True)) as open_client:
        assert open_client.get("/model").status_code == 200
        assert open_client.post("/predict", files=files(digit)).status_code == 200


def test_cors_headers_for_the_allowed_origin_only(client):
    allowed = client.get("/health", headers={"Origin": ALLOWED})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED
    other = client.get("/health", headers={"Origin": "https://evil.example.org"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options("/predict", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200  # answered before the key check: browsers send no key here
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = client.options("/predict", headers={"Origin": "https://evil.example.org",
                                                  "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_the_access_log_has_one_line_per_request(client, digit, capsys):
    capsys.readouterr()
    client.get("/health")
    client.post("/predict", files=files(digit, 2), headers=bearer())
    client.post("/predict", files=files(digit), headers=bearer("nope"))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    pattern = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d testclient (GET|POST) (/\S*) (\d{3}) (\d+\.\d) ms (\d+) images$"
    parsed = [re.match(pattern, line).groups() for line in lines]
    assert [(m, p, s, n) for m, p, s, _, n in parsed] == [("GET", "/health", "200", "0"),
                                                          ("POST", "/predict", "200", "2"),
                                                          ("POST", "/predict", "401", "0")]
    assert float(parsed[1][3]) > 0


def test_the_key_comes_from_a_file_or_the_environment(tmp_path, run, capsys):
    (tmp_path / "key").write_text(f"  {KEY}\n# a comment line is not part of it\n")
    assert read_api_key(tmp_path / "key") == KEY
    assert read_api_key(None, {"IMGCLF_API_KEY": "env-key"}) == "env-key"
    assert read_api_key(None, {}) is None and read_api_key(None, {"IMGCLF_API_KEY": ""}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ImgclfError, match="empty"):
        read_api_key(tmp_path / "empty")
    assert main(["serve", str(run), "--api-key-file", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing: cannot read the API key file" in err


def test_an_exposed_server_without_a_key_is_warned_about(run, capsys, monkeypatch):
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", KEY) is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)
    assert "without an API key" in exposure_warning("myhost.example", None)
    monkeypatch.delenv("IMGCLF_API_KEY", raising=False)
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))  # the port is taken: serve warns, then fails to bind, never loads the model
    port = str(busy.getsockname()[1])
    try:
        assert main(["serve", str(run), "--host", "0.0.0.0", "--port", port]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and err[0].startswith("imgclf: warning: serving on 0.0.0.0 without an API key")
        assert "cannot listen" in err[1]
        monkeypatch.setenv("IMGCLF_API_KEY", KEY)
        assert main(["serve", str(run), "--host", "0.0.0.0", "--port", port]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "cannot listen" in err[0]
    finally:
        busy.close()


@pytest.mark.slow
def test_the_page_asks_for_the_key_once_and_keeps_it(app, digit, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import CHROMIUM, FLAGS
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    note = tmp_path / "note.png"
    note.write_text("not a picture")
    with live_server(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        asked = []
        page.on("dialog", lambda d: (asked.append(d.message), d.accept("wrong" if len(asked) == 1 else KEY)))
        page.goto(url)
        page.wait_for_selector("#status[data-state='ready']", timeout=30_000)
        assert len(asked) == 2 and "refused" in asked[1]  # a wrong key is asked again, once
        assert page.evaluate("sessionStorage.getItem('imgclf-api-key')") == KEY
        for path in (digit, note, digit):
            page.set_input_files("#file", str(path))
            page.wait_for_selector("#result[data-state='done'], #result[data-state='error']")
            page.wait_for_function("document.querySelector('#result').dataset.state !== 'busy'")
        assert page.locator("#result").get_attribute("data-state") == "done"
        assert page.locator("#bars li").count() == 5
        page.reload()  # the same tab: the key is kept, nothing is asked
        page.wait_for_selector("#status[data-state='ready']", timeout=30_000)
        assert len(asked) == 2
        fresh = browser.new_page()  # another session: asked again; cancelling shows why nothing works
        fresh.on("dialog", lambda d: d.dismiss())
        fresh.goto(url)
        fresh.wait_for_selector("#status[data-state='error']", timeout=30_000)
        assert fresh.locator("#status").inner_text() == "API key needed"
        browser.close()
