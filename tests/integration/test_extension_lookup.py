"""Issue 16, item 2, with the extension alone in real Chromium: a checkout page loads a cross-origin
skimmer without CORS (the extension cannot read it, only its URL); the gateway had already judged
that script MALICIOUS, so the page's result is a warning naming the script, never "No threat found".

Reuses the extension test rig (test_extension_browser): its gateway and browser fixtures, with
this module's own site (the checkout page and the skimmer)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from test_extension_browser import (  # type: ignore[import-not-found]  # noqa: F401 - gateway and browser are fixtures used by name
    Browser,
    Gateway,
    SiteHandler,
    browser,
    expect,
    gateway,
    wait_overlay,
    wait_until,
)

from helpers.samples import SKIMMER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
SKIM_JS = SKIMMER + "\nwindow.__skimmerRan = true;\n"


class CheckoutHandler(SiteHandler):
    """checkout.test: a plain payment page loading http://skim.test/skim.js (no CORS header)."""

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        port = self.server.server_address[1]
        if host == "skim.test":
            body, ctype = SKIM_JS, "text/javascript"
        elif host == "checkout.test":
            body, ctype = (
                "<!doctype html><html><head><title>Checkout</title>"
                f'<script src="http://skim.test:{port}/skim.js"></script></head>'
                '<body><h1>Checkout</h1><form action="/pay" method="post"><input name="card">'
                "<button>Pay</button></form></body></html>"
            ), "text/html; charset=utf-8"
        else:
            super().do_GET()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def site() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CheckoutHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_page_whose_unreadable_script_the_gateway_knows_is_malicious_is_not_ok(
        gateway: Gateway, browser: Browser) -> None:  # noqa: F811 - fixtures
    browser.configure(gateway)
    skim_url = browser.url("skim.test", "/skim.js")
    # the gateway judged the skimmer before (as the proxy would have): its URL is in the history
    status, judged = gateway.api("POST", "/api/v1/scans?wait=true", {
        "url": skim_url, "scripts": [{"url": skim_url, "text": SKIM_JS, "inline": False}]})
    assert status == 200 and judged["verdict"]["threat_level"] == "MALICIOUS", judged

    checkout = browser.url("checkout.test", "/pay")
    page = browser.context.new_page()
    page.goto(checkout)
    state = browser.wait_verdict(checkout)
    # the gateway's own scan of the page could not include the script (the extension sent only its URL)
    [summary] = wait_until(lambda: gateway.scans_for(checkout), 10, "the checkout capture in history")
    record = gateway.scan(summary["scan_id"])
    assert [s for s in record["verdict"]["scripts"] if s["url"] == skim_url and not s["inline"]] == []
    assert state["status"] == "malicious", state
    assert skim_url in state["indicators"][0]["title"], state["indicators"]
    assert browser.badge(state["tabId"]) != "OK"

    popup = browser.context.new_page()
    popup.goto(f"{browser.origin}/popup.html?tab={state['tabId']}")
    expect(popup.locator("#tab-verdict")).to_have_attribute("data-level", "malicious", timeout=15000)
    assert not popup.text_content("#tab-verdict").startswith("No threat found")
    assert skim_url in " ".join(popup.locator("#tab-indicators li").all_text_contents())
    overlay = wait_overlay(page, browser)
    assert skim_url in overlay["reasons"]["text"]
    popup.close()
    page.close()
