"""Scan detail, allow/block lists, history filters, paging and export, in real Chromium."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from helpers.dashboard import (
    Gateway,
    capture,
    miner_capture,
    needs_chromium,
    open_dashboard,
    screenshot,
    wait_js,
)

pytestmark = [pytest.mark.integration, needs_chromium]

BAD_DOMAIN = "bad-history.example"
BENIGN = 54
MALICIOUS = 6


@pytest.fixture(scope="module")
def seeded(gateway: Gateway) -> Gateway:
    """60 real scans through the API: 54 ordinary pages on 3 domains, 6 cryptominer pages."""
    status, body = gateway.request("POST", "/api/v1/lists/block", {"entry": BAD_DOMAIN, "kind": "domain", "note": "test"})
    assert status in (200, 201), body
    for i in range(BENIGN):
        gateway.submit(capture(f"https://site{i % 3}.example/page/{i}", title=f"Ordinary page {i}"), wait=True)
    for i in range(MALICIOUS):
        verdict = gateway.submit(miner_capture(f"https://{BAD_DOMAIN}/watch/{i}", title=f"Bad page {i}"), wait=True)["verdict"]
        assert verdict["threat_level"] == "MALICIOUS", verdict
    return gateway


def history_summary(page: Any) -> str:
    return page.text_content("#history-summary") or ""


def apply_filters(page: Any, **values: str) -> None:
    page.click("#history-form button[type=reset]")
    for name, value in values.items():
        selector = f"#history-form [name={name}]"
        if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    with page.expect_response(lambda r: "/api/v1/scans?" in r.url and r.request.method == "GET"):
        page.click("#history-form button[type=submit]")


def test_history_filters_and_paging(browser: Any, seeded: Gateway) -> None:
    context, page, watch = open_dashboard(browser, seeded)
    try:
        with page.expect_response(lambda r: "/api/v1/scans?" in r.url):
            page.click("#tabs .tab[data-view=history]")
        total = BENIGN + MALICIOUS
        wait_js(page, f"document.querySelector('#history-summary').textContent.includes('of {total} scans')")
        assert history_summary(page).startswith("1–50 of 60")
        assert page.locator("#history-body tr").count() == 50
        assert page.is_disabled("#history-prev") and page.is_enabled("#history-next")
        screenshot(page, "dashboard-history")

        first_page_ids = page.locator("#history-body tr").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
        with page.expect_response(lambda r: "offset=50" in r.url):
            page.click("#history-next")
        wait_js(page, "document.querySelector('#history-summary').textContent.startsWith('51–60')")
        second_page_ids = page.locator("#history-body tr").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
        assert len(second_page_ids) == 10 and not set(first_page_ids) & set(second_page_ids)
        assert page.is_disabled("#history-next")
        status, listing = seeded.request("GET", "/api/v1/scans?limit=500")
        assert set(first_page_ids) | set(second_page_ids) == {i["scan_id"] for i in listing["items"]}

        # Level filter: only malicious rows, as many as the API counts.
        apply_filters(page, level="MALICIOUS")
        wait_js(page, f"document.querySelector('#history-summary').textContent.includes('of {MALICIOUS} scans')")
        levels = page.locator("#history-body tr").evaluate_all("rows => rows.map(r => r.dataset.level)")
        assert levels == ["MALICIOUS"] * MALICIOUS

        # Domain filter, text search, source filter and a time range.
        apply_filters(page, domain="site1.example")
        wait_js(page, "document.querySelector('#history-summary').textContent.includes('of 18 scans')")
        urls = page.locator("#history-body .page-url").all_text_contents()
        assert len(urls) == 18 and all(u.startswith("https://site1.example/") for u in urls)

        apply_filters(page, q="Ordinary page 7")  # matches 7 only (titles 7, 70.. do not exist)
        wait_js(page, "document.querySelector('#history-summary').textContent.includes('of 1 scans')")
        assert page.locator("#history-body .page-title").all_text_contents() == ["Ordinary page 7"]

        apply_filters(page, source="PROXY")
        wait_js(page, "document.querySelector('#history-summary').textContent === 'No scans match these filters.'")
        assert page.locator("#history-body tr").count() == 0

        apply_filters(page, since="2000-01-01T00:00:00", until="2001-01-01T00:00:00")
        wait_js(page, "document.querySelector('#history-summary').textContent === 'No scans match these filters.'")
        apply_filters(page, since="2000-01-01T00:00:00")
        wait_js(page, f"document.querySelector('#history-summary').textContent.includes('of {total} scans')")
        assert not watch.errors, watch.errors
    finally:
        context.close()


def test_export_downloads_what_the_filters_select(browser: Any, seeded: Gateway) -> None:
    context, page, watch = open_dashboard(browser, seeded)
    try:
        page.click("#tabs .tab[data-view=history]")
        apply_filters(page, level="MALICIOUS")
        with page.expect_download() as info:
            page.click("#export-csv")
        download = info.value
        assert download.suggested_filename == "malwaresnipper-scans.csv"
        rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
        assert len(rows) == MALICIOUS
        assert all(BAD_DOMAIN in r["url"] for r in rows)

        apply_filters(page, domain="site2.example")
        with page.expect_download() as info:
            page.click("#export-jsonl")
        download = info.value
        assert download.suggested_filename == "malwaresnipper-scans.jsonl"
        lines = [json.loads(line) for line in Path(download.path()).read_text(encoding="utf-8").splitlines() if line]
        assert len(lines) == 18 and all("site2.example" in line["url"] for line in lines)
        # The export went through fetch with the Authorization header: no token in any URL.
        assert seeded.token not in page.url
        assert not watch.errors, watch.errors
    finally:
        context.close()


def test_detail_view_shows_the_whole_verdict_and_allows_the_site(browser: Any, seeded: Gateway) -> None:
    context, page, watch = open_dashboard(browser, seeded)
    try:
        status, listing = seeded.request("GET", "/api/v1/scans?level=MALICIOUS&limit=1")
        scan_id = listing["items"][0]["scan_id"]
        status, scan = seeded.request("GET", f"/api/v1/scans/{scan_id}")
        verdict = scan["verdict"]

        page.click("#tabs .tab[data-view=history]")
        apply_filters(page, level="MALICIOUS")
        page.click(f'#history-body tr[data-scan-id="{scan_id}"]')
        page.wait_for_selector("#detail[data-complete=true]")
        assert page.text_content("#detail .detail-url") == scan["url"]
        assert page.text_content("#detail .detail-title") == scan["title"]
        assert page.locator("#detail .badge.level-MALICIOUS").count() >= 1
        # Per-layer scores, every indicator with its evidence, scripts, engine version.
        layer_rows = page.locator("#detail table.layers tbody tr")
        assert layer_rows.count() == len(verdict["layers"])
        for name, layer in verdict["layers"].items():
            row = page.locator(f'#detail table.layers tr[data-layer="{name}"]')
            assert row.locator("td").nth(1).text_content() == f"{layer['score']:.1f}"
        assert page.locator("#detail .indicator").count() == len(verdict["indicators"]) > 0
        shown_ids = page.locator("#detail .indicator").evaluate_all("boxes => boxes.map(b => b.dataset.indicatorId)")
        assert shown_ids == [i["id"] for i in verdict["indicators"]]
        assert page.locator("#detail .indicator-title").all_text_contents() == [i["title"] for i in verdict["indicators"]]
        evidence = [ev for i in verdict["indicators"] for ev in i["evidence"]]
        assert page.locator("#detail pre.snippet").all_text_contents() == [ev["snippet"] for ev in evidence]
        locations = page.locator("#detail .evidence-location").all_text_contents()
        assert [loc.split(" @ offset ")[0] for loc in locations] == [ev["location"] for ev in evidence]
        assert any(ev["snippet"] for ev in evidence)
        assert page.locator("#detail table.scripts tbody tr").count() == len(verdict["scripts"]) == 1
        body = page.text_content("#detail-body") or ""
        assert verdict["engine_version"] in body
        for name, version in verdict["model_versions"].items():
            assert f"{name} {version}" in body
        screenshot(page, "dashboard-detail")

        # One click puts the site on the allowlist.
        page.click("#detail-allow")
        wait_js(page, "document.querySelector('#detail-message').textContent.includes('is on the allowlist')")
        status, allow = seeded.request("GET", "/api/v1/lists/allow")
        assert [i["entry"] for i in allow["items"]] == [BAD_DOMAIN]
        page.click("#detail-close")
        assert page.is_hidden("#detail")

        # The lists view shows both lists; remove and add entries through the UI.
        page.click("#tabs .tab[data-view=lists]")
        page.wait_for_selector(f'section[data-list=allow] tr[data-entry="{BAD_DOMAIN}"]')
        page.wait_for_selector(f'section[data-list=block] tr[data-entry="{BAD_DOMAIN}"]')
        screenshot(page, "dashboard-lists")
        page.click(f'section[data-list=allow] tr[data-entry="{BAD_DOMAIN}"] button')
        page.wait_for_selector(f'section[data-list=allow] tr[data-entry="{BAD_DOMAIN}"]', state="detached")
        assert seeded.request("GET", "/api/v1/lists/allow")[1]["items"] == []
        page.fill("form[data-list=block] [name=entry]", "another-bad.example")
        page.fill("form[data-list=block] [name=note]", "added in the test")
        page.click("form[data-list=block] button[type=submit]")
        page.wait_for_selector('section[data-list=block] tr[data-entry="another-bad.example"]')
        entries = {i["entry"]: i for i in seeded.request("GET", "/api/v1/lists/block")[1]["items"]}
        assert entries["another-bad.example"]["note"] == "added in the test"
        assert not watch.errors, watch.errors
    finally:
        context.close()
