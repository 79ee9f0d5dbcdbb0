"""A scan that cannot finish within the block budget lets the response through and says so."""

from __future__ import annotations

import time

import pytest
from helpers.proxy import DROPPER, Upstream, default_routes, make_self_signed, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failopen")
    cert, key = make_self_signed(tmp)
    upstream = Upstream(default_routes(b"\0" * 1024))
    upstream.start(cert, key)
    # 1 ms: no real scan fits, so every scanned response meets the timeout path
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=1"])
    yield gw, upstream
    gw.stop()
    upstream.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_scan_over_budget_fails_open_and_still_records_the_verdict(setup, tls):
    gw, upstream = setup
    url = upstream.url(f"/dropper.html?tls={tls}", tls)
    with gw.session() as s:
        r = s.get(url, timeout=30)
    assert r.status_code == 200 and r.content == DROPPER
    assert r.headers["x-malwaresnipper"] == "unscanned; reason=timeout"
    gw.wait_for_log(f"{url} passed unscanned (timeout)")
    # the scan went on after the response left: its verdict is in the history, and so is the
    # pass itself (unscanned, reason timeout), never a BENIGN record
    deadline = time.monotonic() + 30
    mine: list[dict] = []
    while time.monotonic() < deadline:
        mine = [i for i in gw.api("/api/v1/scans?limit=200")["items"] if i["url"] == url]
        if any(i["threat_level"] == "MALICIOUS" for i in mine) and any(i["status"] == "unscanned" for i in mine):
            break
        time.sleep(0.2)
    verdict = next(i for i in mine if i["threat_level"] == "MALICIOUS")
    assert verdict["blocked"] is False and verdict["status"] == "complete"
    passed = next(i for i in mine if i["status"] == "unscanned")
    assert passed["threat_level"] == "UNKNOWN"
    detail = gw.api(f"/api/v1/scans/{passed['scan_id']}")
    assert "timeout" in detail["error"] and verdict["scan_id"] in detail["error"]
