"""Feedback from the block page, in a taddons context with real scan services (SQLite store):
"Report a mistake" needs the gateway's own confirmation form (a page's script cannot file one),
and a confirmed proceed-once or always-allow is recorded with the scan it overrode."""

from __future__ import annotations

import asyncio
import html
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from mitmproxy import ctx, http
from mitmproxy.test import taddons
from helpers.control import BLOCKED, CONTROL, flow, post, token_for

from malwaresnipper.addon import blockpage
from malwaresnipper.addon.bypass import BypassTokens
from malwaresnipper.addon.control import Control
from malwaresnipper.addon.lifecycle import Lifecycle
from malwaresnipper.addon.options import GatewayOptions
from malwaresnipper.server.store import NewScan
from helpers.addons import IdlePool, done, request, running


def report_post(block: str, token: str, comment: str, origin: str | None = f"http://{CONTROL}") -> http.HTTPFlow:
    headers = {"content-type": "application/x-www-form-urlencoded", **({"origin": origin} if origin else {})}
    return flow("/report", method="POST", headers=headers,
                content=urlencode({"block": block, "action": "report", "token": token, "comment": comment}).encode())


async def report_token(control: Control, block: str) -> str:
    page = flow(f"/report?block={block}&verdict=safe")
    await request(control, page)
    assert page.response is not None and page.response.status_code == 200, page.response
    text = page.response.get_text()
    assert 'action="/report"' in text and "Report: this page is safe" in text
    return html.unescape(re.search(r'name="token" value="([^"]+)"', text).group(1))


@pytest.fixture
async def gateway(tmp_path: Path):
    options = GatewayOptions()
    life = Lifecycle(options, pool=IdlePool())
    bypass = BypassTokens()
    addon = Control(life, bypass)
    with taddons.context(options, life, addon):
        ctx.options.update(malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False)
        await running(life)
        try:
            await life.service.store.insert_scan(NewScan(scan_id="scan-1", ts=time.time(), url=BLOCKED,  # type: ignore[attr-defined]  # the real ScanService
                                                         domain="bad.example", title=None, method="PROXY",
                                                         content_hash="h"))
            yield addon, bypass, life
        finally:
            await done(life)


async def test_a_report_is_filed_only_through_the_gateways_own_form(gateway) -> None:
    addon, bypass, life = gateway
    block = bypass.record_block(BLOCKED, "127.0.0.1", reasons=("Password form",), scan_id="scan-1")
    # a script of the blocked site posting on its own: no token, or a foreign Origin
    for forged in (report_post(block, "guessed", "x"),
                   report_post(block, await report_token(addon, block), "x", origin="https://bad.example")):
        await request(addon, forged)
        assert forged.response.status_code == 403
    ok = report_post(block, await report_token(addon, block), "  our <b>intranet</b> login  ")
    await request(addon, ok)
    assert ok.response.status_code == 200 and "report was recorded" in ok.response.get_text()
    record = await life.service.store.get_scan("scan-1")
    assert [(r["verdict"], r["source"], r["comment"]) for r in record["reports"]] == [
        ("safe", "blockpage", "our <b>intranet</b> login")]
    assert life.service.metrics.reports[("safe", "blockpage")] == 1
    replay = report_post(block, "x", "again")
    await request(addon, replay)
    assert replay.response.status_code == 403
    assert len((await life.service.store.get_scan("scan-1"))["reports"]) == 1


async def test_no_report_for_a_block_without_a_scan(gateway) -> None:
    addon, bypass, _ = gateway
    listed = bypass.record_block(BLOCKED, "127.0.0.1", may_allow=False)  # a request-time blocklist hit
    page = flow(f"/report?block={listed}&verdict=safe")
    await request(addon, page)
    assert page.response.status_code == 403
    links = blockpage.BypassLinks(listed, False, may_report=False)
    text = blockpage.render_block_page(url=BLOCKED, reasons=[], risk_score=None, classification=None, links=links)
    assert "Report a mistake" not in text
    links = blockpage.BypassLinks(listed, True, may_report=True)
    text = blockpage.render_block_page(url=BLOCKED, reasons=[], risk_score=None, classification=None, links=links)
    assert f'href="http://{CONTROL}/report?block={listed}&amp;verdict=safe"' in text


async def test_proceed_once_and_always_allow_are_recorded_with_the_scan(gateway) -> None:
    addon, bypass, life = gateway
    block = bypass.record_block(BLOCKED, "127.0.0.1", scan_id="scan-1")
    ok = post(block, "proceed", await token_for(addon, block, "proceed"))
    await request(addon, ok)
    assert ok.response.status_code == 303
    block = bypass.record_block(BLOCKED, "127.0.0.1", scan_id="scan-1")
    ok = post(block, "allow", await token_for(addon, block, "allow"))
    await request(addon, ok)
    assert ok.response.status_code == 303
    await asyncio.gather(*life.tasks)  # recorded in the background: the redirect never waits for it
    record = await life.service.store.get_scan("scan-1")
    assert [(o["action"], o["source"], o["url"]) for o in record["overrides"]] == [
        ("proceed_once", "gateway", BLOCKED), ("always_allow", "gateway", BLOCKED)]
    assert life.service.metrics.overrides[("proceed_once", "gateway")] == 1
    # a bypass whose scan is unknown still goes through (the record is best effort)
    block = bypass.record_block(BLOCKED, "127.0.0.1", scan_id="gone")
    ok = post(block, "proceed", await token_for(addon, block, "proceed"))
    await request(addon, ok)
    assert ok.response.status_code == 303
