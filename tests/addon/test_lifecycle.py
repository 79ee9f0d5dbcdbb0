"""The lifecycle addon with the options addon in a taddons context: starting the real scan
services (store, bus, servers), waiting for a shared store that is down, counters, own traffic.

The services run over an idle pool (no scans happen here; the scanning tests use real engines)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import taddons

from malwaresnipper.addon import lifecycle as lifecycle_module
from malwaresnipper.addon.lifecycle import Lifecycle
from malwaresnipper.addon.options import GatewayOptions
from malwaresnipper.server.service import ScanService
from helpers.addons import IdlePool, done, running
from helpers.postgres import TcpProxy


def addons(pool: Any = None) -> tuple[GatewayOptions, Lifecycle]:
    options = GatewayOptions()
    return options, Lifecycle(options, pool=pool or IdlePool())


async def test_running_configures_an_addon_that_was_never_configured(tmp_path: Path) -> None:
    """mitmproxy calls configure only on a change: an embedding master that changes no option
    must still start the services (the README's `malwaresnipper run` was such a master)."""
    options, life = addons()
    with taddons.context(options, life) as tctx:
        tctx.options.update(malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False,
                            malwaresnipper_workers=1)
        options.effective = None
        await running(life)
        try:
            assert options.effective is not None and life.service is not None
            assert life.start_error is None and not life.start_pending
        finally:
            await done(life)


async def test_the_services_start_with_the_pool_and_lists_and_stop_with_the_gateway(tmp_path: Path) -> None:
    pool = IdlePool()
    options, life = addons(pool)
    with taddons.context(options, life) as tctx:
        tctx.configure(options, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=True,
                       malwaresnipper_api_port=0, malwaresnipper_events_port=0)
        await running(life)
        try:
            assert pool.started, "the workers are started with the services, not on the first page"
            assert [s.version for s in pool.snapshots] == [life.lists.version], "the workers got the lists"
            api_port = int(life.services.api_url.rsplit(":", 1)[1].split("/")[0])
            # requests to the API's real (bound) port are the gateway's own traffic; elsewhere they are not
            assert life.is_own_traffic("127.0.0.1", api_port) and life.is_own_traffic("LOCALHOST", api_port)
            assert not life.is_own_traffic("example.com", api_port)
            assert life.service.proxy_address == ("127.0.0.1", 8080)
        finally:
            await done(life)
        assert pool.closed and life.service is None


async def test_background_tasks_are_awaited_and_counters_stored_on_stop(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lifecycle_module, "COUNTER_FLUSH_S", 0.05)
    options, life = addons()
    with taddons.context(options, life) as tctx:
        tctx.configure(options, malwaresnipper_data_dir=str(tmp_path / "data"), malwaresnipper_services=False)
        await running(life)
        service = life.service
        assert isinstance(service, ScanService)
        finished = asyncio.Event()

        async def work() -> None:
            await asyncio.sleep(0.2)
            finished.set()

        life.spawn(work())
        life.count("scanned_html", 2)
        for _ in range(100):  # the flush loop stores them
            if (await service.store.counters()).get("proxy_scanned_html") == 2:
                break
            await asyncio.sleep(0.05)
        assert (await service.store.counters())["proxy_scanned_html"] == 2
        life.count("scanned_html")
        await done(life)
        assert finished.is_set(), "the gateway waits (briefly) for its background work"
        assert life.counters["scanned_html"] == 3


@pytest.mark.parametrize(("mode", "fail_closed", "words"), [
    ("monitor", False, "pass unscanned (monitor mode)"),
    ("block", False, "marked X-MalwareSnipper: unscanned"),
    ("block", True, "blocked (block mode, fail_closed)"),
])
def test_the_unscanned_policy_is_said_in_words(mode: str, fail_closed: bool, words: str) -> None:
    options, life = addons()
    with taddons.context(options, life) as tctx:
        tctx.configure(options, malwaresnipper_mode=mode, malwaresnipper_fail_closed=fail_closed)
        assert words in life.unscanned_policy()


async def test_a_shared_store_down_at_start_is_waited_for_and_the_gateway_starts_when_it_is_back(
        tmp_path: Path, postgres_dsn: str, monkeypatch, caplog) -> None:
    monkeypatch.setattr(lifecycle_module, "START_RETRY_S", 0.2)
    relay = TcpProxy(postgres_dsn)
    await relay.start()
    await relay.stop()  # PostgreSQL "down": nothing listens on the relay's port
    config = tmp_path / "malwaresnipper.toml"
    config.write_text(f'[store]\nbackend = "postgres"\ndsn = "{relay.dsn(postgres_dsn)}"\n')
    options, life = addons()
    with taddons.context(options, life) as tctx, caplog.at_level(logging.WARNING, "malwaresnipper.gateway"):
        tctx.configure(options, malwaresnipper_config=str(config), malwaresnipper_data_dir=str(tmp_path / "data"),
                       malwaresnipper_services=False, malwaresnipper_mode="block")
        try:
            await running(life)
            assert life.service is None and life.start_pending and "unreachable" in (life.start_error or "")
            # a warning, not an error: mitmdump stops on an error logged while it starts
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert any("meanwhile responses pass unscanned" in r.getMessage() for r in caplog.records)
            await relay.start()
            for _ in range(300):
                if life.service is not None:
                    break
                await asyncio.sleep(0.05)
            assert life.service is not None and not life.start_pending and life.start_error is None
        finally:
            await done(life)
            await relay.stop()
