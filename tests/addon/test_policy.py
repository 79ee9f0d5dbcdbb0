"""The policy addon (request-time allow/block) in a taddons context, over the real list service,
store and engine: what is let through unscanned, what is refused before any upstream connection,
and that the lists match at request time exactly as the engine matches them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from malwaresnipper.addon.bypass import BypassTokens
from malwaresnipper.addon.lifecycle import Lifecycle
from malwaresnipper.addon.options import GatewayOptions
from malwaresnipper.addon.policy import Policy
from malwaresnipper.addon.replies import Replies
from malwaresnipper.server.store import ScanFilter
from helpers.addons import EnginePool, IdlePool, done, request, responseheaders, running


def make_flow(url_host: str, path: str = "/", *, port: int = 443, headers: dict[str, str] | None = None,
              client: str = "127.0.0.1") -> http.HTTPFlow:
    req = tutils.treq(host=url_host, port=port, scheme=b"https", path=path.encode(),
                      headers=http.Headers([(k.encode(), v.encode()) for k, v in (headers or {}).items()]))
    f = tflow.tflow(req=req)
    f.client_conn.peername = (client, 50000)
    return f


class Rig:
    def __init__(self, pool: object) -> None:
        self.options = GatewayOptions()
        self.lifecycle = Lifecycle(self.options, pool=pool)
        self.replies = Replies(BypassTokens())
        self.policy = Policy(self.options, self.lifecycle, self.replies)


@pytest.fixture
async def rig(tmp_path: Path):
    """Options, lifecycle (services running over the real engine, no servers) and policy."""
    r = Rig(EnginePool())
    with taddons.context(r.options, r.lifecycle, r.policy) as tctx:
        tctx.configure(r.options, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False,
                       malwaresnipper_mode="block")
        await running(r.lifecycle)
        try:
            yield r, tctx
        finally:
            await done(r.lifecycle)


async def test_a_blocklisted_url_is_refused_before_any_upstream_connection_and_recorded(rig) -> None:
    r, _ = rig
    service = r.lifecycle.service
    await service.add_list_entry("block", "https://Evil.example/Login", "url")
    flow = make_flow("evil.example", "/Login")
    await request(r.policy, flow)
    # the entry names the same resource as the request, as the engine reads it
    assert flow.response is not None and flow.response.status_code == 403
    text = flow.response.get_text()
    assert "on your blocklist" in text and "action=proceed" in text and "action=allow" not in text
    assert flow.metadata["malwaresnipper_skip"] == "blocked_at_request"
    assert r.lifecycle.counters["blocked_request"] == 1
    await asyncio.wait_for(asyncio.gather(*r.lifecycle.tasks), 60)
    await service.bus.flush()
    items, _ = await service.store.list_scans(ScanFilter(), 10, 0)
    assert [(i["url"], i["threat_level"], i["blocked"]) for i in items] == [
        ("https://evil.example/Login", "MALICIOUS", True)]
    other = make_flow("evil.example", "/login")  # another path is another resource
    await request(r.policy, other)
    assert other.response is None


async def test_allowlisted_sites_and_own_traffic_pass_unscanned_and_counted(rig) -> None:
    r, _ = rig
    await r.lifecycle.service.add_list_entry("allow", "*.Trusted.Example.", "domain")
    own = make_flow("127.0.0.1", port=r.options.effective.settings.server.api_port)
    allowed = make_flow("www.trusted.example")
    for flow in (own, allowed):
        await request(r.policy, flow)
        assert flow.response is None
        flow.response = http.Response.make(200, b"<html>", {"content-type": "text/html"})
        responseheaders(r.policy, flow)
        assert flow.response.stream is True
    assert own.metadata["malwaresnipper_skip"] == "own_traffic"
    assert allowed.metadata["malwaresnipper_skip"] == "allowlisted"
    assert r.lifecycle.counters["unscanned_own_traffic"] == r.lifecycle.counters["unscanned_allowlisted"] == 1


async def test_a_block_beats_an_allow_as_in_the_engine(rig) -> None:
    r, _ = rig
    service = r.lifecycle.service
    await service.add_list_entry("allow", "shop.example", "domain")
    await service.add_list_entry("block", "https://shop.example/skimmer.js", "url")
    skimmer = make_flow("shop.example", "/skimmer.js", headers={"sec-fetch-dest": "script"})
    await request(r.policy, skimmer)
    assert skimmer.response is not None and skimmer.response.status_code == 403
    cart = make_flow("shop.example", "/cart")
    await request(r.policy, cart)
    assert cart.response is None and cart.metadata["malwaresnipper_skip"] == "allowlisted"


async def test_a_proceed_once_pass_lets_one_response_through(rig) -> None:
    r, _ = rig
    await r.lifecycle.service.add_list_entry("block", "listed.example", "domain")
    r.replies.bypass.allow_once("https://listed.example/", "127.0.0.1")
    once = make_flow("listed.example")
    await request(r.policy, once)
    assert once.response is None and once.metadata["malwaresnipper_pass"] is True
    again = make_flow("listed.example")
    await request(r.policy, again)
    assert again.response is not None and again.response.status_code == 403


async def test_monitor_mode_refuses_nothing(rig) -> None:
    r, tctx = rig
    tctx.configure(r.options, malwaresnipper_mode="monitor")
    await r.lifecycle.service.add_list_entry("block", "listed.example", "domain")
    flow = make_flow("listed.example")
    await request(r.policy, flow)
    assert flow.response is None and "malwaresnipper_skip" not in flow.metadata  # scanned, and recorded so


async def test_the_config_files_lists_apply_before_the_services_run(tmp_path: Path) -> None:
    listed = tmp_path / "block.txt"
    listed.write_text("# classification: phishing\nhttps://Phish.example/Account\n")
    config = tmp_path / "malwaresnipper.toml"
    config.write_text(f'[engine.reputation]\nblocklist_files = ["{listed}"]\n')
    r = Rig(IdlePool())
    with taddons.context(r.options, r.lifecycle, r.policy) as tctx:
        tctx.configure(r.options, malwaresnipper_config=str(config), malwaresnipper_mode="block")
        assert r.lifecycle.service is None
        flow = make_flow("phish.example", "/Account")
        await request(r.policy, flow)
        assert flow.response is not None and flow.response.status_code == 403
        assert "is on a blocklist (phishing" in flow.response.get_text()
