"""Two real gateway processes sharing one Redis (events) and one PostgreSQL (history, lists).

What issue 8 asks, end to end: captures sent to each gateway appear once and in order per gateway
on one dashboard client and in one history; a client resumes on the other gateway with the seq it
saw; an allowlist entry added through gateway A takes effect on gateway B within a second; a Redis
restart mid-run loses no acknowledged scan and no event.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers.dashboard import miner_capture
from helpers.proxy import DROPPER, Upstream, default_routes, make_self_signed, start_gateway
from helpers.proxy import TOKEN as PROXY_TOKEN
from helpers.postgres import TcpProxy, fresh_database
from helpers.redis_server import RedisServer
from helpers.api import Gateway, small_page

pytestmark = pytest.mark.integration

TOKEN = "multi-gateway-test-token-0123456789"


def gateway_config(gateway_id: str, dsn: str, redis_url: str) -> str:
    return f"""
[server]
gateway_id = "{gateway_id}"

[proxy]
workers = 1

[store]
backend = "postgres"
dsn = "{dsn}"

[events]
backend = "redis"
url = "{redis_url}"
stream = "test:events"
"""


class Pair:
    def __init__(self, a: Gateway, b: Gateway, redis: RedisServer) -> None:
        self.a, self.b, self.redis = a, b, redis


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (some tests restart it)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Upstream, Path]]:
    """An HTTPS site with the proxy tests' pages, and the certificate mitmdump must trust."""
    cert, key = make_self_signed(tmp_path)
    site = Upstream(default_routes(b"\0" * 1024))
    site.start(cert, key)
    yield site, cert
    site.stop()


@pytest.fixture
async def pair(tmp_path: Path, redis: RedisServer, dsn: str) -> AsyncIterator[Pair]:
    a = Gateway(tmp_path / "a", config=gateway_config("gw-a", dsn, redis.url), token=TOKEN)
    b = Gateway(tmp_path / "b", config=gateway_config("gw-b", dsn, redis.url), token=TOKEN)
    try:
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield Pair(a, b, redis)
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop), return_exceptions=True)


async def post(gateway: Gateway, session: aiohttp.ClientSession, body: dict[str, Any], *,
               wait: bool = False) -> dict[str, Any]:
    status, reply = await gateway.call(session, "POST", "/api/v1/scans" + ("?wait=true" if wait else ""), body)
    assert status in (200, 202), (status, reply, gateway.log_tail())
    return reply


def check_stream(events: list[dict[str, Any]], sent: dict[str, list[str]]) -> None:
    """Every event once, one global order, each gateway's scans in the order it accepted them."""
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "seq must be strictly increasing, no duplicates"
    keys = Counter((e["scan_id"], e["status"], e.get("layer")) for e in events)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
    owner = {scan_id: gw for gw, ids in sent.items() for scan_id in ids}
    for e in events:
        assert e["gateway_id"] == owner[e["scan_id"]]
    for gw, ids in sent.items():
        started = [e["scan_id"] for e in events if e["status"] == "SCAN_STARTED" and e["gateway_id"] == gw]
        assert started == ids
        for scan_id in ids:
            statuses = [e["status"] for e in events if e["scan_id"] == scan_id]
            assert statuses[0] == "SCAN_STARTED" and statuses[-1] == "SCAN_COMPLETE"
            assert statuses.count("SCAN_COMPLETE") == 1


