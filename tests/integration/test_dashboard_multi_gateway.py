"""One view of several gateways: the real dashboard (Chromium) on gateway A shows, live, the scans
that gateway B ran, through Redis Streams and PostgreSQL, and says which gateway ran each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.dashboard import Gateway, capture, miner_capture, needs_chromium, open_dashboard, screenshot, wait_js
from helpers.postgres import fresh_database_sync
from helpers.redis_server import RedisServer

pytestmark = [pytest.mark.integration, needs_chromium]

ROW = '#feed-body .feed-row[data-scan-id="{}"]'


def config(gateway_id: str, dsn: str, redis_url: str) -> str:
    return (f'[server]\ngateway_id = "{gateway_id}"\n[proxy]\nworkers = 1\n'
            f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n'
            f'[events]\nbackend = "redis"\nurl = "{redis_url}"\n')


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    tmp = tmp_path_factory.mktemp("two-gateways")
    redis = RedisServer(tmp / "redis")
    redis.start()
    try:
        with fresh_database_sync() as dsn:
            a = Gateway(tmp / "a", config=config("lab-a", dsn, redis.url), token="two-gateway-dashboard-token")
            b = Gateway(tmp / "b", config=config("lab-b", dsn, redis.url), token=a.token)
            a.start(timeout=60)
            try:
                b.start(timeout=60)
                try:
                    yield a, b
                finally:
                    b.stop()
            finally:
                a.stop()
    finally:
        redis.stop()


def fact(page: Any, label: str) -> str:
    """The text of a fact (``<dt>label</dt><dd>…</dd>``) in the scan detail."""
    return page.evaluate(
        "(label) => [...document.querySelectorAll('#detail dl.facts dt')]"
        ".find((dt) => dt.textContent === label)?.nextElementSibling?.textContent ?? null",
        label,
    )


def test_the_dashboard_on_a_shows_b_scans_live_and_names_the_gateway(browser: Any, two_gateways: Any) -> None:
    a, b = two_gateways
    context, page, watch = open_dashboard(browser, a)
    try:
        from_b = b.submit(miner_capture("https://movies.lab-b.example/watch", title="Seen by B"), wait=True)
        from_a = a.submit(capture("https://docs.lab-a.example/", title="Seen by A"), wait=True)
        for accepted, level in ((from_b, "MALICIOUS"), (from_a, "BENIGN")):
            page.wait_for_selector(ROW.format(accepted["scan_id"]) + "[data-status=SCAN_COMPLETE]", timeout=15_000)
            assert page.locator(ROW.format(accepted["scan_id"])).get_attribute("data-level") == level
        # Every event reached the page once, each tagged with the gateway that ran the scan.
        for accepted, gateway_id in ((from_b, "lab-b"), (from_a, "lab-a")):
            events = watch.events(accepted["scan_id"])
            assert [e["status"] for e in events].count("SCAN_COMPLETE") == 1
            assert {e["gateway_id"] for e in events} == {gateway_id}
        wait_js(page, "document.querySelector('#stat-total').dataset.value === '2'")

        # The history (one PostgreSQL) and the detail say which gateway ran the scan.
        page.click("#tabs .tab[data-view=history]")
        page.click(f'#history-body tr[data-scan-id="{from_b["scan_id"]}"]')
        page.wait_for_selector("#detail[data-complete=true]")
        assert fact(page, "Gateway") == "lab-b"
        screenshot(page, "dashboard-two-gateways")
        assert not watch.errors and not watch.dialogs
    finally:
        context.close()
