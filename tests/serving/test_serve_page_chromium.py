"""End to end in headless Chromium: type a query, see results with thumbnails, upload an image, screenshot.

Skips only when no Chromium is installed (CI installs Debian's ``chromium``, see .ci/run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import CHROMIUM_ARGS
from serve_fixtures import ServerThread, shared_served

from modalign.serving import ServeSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (CI installs it)")


def wait_until(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression from Python: the page's CSP forbids the eval that wait_for_function uses."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Any:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_search_page_text_query_results_and_image_upload(
    dataset: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    served = shared_served(dataset, tmp_path_factory)
    app = create_app(served.index, served.model, ServeSettings(api_key="k3y"))
    requests: list[str] = []
    with ServerThread(app) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url + "/")
        # every control has a label (screen readers, click targets)
        unlabelled = page.eval_on_selector_all(
            "input, button",
            "els => els.filter(e => e.tagName === 'INPUT' && !e.labels.length).map(e => e.id)",
        )
        assert unlabelled == []
        assert "API key" in page.inner_text("#info")  # the page asks for the key it lacks
        page.fill("#api-key", "k3y")
        page.dispatch_event("#api-key", "change")
        wait_until(page, "document.querySelector('#info').textContent.includes('items')")
        assert f"{len(served.ids)} image items" in page.inner_text("#info")

        # a text query, submitted with Enter
        page.fill("#k", "6")
        page.focus("#query")
        page.keyboard.type("a circle")
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelectorAll('#results li img').length === 6")
        cards = page.locator("#results li")
        first_id = cards.nth(0).locator("code").inner_text()
        assert first_id in served.ids
        assert float(cards.nth(0).locator(".score").inner_text()) <= 1.0
        assert "split" in cards.nth(0).locator("dl").inner_text()  # metadata shown
        widths = page.eval_on_selector_all("#results li img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths == [12] * 6  # thumbnails decoded from /items/{id}/media (12x12 PNGs)
        assert cards.nth(0).get_attribute("tabindex") == "0"  # results are focusable
        assert "6 results" in page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "text-query.png"), full_page=True)

        # keyboard: Enter on a focused result finds the items similar to it (itself excluded)
        cards.nth(0).focus()
        page.keyboard.press("Enter")
        wait_until(
            page,
            f"document.querySelector('#results li code')?.textContent !== '{first_id}'"
            " && document.querySelectorAll('#results li img').length === 6",
        )
        similar = page.eval_on_selector_all("#results li code", "cs => cs.map(c => c.textContent)")
        assert len(similar) == 6 and first_id not in similar

        # an image upload finds the same image first
        row = 1  # the lowest row of its shape: wins exact ties too
        page.set_input_files("#file", str(served.root / served.metadata[row]["image"]))
        page.click("text=Search with file")
        wait_until(
            page,
            "[...document.querySelectorAll('#results li code')].map(c => c.textContent)"
            f".includes('{served.ids[row]}') && document.querySelectorAll('#results li img').length === 6",
        )
        # this untrained model maps images of one shape to nearly the same vector: the image itself
        # scores 1 and may share the top score with others, so it is looked for among the hits
        assert page.locator("#results li").count() == 6
        assert page.locator("#results li .score").nth(0).inner_text() == "1.000"
        assert page.locator("#results li code", has_text=served.ids[row]).count() >= 1
        shot = tmp_path / "image-query.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.close()
    # the 401 of the first /info (no key yet) is the only error: nothing broke the page's CSP
    assert all("401" in e for e in errors), errors
    assert requests and all(u.startswith((server.url, "blob:")) for u in requests)  # no external assets


def test_audio_results_get_audio_players(
    dataset: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    from modalign.search import Index

    served = shared_served(dataset, tmp_path_factory)
    audio = [f"audio/{k}.wav" for k in range(len(served.ids))]
    vectors = served.model.encode(audio, "audio", base_dir=served.root)
    info = {"modality": "audio", "corpus_root": str(served.root), "media_column": "audio"}
    index = Index.build(tmp_path / "audio-idx", vectors, served.ids, [{"audio": a} for a in audio], info=info)
    with ServerThread(create_app(index, served.model)) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        wait_until(page, "document.querySelector('#info').textContent.includes('audio items')")
        page.fill("#query", "a stripe")
        page.press("#query", "Enter")
        wait_until(page, "document.querySelectorAll('#results li audio').length === 12")
        assert page.eval_on_selector_all("#results li audio", "as => as.every(a => a.controls)")
        # the players hold the items' WAV files: the browser reads their duration from them
        wait_until(page, "[...document.querySelectorAll('#results li audio')].every(a => a.duration > 0.1)")
        page.screenshot(path=str(tmp_path / "audio-results.png"), full_page=True)
        page.close()
