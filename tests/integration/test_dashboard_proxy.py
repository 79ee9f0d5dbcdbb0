"""A page fetched through the proxy (``malwaresnipper run``) shows up live as a PROXY scan."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from helpers.dashboard import MINER_SCRIPT, Gateway, needs_chromium, open_dashboard, screenshot

pytestmark = [pytest.mark.integration, needs_chromium]

PAGES = {
    "/plain.html": "<html><head><title>Plain proxied page</title></head><body><p>Nothing to see.</p></body></html>",
    "/miner.html": f"<html><head><title>Proxied miner</title></head><body><script>{MINER_SCRIPT}</script></body></html>",
}


class Origin(BaseHTTPRequestHandler):
    """The web site the browser (here: urllib through the proxy) visits."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = PAGES.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def proxy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway-proxy"), proxy=True)
    gw.start(timeout=60)
    try:
        yield gw
    finally:
        gw.stop()


def fetch_through_proxy(gw: Gateway, url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{gw.proxy_port}"}))
    with opener.open(url, timeout=30) as resp:
        return resp.read()


def test_proxied_pages_appear_in_the_feed_as_proxy_scans(browser: Any, proxy_gateway: Gateway, origin: str) -> None:
    gw = proxy_gateway
    context, page, watch = open_dashboard(browser, gw)
    try:
        assert b"Nothing to see" in fetch_through_proxy(gw, origin + "/plain.html?warmup")
        page.wait_for_selector("#feed-body .feed-row[data-status=SCAN_COMPLETE]", timeout=15_000)
        for path, title in (("/plain.html", "Plain proxied page"), ("/miner.html", "Proxied miner")):
            url = origin + path
            t0 = time.monotonic()
            fetch_through_proxy(gw, url)
            row = page.locator("#feed-body .feed-row", has=page.locator(".page-url", has_text=url)).first
            row.wait_for(timeout=1000)
            page.wait_for_selector(f'#feed-body .feed-row[data-scan-id="{row.get_attribute("data-scan-id")}"][data-status=SCAN_COMPLETE]',
                                   timeout=max(100, int(1000 - (time.monotonic() - t0) * 1000)) + 4000)
            scan_id = row.get_attribute("data-scan-id")
            status, scan = gw.request("GET", f"/api/v1/scans/{scan_id}")
            assert status == 200, scan
            assert scan["method"] == "PROXY" and row.locator("[role=cell]").nth(3).text_content() == "PROXY"
            assert row.get_attribute("data-level") == scan["verdict"]["threat_level"]
            assert row.locator(".page-title").text_content() == title
        assert page.locator("#feed-body .feed-row").first.get_attribute("data-level") == "MALICIOUS"
        page.wait_for_timeout(600)  # the debounced stats refresh
        assert int(page.get_attribute("#stat-PROXY", "data-value") or 0) >= 3
        screenshot(page, "dashboard-proxy")
        assert not watch.errors, watch.errors
    finally:
        context.close()
