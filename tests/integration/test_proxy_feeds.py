"""Feeds through a real mitmdump in block mode: what a block feed lists is refused.

The feeds are served by the test's upstream on 127.0.0.1 (``allow_http_loopback``); the gateway
downloads them itself (the operator's config names them, no client does). A URL from an
OpenPhish-format feed is refused at request time with the feed named, before any upstream
connection; a script whose sha256 a feed lists is blocked by the scan workers' verdict (the
snapshot was pushed to them); and when the feed grows, its new entry is in force after the
next refresh, with no restart.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest

from helpers.proxy import Gateway, Route, Upstream, make_self_signed, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SCRIPT = b"window.skim = function () { return document.forms.length; };\n"
BLOCKED_SCRIPT = b"/* MalwareSnipper blocked this script"
PAGE = b"<!DOCTYPE html><html><head><title>Shop</title></head><body><p>Products and prices.</p></body></html>"
REFRESH_S = 10


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("upstream")
    cert, key = make_self_signed(tmp)
    server = Upstream({
        "/shop/login": Route(PAGE, "text/html; charset=utf-8"),
        "/shop/later": Route(PAGE, "text/html; charset=utf-8"),
        "/shop/fine": Route(PAGE, "text/html; charset=utf-8"),
        "/shop/skim.js": Route(SCRIPT, "application/javascript"),
    })
    server.start(cert, key)
    port = server.http_port
    server.routes["/feeds/openphish.txt"] = Route(f"http://localhost:{port}/shop/login\n".encode(), "text/plain")
    server.routes["/feeds/hashes.txt"] = Route((hashlib.sha256(SCRIPT).hexdigest() + "\n").encode(), "text/plain")
    server.cert = cert
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("feeds")
    base = f"http://127.0.0.1:{upstream.http_port}/feeds"
    config = f"""
[[feeds]]
name = "phish"
format = "openphish"
source = "{base}/openphish.txt"
refresh_s = {REFRESH_S}
allow_http_loopback = true

[[feeds]]
name = "hashes"
format = "sha256"
source = "{base}/hashes.txt"
refresh_s = 3600
allow_http_loopback = true
"""
    gateway = start_gateway(tmp, upstream.cert, config_toml=config,
                            options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=15000"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        feeds = gateway.api("/api/v1/health").get("feeds") or []
        if len(feeds) == 2 and all(f["entries"] for f in feeds):
            break
        time.sleep(0.2)
    yield gateway
    gateway.stop()


def _get(gw: Gateway, url: str):  # noqa: ANN202 - helpers.proxy.Response
    with gw.session() as s:
        return s.get(url, timeout=60)


def test_a_url_on_a_block_feed_is_refused_at_request_time_naming_the_feed(gw: Gateway, upstream: Upstream) -> None:
    health = {f["name"]: f for f in gw.api("/api/v1/health")["feeds"]}
    assert health["phish"]["entries"] == 1 and not health["phish"]["stale"], (health, gw.log())
    r = _get(gw, f"http://localhost:{upstream.http_port}/shop/login")
    assert r.status_code == 403 and "feed phish" in r.text, (r.status_code, r.text[:300])
    assert upstream.hits["/shop/login"] == 0, "refused before any upstream connection"
    fine = _get(gw, f"http://localhost:{upstream.http_port}/shop/fine")
    assert fine.status_code == 200 and fine.content == PAGE


def test_a_script_whose_sha256_a_feed_lists_is_blocked_by_the_workers(gw: Gateway, upstream: Upstream) -> None:
    r = _get(gw, upstream.url("/shop/skim.js"))
    assert r.content.startswith(BLOCKED_SCRIPT), (r.headers.get("x-malwaresnipper"), r.content[:80], gw.log())
    assert upstream.hits["/shop/skim.js"] >= 1  # fetched, scanned, refused by the verdict


def test_a_feed_that_grows_is_in_force_after_its_refresh(gw: Gateway, upstream: Upstream) -> None:
    port = upstream.http_port
    later = f"http://localhost:{port}/shop/later"
    assert _get(gw, later).status_code == 200
    upstream.routes["/feeds/openphish.txt"] = Route(
        f"http://localhost:{port}/shop/login\n{later}\n".encode(), "text/plain")
    deadline = time.monotonic() + REFRESH_S * 4
    status = 200
    while time.monotonic() < deadline:
        status = _get(gw, later).status_code
        if status == 403:
            break
        time.sleep(0.5)
    assert status == 403, gw.log()
    phish = next(f for f in gw.api("/api/v1/health")["feeds"] if f["name"] == "phish")
    assert phish["entries"] == 2 and phish["refreshes"] >= 2
