"""Lists changed while verdicts are cached, through a real ``malwaresnipper serve`` (the API path).

An identical capture within ``[proxy] dedupe_window_s`` gets the earlier verdict back. After a
domain, a URL or a script's sha256 is blocklisted, the same capture must be scanned again under
the new lists (and blocked), not answered from the cache. URL entries match as the engine
matches them: ``https://Evil.example/Login`` names ``https://evil.example/Login``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from helpers.api import Gateway

pytestmark = pytest.mark.integration

SCRIPT = "var basket = []; function add(item) { basket.push(item); return basket.length; }"


def capture(host: str, path: str = "/Login") -> dict[str, Any]:
    return {
        "url": f"https://{host}{path}",
        "title": "Shop",
        "html": "<html><head><title>Shop</title></head><body><h1>Products</h1><p>Plain text.</p></body></html>",
        "scripts": [{"url": f"https://{host}/basket.js", "text": SCRIPT, "inline": False}],
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gw-lists"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def _scan(gateway: Gateway, s: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    status, data = await gateway.call(s, "POST", "/api/v1/scans?wait=true", body)
    assert status == 200, data
    return data


@pytest.mark.parametrize(("host", "entry", "kind"), [
    ("shop-domain.example", "Shop-Domain.Example", "domain"),
    ("shop-url.example", "https://Shop-Url.example/Login", "url"),
    ("shop-sha.example", hashlib.sha256(SCRIPT.encode()).hexdigest(), "sha256"),
], ids=["domain", "url", "sha256"])
async def test_a_blocklist_entry_added_after_a_cached_verdict_applies_to_the_next_scan(
        gateway: Gateway, host: str, entry: str, kind: str) -> None:
    body = capture(host)
    async with aiohttp.ClientSession() as s:
        first = await _scan(gateway, s, body)
        assert first["verdict"]["threat_level"] == "BENIGN", first["verdict"]["indicators"]
        cached = await _scan(gateway, s, body)
        assert cached["deduplicated"] and cached["scan_id"] == first["scan_id"]
        status, item = await gateway.call(s, "POST", "/api/v1/lists/block", {"entry": entry, "kind": kind})
        assert status == 201, item
        try:
            after = await _scan(gateway, s, body)
            assert not after["deduplicated"] and after["scan_id"] != first["scan_id"]
            assert after["verdict"]["threat_level"] == "MALICIOUS"
            assert any(i["id"].startswith("reputation.blocklisted") for i in after["verdict"]["indicators"])
        finally:
            status, _ = await gateway.call(s, "DELETE", f"/api/v1/lists/block?entry={item['entry']}")
            assert status == 200
        unlisted = await _scan(gateway, s, body)
        assert unlisted["verdict"]["threat_level"] == "BENIGN" and not unlisted["deduplicated"]
