"""A scan that cannot finish within the block budget lets the response through and says so."""

from __future__ import annotations

import pytest
from proxy_support import DROPPER, Upstream, default_routes, make_self_signed, start_gateway

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
    # the scan went on after the response left: its verdict is in the history
    summary = gw.wait_for_scan(url)
    assert summary["threat_level"] == "MALICIOUS" and summary["blocked"] is False
