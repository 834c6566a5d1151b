"""The web page in a real browser: Playwright drives Debian's headless Chromium against a live server.

The screenshot is kept as an artefact: artifacts/serve_page.png in the repository.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from _tiny_run import live_server, tiny_app, tiny_run
from imgclf.deploy.predict import load

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with live_server(tiny_app(tmp_path_factory)) as base:
        yield base


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """Two digit images the Python API labels with a clear margin, and its top-5 for each."""
    run, digits = tiny_run(tmp_path_factory)
    candidates = sorted(digits.rglob("*.png"))[::6]
    rows = list(load(run).predict_paths(candidates, top_k=5))
    rows.sort(key=lambda r: r["top"][0][1] - r["top"][1][1], reverse=True)  # no near-ties to flip
    return rows[:2]


@pytest.fixture(scope="module")
def page(url):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 640})
        page.foreign, page.problems = [], []
        page.on("request", lambda r: r.url.startswith(url) or r.url.startswith(("data:", "blob:"))
                or page.foreign.append(r.url))
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#status[data-state='ready']", timeout=30_000)
        yield page
        browser.close()


def shown_top(page) -> list[tuple[str, str]]:
    return [(row.locator(".bar-label").inner_text(), row.locator(".bar-value").inner_text())
            for row in page.locator("#bars li").all()]


def percent(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.9995 or p < 0.0005 else f"{100 * p:.1f}%"


def test_model_card_is_shown(page, tmp_path_factory):
    metrics = json.loads((tiny_run(tmp_path_factory)[0] / "metrics.json").read_text())
    assert page.locator("#backbone").inner_text() == "efficientnet_lite0"
    assert page.locator("#input-size").inner_text() == "32 × 32 px"
    assert page.locator("#classes li").all_inner_texts() == [str(d) for d in range(10)]
    assert page.locator("#accuracy").inner_text() == percent(metrics["accuracy"])


def test_picked_image_shows_the_python_apis_top_label(page, expected):
    want = expected[0]
    page.set_input_files("#file", want["path"])
    page.wait_for_selector("#result[data-state='done']")
    assert page.locator("#top-label").inner_text() == want["top"][0][0]
    assert shown_top(page) == [(label, percent(p)) for label, p in want["top"]]
    assert page.locator("#preview").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"))
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000


def test_dropped_image_is_classified_too(page, expected):
    want = expected[1]
    data = base64.b64encode(Path(want["path"]).read_bytes()).decode()
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        return transfer;
    }""", data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_function("document.querySelector('#filename').textContent.startsWith('dropped.png')")
    page.wait_for_selector("#result[data-state='done']")
    assert page.locator("#top-label").inner_text() == want["top"][0][0]


def test_a_file_that_is_not_an_image_shows_the_reason(page, tmp_path):
    note = tmp_path / "note.png"
    note.write_text("not a picture")
    page.set_input_files("#file", str(note))
    page.wait_for_selector("#result[data-state='error']")
    assert "not an image" in page.locator("#error").inner_text().lower()
    assert page.locator("#preview").is_hidden()  # no broken-image icon


def test_nothing_was_fetched_from_elsewhere_and_nothing_broke(page):
    assert page.foreign == []
    # The failed upload above logs its 415 in the console; nothing else may.
    assert all("415" in problem for problem in page.problems), page.problems