async def test_two_gateways_one_stream_one_history(pair: Pair) -> None:
    a, b = pair.a, pair.b
    watcher = await a.events()  # one dashboard client, on gateway A
    sent: dict[str, list[str]] = {"gw-a": [], "gw-b": []}
    async with aiohttp.ClientSession() as s:
        for i in range(12):
            sent["gw-a"].append((await post(a, s, small_page(f"a{i}")))["scan_id"])
            sent["gw-b"].append((await post(b, s, small_page(f"b{i}")))["scan_id"])
        every = set(sent["gw-a"]) | set(sent["gw-b"])
        await watcher.until_complete(every, timeout=90)
        events = [e for e in watcher.received if e["scan_id"] in every]
        check_stream(events, sent)
        # Nothing else arrives later (no duplicate delivery after the fact).
        with pytest.raises(asyncio.TimeoutError):
            await watcher.recv(timeout=1.0)

        # One history, whichever gateway is asked; filterable by gateway.
        for gw in (a, b):
            status, page = await gw.call(s, "GET", "/api/v1/scans?limit=100")
            assert status == 200 and page["total"] == 24
            assert {item["scan_id"]: item["gateway_id"] for item in page["items"]} == {
                scan_id: name for name, ids in sent.items() for scan_id in ids}
            assert all(item["status"] == "complete" for item in page["items"])
        status, only_b = await a.call(s, "GET", "/api/v1/scans?gateway=gw-b&limit=100")
        assert status == 200 and {i["scan_id"] for i in only_b["items"]} == set(sent["gw-b"])
        status, stats = await b.call(s, "GET", "/api/v1/stats")
        assert stats["total"] == 24

        # The seq is global: a client that saw events on A resumes on B and gets exactly the rest.
        cut = events[len(events) // 2]["seq"]
        resumed = await b.events(last_seq=cut)
        assert resumed.snapshot["seq"] >= events[-1]["seq"]
        replayed: list[dict[str, Any]] = []
        while len(replayed) < len([e for e in events if e["seq"] > cut]):
            replayed.append(await resumed.recv())
        assert [e["seq"] for e in replayed] == [e["seq"] for e in events if e["seq"] > cut]
        assert all(r.pop("replay") is True for r in replayed)
        assert replayed == [e for e in events if e["seq"] > cut]

        _, health = await b.call(s, "GET", "/api/v1/health")
        assert health["gateway_id"] == "gw-b"
        assert health["event_bus"]["backend"] == "redis" and health["event_bus"]["connected"] is True
        assert health["store"] == {"backend": "postgres", "available": True}


async def test_an_allowlist_entry_added_on_a_applies_on_b_within_a_second(pair: Pair) -> None:
    a, b = pair.a, pair.b
    watcher_b = await b.events()
    page = miner_capture("https://movies.allowed-lab.example/watch")
    async with aiohttp.ClientSession() as s:
        first = await post(b, s, page, wait=True)
        assert first["verdict"]["threat_level"] == "MALICIOUS"
        status, _ = await a.call(s, "POST", "/api/v1/lists/allow", {"entry": "allowed-lab.example", "note": "lab"})
        assert status == 201
        added = time.monotonic()
        while True:
            _, listed = await b.call(s, "GET", "/api/v1/lists/allow")
            if [i["entry"] for i in listed["items"]] == ["allowed-lab.example"]:
                print(f"allowlist entry from A in force on B after {(time.monotonic() - added) * 1000:.0f} ms")
                break
            assert time.monotonic() - added < 1.0, "gateway B did not see A's allowlist entry within 1 s"
            await asyncio.sleep(0.02)
        # B's own dashboard clients are told, and B's verdicts follow the new list at once.
        while (await watcher_b.recv(timeout=5)).get("type") != "lists_changed":
            pass
        again = await post(b, s, page, wait=True)
        assert again["scan_id"] != first["scan_id"]  # not B's cached verdict from before the change
        assert again["verdict"]["threat_level"] == "BENIGN"
        assert any(i["id"].startswith("reputation.allowlisted") for i in again["verdict"]["indicators"])


async def test_a_redis_restart_mid_run_loses_no_acknowledged_scan_or_event(pair: Pair) -> None:
    a, b = pair.a, pair.b
    watcher = await a.events()
    sent: dict[str, list[str]] = {"gw-a": [], "gw-b": []}
    async with aiohttp.ClientSession() as s:

        async def feed(gw: Gateway, name: str, n: int) -> None:
            for i in range(n):
                sent[name].append((await post(gw, s, small_page(f"{name}-r{i}")))["scan_id"])
                await asyncio.sleep(0.02)

        feeding = asyncio.gather(feed(a, "gw-a", 40), feed(b, "gw-b", 40))
        await asyncio.sleep(0.4)
        await asyncio.to_thread(pair.redis.restart, 1.0)  # down for a second, mid-run
        await feeding
        every = set(sent["gw-a"]) | set(sent["gw-b"])
        # Every acknowledged scan is in the one history...
        status, page = await b.call(s, "GET", "/api/v1/scans?limit=500")
        assert status == 200 and {i["scan_id"] for i in page["items"]} == every
        # ...and every event reaches the dashboard client once Redis is back, in order, once.
        await watcher.until_complete(every, timeout=90)
        check_stream([e for e in watcher.received if e["scan_id"] in every], sent)
        _, health = await a.call(s, "GET", "/api/v1/health")
        assert health["event_bus"]["connected"] is True and health["event_bus"]["lost"] == 0
    assert "Redis is back" in a.log_tail(50_000) + b.log_tail(50_000)


def fetch_through(proxy: Any, url: str) -> Any:
    """GET ``url`` through a mitmdump gateway (blocking: run it in a thread)."""
    with proxy.session() as s:
        return s.get(url, timeout=30).content


async def test_a_page_proxied_by_one_gateway_shows_on_the_others_dashboard(
        tmp_path: Path, redis: RedisServer, dsn: str, upstream: tuple[Upstream, Path]) -> None:
    """The real mitmdump path on the shared backends: gateway P proxies, gateway B shows it."""
    site, cert = upstream
    proxy = await asyncio.to_thread(start_gateway, tmp_path / "p", cert, options=[],
                                    config_toml=gateway_config("gw-proxy", dsn, redis.url))
    b = Gateway(tmp_path / "b", config=gateway_config("gw-b", dsn, redis.url), token=PROXY_TOKEN)
    try:
        await asyncio.to_thread(b.start)
        watcher = await b.events()
        url = site.url("/dropper.html?multi=1", True)
        assert await asyncio.to_thread(fetch_through, proxy, url) == DROPPER  # monitor mode: it goes through
        while True:
            message = await watcher.recv(timeout=60)
            if message.get("status") == "SCAN_COMPLETE" and message["url"] == url:
                break
        assert message["gateway_id"] == "gw-proxy" and message["method"] == "PROXY"
        assert message["threat_level"] == "MALICIOUS"
        async with aiohttp.ClientSession() as s:
            _, page = await b.call(s, "GET", "/api/v1/scans?gateway=gw-proxy&limit=50")
        assert [i["url"] for i in page["items"] if i["url"] == url] == [url]
    finally:
        await asyncio.to_thread(b.stop)
        await asyncio.to_thread(proxy.stop)


async def test_postgres_down_the_api_refuses_with_503_and_recovers(
        tmp_path: Path, redis: RedisServer, dsn: str) -> None:
    """A 202 promises the scan is recorded: while PostgreSQL is unreachable the API says 503."""
    relay = TcpProxy(dsn)
    await relay.start()
    gw = Gateway(tmp_path / "g", config=gateway_config("gw-x", relay.dsn(dsn), redis.url), token=TOKEN)
    try:
        await asyncio.to_thread(gw.start)
        async with aiohttp.ClientSession() as s:
            assert (await post(gw, s, small_page("before")))["scan_id"]
            await relay.stop()
            await until_store_available(gw, s, False)  # health answers without the store
            async with s.post(gw.base_url + "/api/v1/scans", json=small_page("during"),
                              headers=gw.headers()) as resp:
                body = await resp.json()
                assert resp.status == 503 and resp.headers["Retry-After"] == "5"
                assert body["error"]["code"] == "store_unavailable"
            status, body = await gw.call(s, "GET", "/api/v1/scans")
            assert status == 503 and body["error"]["code"] == "store_unavailable"
            await relay.start()
            await until_store_available(gw, s, True)
            after = await post(gw, s, small_page("after"))
            status, page = await gw.call(s, "GET", "/api/v1/scans?limit=10")
            assert status == 200
            assert after["scan_id"] in {i["scan_id"] for i in page["items"]}
            assert "during" not in " ".join(i["url"] for i in page["items"])  # refused = not recorded
        assert "PostgreSQL unreachable" in gw.log_tail(50_000)
    finally:
        await asyncio.to_thread(gw.stop)
        await relay.stop()


async def until_store_available(gw: Gateway, session: aiohttp.ClientSession, wanted: bool) -> None:
    deadline = time.monotonic() + 20
    while True:
        status, health = await gw.call(session, "GET", "/api/v1/health")
        assert status == 200
        if health["store"]["available"] is wanted:
            return
        assert time.monotonic() < deadline, f"store.available never became {wanted}"
        await asyncio.sleep(0.1)


async def test_a_proxy_started_while_postgres_is_down_starts_scanning_once_it_is_back(
        tmp_path: Path, redis: RedisServer, dsn: str, upstream: tuple[Upstream, Path]) -> None:
    """mitmdump must not need a restart because the shared history was down when it started."""
    site, cert = upstream
    relay = TcpProxy(dsn)
    await relay.start()
    await relay.stop()
    attempts = asyncio.Event()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.set()  # PostgreSQL "down": the connection is dropped at once
        writer.transport.abort()

    down = await asyncio.start_server(refuse, "127.0.0.1", relay.port, reuse_address=True)
    starting = asyncio.ensure_future(asyncio.to_thread(
        start_gateway, tmp_path / "p", cert, options=[],
        config_toml=gateway_config("gw-late", relay.dsn(dsn), redis.url)))
    try:
        await asyncio.wait_for(attempts.wait(), 90)
        down.close()
        await down.wait_closed()
        await relay.start()  # PostgreSQL is back: the gateway's next attempt succeeds
        proxy = await starting
        assert any("retrying every" in line for line in proxy.lines)
        url = site.url("/dropper.html?late=1", True)
        assert await asyncio.to_thread(fetch_through, proxy, url) == DROPPER
        summary = await asyncio.to_thread(proxy.wait_for_scan, url)
        assert summary["threat_level"] == "MALICIOUS"
    finally:
        started = (await asyncio.gather(starting, return_exceptions=True))[0]
        if not isinstance(started, BaseException):
            await asyncio.to_thread(started.stop)
        await relay.stop()
