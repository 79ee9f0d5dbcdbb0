"""An alert's dashboard link, followed in real Chromium: it opens that scan's detail after sign-in."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.dashboard import Gateway, PageWatch, capture, miner_capture, needs_chromium, screenshot, wait_js

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture(scope="module")
def alerting_gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``malwaresnipper serve`` with an ECS file sink, configured the way docs/alerts.md shows."""
    # A long scan timeout: the first scans wait for the workers to start, slow on a loaded machine.
    config = '[proxy]\nscan_timeout_ms = 60000\n\n[[alerts]]\nkind = "file"\npath = "alerts.ndjson"\n'
    gw = Gateway(tmp_path_factory.mktemp("gateway"), config=config)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def read_alerts(path: Path, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"{count} alert line(s) did not appear in {path}")


def test_alert_link_opens_the_scan_in_the_dashboard(browser: Any, alerting_gateway: Gateway) -> None:
    gw = alerting_gateway
    ordinary = gw.submit(capture("https://ordinary.example/", title="Ordinary"), wait=True)
    bad = gw.submit(miner_capture("https://free-movies.example/watch"), wait=True)
    assert bad["verdict"]["threat_level"] == "MALICIOUS"
    (alert,) = read_alerts(gw.home / "alerts.ndjson", 1)
    link = alert["event"]["url"]
    assert alert["malwaresnipper"]["scan_id"] == bad["scan_id"]
    assert link == f"{gw.base_url}/#scan={bad['scan_id']}"

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    watch = PageWatch(page)
    try:
        page.goto(link)  # a new tab from the chat message: not signed in yet
        page.fill("#token-input", gw.token)
        page.click("#signin-form button[type=submit]")
        wait_js(page, "document.querySelector('#detail').dataset.complete === 'true'")
        assert page.evaluate("document.querySelector('#detail').dataset.scanId") == bad["scan_id"]
        assert "free-movies.example/watch" in (page.text_content("#detail-body") or "")
        assert page.is_visible("#detail")
        screenshot(page, "dashboard-scan-link")

        # Another link in the same tab (hashchange) opens that scan.
        page.evaluate("id => { window.location.hash = '#scan=' + id; }", ordinary["scan_id"])
        wait_js(page, "id => document.querySelector('#detail').dataset.scanId === id"
                " && document.querySelector('#detail').dataset.complete === 'true'", ordinary["scan_id"])
        assert "ordinary.example" in (page.text_content("#detail-body") or "")

        # A hash that is not a scan id is ignored: nothing opens, nothing runs.
        page.evaluate("() => { window.location.hash = '#scan=<img src=x onerror=alert(1)>'; }")
        page.wait_for_timeout(300)
        assert page.evaluate("document.querySelector('#detail').dataset.scanId") == ordinary["scan_id"]
        assert not watch.dialogs and not watch.errors, (watch.dialogs, watch.errors)
        assert gw.token not in page.url
    finally:
        context.close()
