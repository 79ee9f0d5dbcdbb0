"""ScanService on the shared backends (real PostgreSQL, real Redis, the real ScanPool) when one of
them goes away: proxied pages are still scanned, API submissions are refused rather than
acknowledged and lost, and everything held is written once the service is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers.postgres import TcpProxy, fresh_database
from helpers.redis_server import RedisServer
from helpers.events import payload

from malwaresnipper.engine.capture import Capture
from malwaresnipper.server.events import Subscription
from malwaresnipper.server.store import StoreUnavailable
from malwaresnipper.server.service import ScanService
from malwaresnipper.settings import EventSettings, ProxySettings, ServerSettings, Settings, StoreSettings


def page(i: int) -> Capture:
    return Capture.build(f"https://outage{i}.example.org/", source="proxy",
                         html=f"<html><body><p>page {i}</p></body></html>")


def completed(sub: Subscription) -> set[str]:
    """The scan ids of the SCAN_COMPLETE events waiting in ``sub``."""
    messages = [json.loads(payload(frame)) for _seq, frame in sub.items]
    return {m["scan_id"] for m in messages if m.get("status") == "SCAN_COMPLETE"}


async def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[ScanService, TcpProxy, RedisServer]]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    async with fresh_database() as dsn:
        relay = TcpProxy(dsn)
        await relay.start()
        settings = Settings(
            proxy=ProxySettings(workers=1, dedupe_window_s=0),
            server=ServerSettings(gateway_id="gw-outage"),
            store=StoreSettings(backend="postgres", dsn=relay.dsn(dsn)),
            events=EventSettings(backend="redis", url=redis.url, stream="outage:events"),
            data_dir=str(tmp_path / "home"),
        )
        service = ScanService(settings)
        await service.start()
        try:
            yield service, relay, redis
        finally:
            if not relay.running:
                await relay.start()  # let the store flush what it holds
            await service.stop()
            await relay.stop()
            redis.stop()


async def test_postgres_down_proxy_scans_go_on_api_submissions_get_503_then_all_is_written(shared) -> None:
    service, relay, _redis = shared
    sub = service.bus.subscribe(10_000)
    await relay.stop()
    await wait_until(lambda: not service.store.available)
    assert service.health()["store"] == {"backend": "postgres", "available": False}

    # An API submission cannot be acknowledged: refused at once, not after a long wait.
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await service.submit(page(0), method="EXTENSION")
    assert time.monotonic() - started < 1.0

    # Proxied pages are still scanned (their verdicts arrive), and their events still flow.
    jobs = [await service.submit(page(i), method="PROXY") for i in range(1, 4)]
    verdicts = [await job.verdict(timeout=30) for job in jobs]
    assert all(v.threat_level.value == "BENIGN" for v in verdicts)
    assert service.store.pending_writes > 0

    await relay.start()
    await wait_until(lambda: service.store.available, timeout=20)
    await service.store.flush()
    for job in jobs:  # written once PostgreSQL was back, verdict included
        record = await service.store.get_scan(job.scan_id)
        assert record is not None and record["status"] == "complete"
        assert record["gateway_id"] == "gw-outage"
    await service.bus.flush()
    assert completed(sub) == {job.scan_id for job in jobs}


async def test_redis_down_scans_are_recorded_and_events_arrive_when_it_returns(shared) -> None:
    service, _relay, redis = shared
    sub = service.bus.subscribe(10_000)
    await asyncio.to_thread(redis.stop)
    jobs = [await service.submit(page(10 + i), method="EXTENSION") for i in range(3)]
    for job in jobs:
        await job.verdict(timeout=30)
        assert (await service.store.get_scan(job.scan_id))["status"] == "complete"  # acknowledged = stored
    await wait_until(lambda: not service.bus.health()["connected"])
    assert service.bus.health()["buffered"] > 0
    await asyncio.to_thread(redis.start)
    await asyncio.wait_for(service.bus.flush(), 30)
    assert completed(sub) >= {job.scan_id for job in jobs}
    assert service.bus.health()["buffered"] == 0 and service.bus.lost == 0


def test_unknown_backends_are_config_errors_naming_the_known_ones(tmp_path: Path) -> None:
    from malwaresnipper.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="'memory', 'redis'"):
        ScanService(Settings(events=EventSettings(backend="kafka"), data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="'sqlite', 'postgres'"):
        ScanService(Settings(store=StoreSettings(backend="mysql"), data_dir=str(tmp_path)))
