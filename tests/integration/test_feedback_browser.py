"""Feedback in real Chromium through a real mitmdump gateway in block mode: "Report a mistake"
from the block page, confirmed on the gateway's own page, shows in the dashboard's detail view
(Chromium too) and in ``feedback export``; a "Proceed once" is recorded and shows in history.

Screenshots of the new views go to $MALWARESNIPPER_SCREENS when set (the notes' screens folder).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.dashboard import wait_js
from helpers.proxy import CHROMIUM, TOKEN, Route, Upstream, default_routes, launch_chromium, make_self_signed, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def shot(page, name: str) -> None:
    folder = os.environ.get("MALWARESNIPPER_SCREENS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("feedback-browser")
    cert, key = make_self_signed(tmp)
    routes = default_routes(b"\0")
    routes["/start.html"] = Route(b'<html><body><a id="go" href="/dropper.html">invoice</a></body></html>', "text/html")
    upstream = Upstream(routes)
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"])
    with sync_playwright() as pw:
        browser = launch_chromium(pw, gw)
        try:
            yield browser, gw, upstream, tmp
        finally:
            browser.close()
            gw.stop()
            upstream.stop()


def upstream_host(upstream) -> str:
    from urllib.parse import urlsplit

    return urlsplit(upstream.url("/", tls=True)).hostname or ""


def _blocked(page, upstream) -> str:
    """Open the invoice link from the start page; the block page's scan id."""
    page.goto(upstream.url("/start.html", tls=True))
    page.click("#go")
    page.wait_for_selector("text=MalwareSnipper blocked this page")
    found = re.search(r"Scan (\S+)", page.inner_text("main"))
    assert found, page.content()
    return found.group(1)


def test_a_false_positive_report_reaches_the_dashboard_and_feedback_export(setup):
    browser, gw, upstream, tmp = setup
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    scan_id = _blocked(page, upstream)
    # outside "Details": reporting a mistake is not a way past the block
    assert page.is_visible("text=Report a mistake: this page is safe")
    shot(page, "blockpage-report-link")
    page.click("text=Report a mistake: this page is safe")
    page.wait_for_selector("text=Report a mistake: this page is safe?")  # the gateway's own page
    assert page.url.startswith("http://malwaresnipper.invalid/report?")
    page.fill("#comment", "our <b>billing</b> system")
    shot(page, "report-confirm-page")
    with page.expect_navigation():
        page.click("button:has-text('Report: this page is safe')")
    assert page.is_visible("text=Thank you: your report was recorded"), page.content()
    assert not errors, errors

    record = gw.api(f"/api/v1/scans/{scan_id}")
    assert [(r["verdict"], r["source"], r["comment"]) for r in record["reports"]] == [
        ("safe", "blockpage", "our <b>billing</b> system")]

    # the analyst's dashboard, in Chromium: the detail view shows the report (as text)
    dash = browser.new_page(viewport={"width": 1440, "height": 1000})
    dash.goto(f"http://127.0.0.1:{gw.api_port}/#scan={scan_id}")
    dash.fill("#token-input", TOKEN)
    dash.click("#signin-form button[type=submit]")
    wait_js(dash, "document.querySelector('#detail').dataset.complete === 'true'", timeout=30)
    row = dash.locator("#detail-feedback table.reports tbody tr")
    assert row.count() == 1
    assert row.get_attribute("data-verdict") == "safe"
    assert "our <b>billing</b> system" in row.inner_text() and dash.locator("#detail-feedback b").count() == 0
    assert "block page" in row.inner_text()
    dash.locator("#detail-feedback").scroll_into_view_if_needed()
    shot(dash, "dashboard-detail-report")
    # one click turns the report into an allowlist entry
    row.locator("button.report-to-list").click()
    dash.wait_for_selector("#detail-feedback button.report-to-list:has-text('Allowed')")
    assert [i["entry"] for i in gw.api("/api/v1/lists/allow")["items"]] == [upstream_host(upstream)]
    for item in gw.api("/api/v1/lists/allow")["items"]:
        gw.api(f"/api/v1/lists/allow?entry={item['entry']}", method="DELETE")

    # and in feedback export, as a benign URL corpus row
    env = dict(os.environ, MALWARESNIPPER_HOME=str(gw.home))
    out = subprocess.run([sys.executable, "-m", "malwaresnipper.cli.main", "feedback", "export",
                          "--config", str(tmp / "malwaresnipper.toml")],
                         capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["scan_id"], r["label"], r["url"]) for r in rows] == [
        (scan_id, "benign", upstream.url("/dropper.html", tls=True))]
    page.close()
    dash.close()


def test_proceed_once_is_recorded_and_shows_in_history(setup):
    browser, gw, upstream, _ = setup
    page = browser.new_page()
    scan_id = _blocked(page, upstream)
    page.click("summary")
    page.click("text=Proceed once to this page")
    page.wait_for_selector("text=Open this blocked page once?")
    with page.expect_navigation():
        page.click("button:has-text('Proceed once')")
    assert page.title() == "Your invoice"
    deadline = time.monotonic() + 15  # recorded in the background: the way on never waits for it
    while not (overrides := gw.api(f"/api/v1/scans/{scan_id}")["overrides"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(o["action"], o["source"]) for o in overrides] == [("proceed_once", "gateway")]
    metrics = gw.session().get(f"http://127.0.0.1:{gw.api_port}/metrics",
                               headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'malwaresnipper_overrides_total{action="proceed_once",source="gateway"} 1' in metrics

    dash = browser.new_page(viewport={"width": 1440, "height": 900})
    dash.goto(f"http://127.0.0.1:{gw.api_port}/")
    dash.fill("#token-input", TOKEN)
    dash.click("#signin-form button[type=submit]")
    dash.click("#tabs .tab[data-view=history]")
    marker = dash.locator(f"#history-body tr[data-scan-id='{scan_id}'] .feedback-mark")
    marker.wait_for(timeout=30_000)
    assert "1 override" in marker.inner_text()
    shot(dash, "history-feedback-marker")
    dash.locator(f"#history-body tr[data-scan-id='{scan_id}']").click()
    dash.wait_for_selector("#detail-feedback table.overrides tr[data-action=proceed_once]")
    assert "gateway" in dash.inner_text("#detail-feedback table.overrides")
    # the analyst reports from the detail view; the view and the history marker follow
    dash.fill("#detail-feedback .report-comment", "confirmed dropper")
    dash.click("#report-dangerous")
    dash.wait_for_selector("#detail-feedback table.reports tr[data-verdict=dangerous]", timeout=15_000)
    reports = gw.api(f"/api/v1/scans/{scan_id}")["reports"]
    assert [(r["verdict"], r["source"], r["comment"]) for r in reports][-1] == (
        "dangerous", "dashboard", "confirmed dropper")
    wait_js(dash, "id => (document.querySelector(`#history-body tr[data-scan-id='${id}'] .feedback-mark`) || {})"
            ".textContent?.includes('reported dangerous')", scan_id, timeout=15)
    page.close()
    dash.close()
