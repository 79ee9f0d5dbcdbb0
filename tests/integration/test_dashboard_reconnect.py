"""After the gateway restarts, the page reconnects by itself and catches up using seq."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.dashboard import Gateway, capture, needs_chromium, open_dashboard, screenshot, wait_for, wait_js

pytestmark = [pytest.mark.integration, needs_chromium]


def test_reconnect_after_gateway_restart_loses_no_events(browser: Any, gateway: Gateway) -> None:
    context, page, watch = open_dashboard(browser, gateway)
    hellos: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: hellos.append(str(payload))))
    try:
        before = [gateway.submit(capture(f"https://before.example/{i}"), wait=True)["scan_id"] for i in range(3)]
        for scan_id in before:
            page.wait_for_selector(f'#feed-body .feed-row[data-scan-id="{scan_id}"][data-status=SCAN_COMPLETE]', timeout=5000)
        seq_before = max(e["seq"] for e in watch.events())

        # The gateway goes down: the page notices and keeps retrying. Chromium is also taken
        # offline so that it cannot reconnect until the scans below are done: they can only
        # reach the page through the replay from last_seq.
        context.set_offline(True)
        gateway.stop()
        page.wait_for_selector("#conn[data-state=offline]", timeout=10_000)
        screenshot(page, "dashboard-offline", full_page=False)
        gateway.start()
        missed = [gateway.submit(capture(f"https://while-away.example/{i}"), wait=True)["scan_id"] for i in range(5)]
        page.wait_for_timeout(1500)
        assert page.get_attribute("#conn", "data-state") != "online"
        assert all(page.locator(f'#feed-body .feed-row[data-scan-id="{s}"]').count() == 0 for s in missed)

        context.set_offline(False)
        page.wait_for_selector("#conn[data-state=online]", timeout=20_000)
        for scan_id in missed:
            page.wait_for_selector(f'#feed-body .feed-row[data-scan-id="{scan_id}"][data-status=SCAN_COMPLETE]', timeout=5000)

        # The page said where it stopped, and got exactly what it missed, replayed, in order.
        resumed = [h for h in hellos if '"hello"' in h and f'"last_seq":{seq_before}' in h.replace(" ", "")]
        assert resumed, hellos
        after = [gateway.submit(capture(f"https://after.example/{i}"))["scan_id"] for i in range(3)]
        for scan_id in after:
            page.wait_for_selector(f'#feed-body .feed-row[data-scan-id="{scan_id}"][data-status=SCAN_COMPLETE]', timeout=5000)
        wait_for(page, lambda: any(e["scan_id"] == after[-1] and e["status"] == "SCAN_COMPLETE" for e in watch.events()))
        events = watch.events()
        replayed = [e for e in events if e.get("replay")]
        assert {e["scan_id"] for e in replayed} == set(missed)
        assert all(e["seq"] > seq_before for e in replayed)
        seqs = sorted({e["seq"] for e in events})
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a seq is missing: an event was lost"
        statuses = {s: [e["status"] for e in events if e["scan_id"] == s] for s in missed}
        assert all(v[0] == "SCAN_STARTED" and v[-1] == "SCAN_COMPLETE" for v in statuses.values()), statuses
        rows = page.locator("#feed-body .feed-row").evaluate_all("rows => rows.map(r => r.dataset.scanId)")
        assert set(before + missed + after) <= set(rows)
        assert len(rows) == len(set(rows))  # replay did not duplicate rows
        status, stats = gateway.request("GET", "/api/v1/stats")
        wait_js(page, f"document.querySelector('#stat-total').dataset.value === '{stats['total']}'", timeout=5)
        assert not watch.errors, watch.errors
    finally:
        context.close()
