"""Hostile page content shows as text and never runs, in real Chromium under the gateway's CSP."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.dashboard import Gateway, needs_chromium, open_dashboard, screenshot

pytestmark = [pytest.mark.integration, needs_chromium]

HOST = "hostile.example"
# No spaces: the API refuses a URL no browser would send (a space or a control character), but
# quotes and angle brackets reach it through the proxy from any client that sends them raw.
URL = f"""https://{HOST}/"><img/src=x/onerror="window.__pwned='url';alert('url')">?q=<script>window.__pwned='q'</script>"""
TITLE = """</title><img src=x onerror="window.__pwned='title';alert('title')"><script>window.__pwned='title2'</script><b>bold?</b>"""
SCRIPT = (
    "var payload = '<img src=x onerror=\"window.__pwned=\\'script\\';alert(1)\">';\n"
    "document.write(payload + '<script>window.__pwned=\"script2\"</scr' + 'ipt>');\n"
    "eval(atob('d2luZG93Ll9fcHduZWQ9J2V2YWwn'));\n"
    "<svg onload=alert('svg')></svg>"
)
SCRIPT_URL = f"https://{HOST}/<svg onload=alert('src')>.js"

# Records CSP violations: if the page ever inserted markup, the CSP would have to block it, and
# this says so. Init scripts run before the page's own (Playwright injects them, not the page).
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_hostile_title_url_and_script_show_literally_and_nothing_runs(browser: Any, gateway: Gateway) -> None:
    context, page, watch = open_dashboard(browser, gateway, init_script=CSP_PROBE)
    try:
        body = {
            "url": URL,
            "title": TITLE,
            "html": f"<html><head><title>{TITLE}</title></head><body><script>{SCRIPT}</script></body></html>",
            "scripts": [{"inline": True, "text": SCRIPT}, {"url": SCRIPT_URL, "text": SCRIPT}],
            "content_type": "text/html",
        }
        scan_id = gateway.submit(body)["scan_id"]
        row = page.locator(f'#feed-body .feed-row[data-scan-id="{scan_id}"]')
        page.wait_for_selector(f'#feed-body .feed-row[data-scan-id="{scan_id}"][data-status=SCAN_COMPLETE]', timeout=10_000)
        assert row.locator(".page-url").text_content() == URL
        assert row.locator(".page-title").text_content() == TITLE

        row.click()
        page.wait_for_selector("#detail[data-complete=true]")
        assert page.text_content("#detail .detail-url") == URL
        assert page.text_content("#detail .detail-title") == TITLE
        verdict = gateway.request("GET", f"/api/v1/scans/{scan_id}")[1]["verdict"]
        snippets = page.locator("#detail pre.snippet").all_text_contents()
        expected = [ev["snippet"] for ind in verdict["indicators"] for ev in ind["evidence"]]
        assert snippets == expected
        assert any("<" in s for s in snippets), "no evidence carried markup; the test would prove nothing"
        sources = page.locator("#detail table.scripts td.page-url").all_text_contents()
        assert SCRIPT_URL in sources
        screenshot(page, "dashboard-hostile-detail")

        # History renders the same strings.
        page.click("#detail-close")
        page.click("#tabs .tab[data-view=history]")
        page.fill("#history-form [name=domain]", HOST)
        page.click("#history-form button[type=submit]")
        page.wait_for_selector(f'#history-body tr[data-scan-id="{scan_id}"]')
        assert page.text_content(f'#history-body tr[data-scan-id="{scan_id}"] .page-url') == URL
        page.wait_for_timeout(300)  # give any injected handler (onerror, onload) time to fire

        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert watch.dialogs == []
        assert page.evaluate("document.images.length") == 0
        assert page.evaluate("document.querySelectorAll('svg, b, iframe, object, embed').length") == 0
        assert page.evaluate("document.scripts.length") == 2  # Chart.js and app.js, nothing else
        assert page.evaluate("window.__cspViolations") == []
        assert not watch.errors, watch.errors
    finally:
        context.close()
