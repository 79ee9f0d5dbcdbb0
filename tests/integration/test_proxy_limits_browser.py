"""What headless Chromium shows through the gateway (block mode) for the size and nesting tricks of
issue 13 item 4: the block page, not the page; an inert script, not the payload.

Each payload would announce itself if it ran (the page's title, a global the host page reads).
"""

from __future__ import annotations

import gzip

import pytest
from helpers.proxy import (
    CHROMIUM,
    DROPPER,
    DROPPER_JS,
    launch_chromium,
    make_self_signed,
    Route,
    start_gateway,
    Upstream,
)
from helpers.proxy import PHISH, deep


pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ANNOUNCE = b'<script>document.title = "payload ran"</script>'
PADDED_PAGE = DROPPER.replace(b"<body>", b"<body><!--" + b"x" * 2_100_000 + b"-->" + ANNOUNCE)
PADDED_SCRIPT = b"/*" + b"x" * 1_100_000 + b"*/\nwindow.payloadRan = true;\n" + DROPPER_JS
HOST_PAGE = b"""<html><head><title>Host</title><script src="/padded.js"></script></head>
<body><script>document.title = window.payloadRan ? "payload ran" : "no payload"</script></body></html>"""
DEEP_PHISH = deep(PHISH.replace(b"</body>", ANNOUNCE + b"</body>"), 100_000)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("limits-browser")
    cert, key = make_self_signed(tmp)
    upstream = Upstream({
        "/padded.html": Route(gzip.compress(PADDED_PAGE), "text/html", "gzip"),
        "/host.html": Route(HOST_PAGE, "text/html"),
        "/padded.js": Route(PADDED_SCRIPT, "application/javascript"),
        "/deep.html": Route(DEEP_PHISH, "text/html"),
    })
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=5000"])
    with sync_playwright() as pw:
        browser = launch_chromium(pw, gw)
        try:
            yield browser, gw, upstream
        finally:
            browser.close()
            gw.stop()
            upstream.stop()


@pytest.mark.parametrize("path", ["/padded.html", "/deep.html"])
def test_chromium_gets_the_block_page_not_the_padded_or_deeply_nested_page(setup, path):
    browser, gw, upstream = setup
    page = browser.new_page()
    page.goto(upstream.url(path, tls=True), timeout=60_000)
    page.wait_for_selector("text=MalwareSnipper blocked this page", timeout=30_000)
    assert page.title() != "payload ran"
    assert page.locator("input[type=password]").count() == 0
    page.close()


def test_chromium_runs_the_inert_script_not_the_padded_one(setup):
    browser, gw, upstream = setup
    page = browser.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(upstream.url("/host.html", tls=True), timeout=60_000)
    page.wait_for_function("document.title !== 'Host'", timeout=30_000)
    assert page.title() == "no payload"
    assert any("MalwareSnipper blocked the script" in m and "/padded.js" in m for m in messages), messages
    page.close()
