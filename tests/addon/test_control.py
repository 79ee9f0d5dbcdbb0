"""The control addon (the gateway's own origin, ``http://malwaresnipper.invalid``) in a taddons
context: confirmation pages, one-time tokens redeemed only by the origin's own form, and what a
confirmed bypass grants."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import ctx
from mitmproxy.test import taddons

from malwaresnipper.addon.bypass import BypassTokens
from malwaresnipper.addon.control import Control
from malwaresnipper.addon.lifecycle import Lifecycle
from malwaresnipper.addon.options import GatewayOptions
from helpers.addons import IdlePool, done, request, running
from helpers.control import BLOCKED, flow, post, token_for

@pytest.fixture
def control():
    options = GatewayOptions()
    life = Lifecycle(options, pool=IdlePool())
    bypass = BypassTokens()
    addon = Control(life, bypass)
    with taddons.context(options, life, addon):
        yield addon, bypass, life


async def test_the_confirmation_page_needs_a_block_shown_to_this_client(control) -> None:
    addon, bypass, _ = control
    block = bypass.record_block(BLOCKED, "127.0.0.1", reasons=("phishing",))
    assert await token_for(addon, block, "proceed")
    for path, client, status in [(f"/confirm?block={block}&action=proceed", "10.0.0.9", 403),  # another client
                                 ("/confirm?block=unknown&action=proceed", "127.0.0.1", 403),
                                 (f"/confirm?block={block}&action=delete", "127.0.0.1", 403),
                                 ("/elsewhere", "127.0.0.1", 404)]:
        f = flow(path, client=client)
        await request(addon, f)
        assert f.response.status_code == status and f.metadata["malwaresnipper_skip"] == "control"
    odd = flow("/confirm", method="PUT")
    await request(addon, odd)
    assert odd.response.status_code == 405
    listed = bypass.record_block(BLOCKED, "127.0.0.1", may_allow=False)  # the user's own blocklist
    ask = flow(f"/confirm?block={listed}&action=allow")
    await request(addon, ask)
    assert ask.response.status_code == 403 and "blocklist" in ask.response.get_text()


async def test_proceed_once_is_granted_only_by_the_origins_own_form_and_only_once(control) -> None:
    addon, bypass, life = control
    block = bypass.record_block(BLOCKED, "127.0.0.1")
    token = await token_for(addon, block, "proceed")
    for forged in (post(block, "proceed", token, origin="https://bad.example"),  # another origin's form
                   post(block, "proceed", "forged")):
        await request(addon, forged)
        assert forged.response.status_code == 403
    token = await token_for(addon, block, "proceed")  # the refused attempt spent it
    ok = post(block, "proceed", token)
    await request(addon, ok)
    assert ok.response.status_code == 303 and ok.response.headers["location"] == BLOCKED
    assert life.counters["proceed_once"] == 1
    replay = post(block, "proceed", token)
    await request(addon, replay)
    assert replay.response.status_code == 403
    assert bypass.take_pass(BLOCKED, "127.0.0.1") and not bypass.take_pass(BLOCKED, "127.0.0.1")


async def test_always_allow_without_a_store_allows_the_site_until_restart(control) -> None:
    addon, bypass, life = control
    before = life.lists.version
    block = bypass.record_block(BLOCKED, "127.0.0.1")
    ok = post(block, "allow", await token_for(addon, block, "allow"))
    await request(addon, ok)
    assert ok.response.status_code == 303 and life.counters["always_allow"] == 1
    assert life.lists.lookup("https://www.bad.example/other").allowed is not None
    assert life.lists.version == before + 1, "a list change: verdicts cached before it are not reused"


async def test_always_allow_stores_the_site_on_the_allowlist(control, tmp_path: Path) -> None:
    addon, bypass, life = control
    ctx.options.update(malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False)
    await running(life)
    try:
        block = bypass.record_block(BLOCKED, "127.0.0.1")
        ok = post(block, "allow", await token_for(addon, block, "allow"))
        await request(addon, ok)
        assert ok.response.status_code == 303
        assert [i["entry"] for i in life.service.lists.items("allow")] == ["bad.example"]
        assert life.lists.lookup(BLOCKED).allowed is not None
    finally:
        await done(life)
