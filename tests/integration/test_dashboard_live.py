"""The dashboard's sign-in, empty state and live feed, in real Chromium against a real gateway."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from helpers.dashboard import (
    Gateway,
    capture,
    miner_capture,
    needs_chromium,
    open_dashboard,
    screenshot,
    wait_for,
    wait_js,
)

pytestmark = [pytest.mark.integration, needs_chromium]

ROW = '#feed-body .feed-row[data-scan-id="{}"]'


def test_page_is_served_with_a_csp_that_forbids_inline_script(gateway: Gateway) -> None:
    import urllib.request

    with urllib.request.urlopen(gateway.base_url + "/", timeout=10) as resp:
        csp = resp.headers.get("Content-Security-Policy", "")
        html = resp.read().decode()
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "/dashboard/app.js" in html
    assert "<script>" not in html and "style=" not in html  # no inline code or styles at all


def test_sign_in_keeps_the_token_out_of_urls_and_shows_the_empty_state(browser: Any, gateway: Gateway) -> None:
    context, page, watch = open_dashboard(browser, gateway, sign_in=False)
    ws_urls: list[str] = []
    sent: list[str] = []

    def on_ws(ws: Any) -> None:
        ws_urls.append(ws.url)
        ws.on("framesent", lambda payload: sent.append(str(payload)))

    page.on("websocket", on_ws)
    try:
        # A wrong token is refused with a message, and nothing is stored.
        page.fill("#token-input", "not-the-token")
        page.click("#signin-form button[type=submit]")
        wait_js(page, "document.querySelector('#signin-error').textContent.includes('refused')")
        assert page.is_visible("#signin")
        assert page.evaluate("sessionStorage.length") == 0

        page.fill("#token-input", gateway.token)
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#conn[data-state=online]", timeout=10_000)
        assert page.evaluate("sessionStorage.getItem('malwaresnipper.token')") == gateway.token
        assert page.evaluate("localStorage.length") == 0
        assert gateway.token not in page.url
        assert ws_urls and all(gateway.token not in u for u in ws_urls)
        # The token travels in the hello message, the first frame on the socket.
        hello = json.loads(sent[0])
        assert hello["type"] == "hello" and hello["token"] == gateway.token and hello["last_seq"] is None

        # An empty gateway says how to send it traffic, with the exact settings.
        page.wait_for_selector("#empty:not([hidden])")
        empty = page.text_content("#empty") or ""
        assert "127.0.0.1:8080" in empty and "certs/README.md" in empty and gateway.base_url in empty
        assert page.get_attribute("#stat-total", "data-value") == "0"
        assert page.locator("#feed-body .feed-row").count() == 0
        screenshot(page, "dashboard-empty")

        # A reload keeps the tab's session; signing out forgets the token.
        page.reload()
        page.wait_for_selector("#conn[data-state=online]", timeout=10_000)
        assert not page.is_visible("#signin")
        page.click("#signout")
        assert page.is_visible("#signin")
        assert page.evaluate("sessionStorage.getItem('malwaresnipper.token')") is None
        assert not watch.errors, watch.errors
        assert not watch.dialogs
    finally:
        context.close()


def test_api_scans_appear_in_the_feed_within_a_second_with_their_verdicts(browser: Any, gateway: Gateway) -> None:
    context, page, watch = open_dashboard(browser, gateway)
    try:
        # Warm the scan workers up (first scan loads models), so the timing below is the page's.
        gateway.submit(capture("https://warmup.example/"), wait=True)
        page.wait_for_selector("#feed-body .feed-row[data-status=SCAN_COMPLETE]", timeout=10_000)

        cases = [
            (capture("https://benign-live.example/index.html", title="A plain page"), "BENIGN"),
            (miner_capture("https://miner-live.example/watch", title="Free movies"), "MALICIOUS"),
        ]
        timings: list[float] = []
        for body, level in cases:
            url, title = body["url"], body["title"]
            t0 = time.monotonic()
            scan_id = gateway.submit(body)["scan_id"]
            page.wait_for_selector(ROW.format(scan_id) + "[data-status=SCAN_COMPLETE]", timeout=1000)
            timings.append(time.monotonic() - t0)

            status, scan = gateway.request("GET", f"/api/v1/scans/{scan_id}")
            assert status == 200, scan
            verdict = scan["verdict"]
            row = page.locator(ROW.format(scan_id))
            assert row.get_attribute("data-level") == verdict["threat_level"] == level
            assert row.locator("[role=cell]").nth(2).text_content() == f"{verdict['risk_score']:.1f}"
            assert row.locator("[role=cell]").nth(3).text_content() == "EXTENSION"
            assert row.locator("[role=cell]").nth(4).text_content() == "no"
            assert row.locator(".page-url").text_content() == url
            assert row.locator(".page-title").text_content() == title
            assert row.locator("progress").evaluate("p => p.value") == 100
            # The row went through the lifecycle, and the stream delivered it in order.
            trail = (row.get_attribute("data-trail") or "").split()
            assert trail[0] in ("SCAN_STARTED", "SCAN_UPDATE") and trail[-1] == "SCAN_COMPLETE", trail
            wait_for(page, lambda: watch.events(scan_id) and watch.events(scan_id)[-1]["status"] == "SCAN_COMPLETE")  # noqa: B023 - called before the loop moves on
            statuses = [e["status"] for e in watch.events(scan_id)]
            assert statuses[0] == "SCAN_STARTED" and statuses[-1] == "SCAN_COMPLETE"
            assert set(statuses[1:-1]) <= {"SCAN_UPDATE"} and len(statuses) >= 3, statuses
            progress = [e["progress"] for e in watch.events(scan_id)]
            assert progress == sorted(progress)

        newest = page.locator("#feed-body .feed-row").first  # the miner, newest on top
        assert newest.get_attribute("data-level") == "MALICIOUS"
        assert newest.locator(".class-text").text_content() == "cryptominer"
        assert newest.locator(".status-text").text_content() == "done"  # state and classification: two columns
        # Colour comes from the stylesheet (CSP forbids inline styles): check it is applied.
        colour = newest.locator(".badge.level-MALICIOUS").evaluate("b => getComputedStyle(b).color")
        assert colour == "rgb(239, 78, 78)"

        # Stats follow the events (debounced refresh from the API), charts carry the same data.
        stats = gateway.request("GET", "/api/v1/stats")[1]
        wait_js(page, f"document.querySelector('#stat-total').dataset.value === '{stats['total']}'", timeout=5)
        assert page.get_attribute("#stat-MALICIOUS", "data-value") == str(stats["totals_by_level"].get("MALICIOUS", 0))
        assert int(page.get_attribute("#stat-MALICIOUS", "data-value") or 0) >= 1
        assert page.get_attribute("#stat-EXTENSION", "data-value") == str(stats["totals_by_source"].get("EXTENSION", 0))
        chart_domains = page.evaluate("Chart.getChart('chart-domains').data.labels")
        assert chart_domains == [d["domain"] for d in stats["top_domains"]][:8]
        assert page.evaluate("Chart.getChart('chart-time').data.datasets[0].data.reduce((a, b) => a + b, 0)") == sum(
            p["scans"] for p in stats["timeseries"])
        assert page.is_hidden("#empty")
        screenshot(page, "dashboard-live")
        print(f"\nPOST -> SCAN_COMPLETE row in the page: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
        assert not watch.errors, watch.errors
        assert not watch.dialogs
    finally:
        context.close()
