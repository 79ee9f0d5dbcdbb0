"""With 10,000 scans in history and a burst of live scans, the page stays responsive.

The history is written before the gateway starts, through the gateway's own store class
(``SqliteScanStore.insert_scan``/``complete_scan``, the calls ``ScanService`` makes) with verdicts
the real engine computed: the file the gateway opens is the file it would have written itself,
without spending minutes rescanning 10,000 pages. The burst then goes through the real API,
engine and event stream.

Main-thread blocking is measured in the page with a ``longtask`` PerformanceObserver and a
requestAnimationFrame gap monitor; the bound asserted is generous (the figures are printed and
written to ``test-artifacts/dashboard-load.json``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from helpers.dashboard import ARTIFACTS, Gateway, capture, needs_chromium, open_dashboard, screenshot, wait_js

pytestmark = [pytest.mark.integration, needs_chromium]

HISTORY = 10_000
BURST_RATE = 50          # captures per second (each one is STARTED + one UPDATE per layer + COMPLETE)
BURST_SECONDS = 6

MONITOR = """
(() => {
  const m = window.__load = { longtasks: [], gaps: [], last: performance.now(), running: true };
  new PerformanceObserver((list) => { for (const e of list.getEntries()) m.longtasks.push(e.duration); })
    .observe({ type: 'longtask' });
  const tick = (now) => { m.gaps.push(now - m.last); m.last = now; if (m.running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
})();
"""


def engine_verdicts() -> list[dict[str, Any]]:
    """Real verdicts for a few kinds of page, from the real engine."""
    from malwaresnipper.engine.capture import Capture, Source
    from malwaresnipper.engine.config import EngineConfig
    from malwaresnipper.engine.engine import RiskEngine

    engine = RiskEngine(EngineConfig())
    pages = [
        ("https://news.example/article", "<html><body><p>Today's news</p><a href='/a'>more</a></body></html>", []),
        ("https://shop.example/cart", "<html><body><form action='/pay'><input name=q></form></body></html>", []),
        ("http://198.51.100.7/login.php", "<html><body><form action='http://198.51.100.7/x.php'>"
         "<input type=password name=p></form></body></html>", []),
        ("https://cdn-packed.example/p", "<html><body></body></html>",
         ["eval(function(p,a,c,k,e,d){e=function(c){return c};return p}('0 1',2,2,'a|b'.split('|'),0,{}));"
          "document.write(unescape('%3Ciframe%20src%3Dhttp%3A//x.example%20width%3D0%3E'));"]),
    ]
    verdicts = []
    for url, html, scripts in pages:
        cap = Capture.build(url, source=Source.EXTENSION, html=html, title="seed", scripts=scripts)
        verdicts.append(engine.scan(cap).to_dict())
    return verdicts


async def seed_history(db: Path, count: int) -> None:
    from malwaresnipper.server.store import NewScan, ScanResult, SqliteScanStore

    verdicts = engine_verdicts()
    store = SqliteScanStore(db)
    await store.open()
    now = time.time()
    try:
        for start in range(0, count, 1000):
            inserts, completes = [], []
            for i in range(start, min(count, start + 1000)):
                verdict = dict(verdicts[i % len(verdicts)])
                domain = f"site{i % 250}.example"
                url = f"https://{domain}/page/{i}"
                verdict["url"] = url
                scan_id = uuid.uuid4().hex
                inserts.append(store.insert_scan(NewScan(
                    scan_id=scan_id, ts=now - 20 * 3600 + i * (20 * 3600 / count), url=url, domain=domain,
                    title=f"Seeded page {i}", method="PROXY" if i % 3 else "EXTENSION", content_hash=f"seed{i}")))
                completes.append(ScanResult(
                    scan_id=scan_id, status="complete", risk_score=verdict["risk_score"],
                    threat_level=verdict["threat_level"], classification=verdict["classification"],
                    blocked=False, duration_ms=verdict["duration_ms"], verdict=verdict,
                    indicators=verdict["indicators"]))
            await asyncio.gather(*inserts)
            await asyncio.gather(*(store.complete_scan(r) for r in completes))
        await store.flush()
    finally:
        await store.close()


@pytest.fixture(scope="module")
def big_gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    gw = Gateway(tmp_path_factory.mktemp("gateway-load"))
    t0 = time.monotonic()
    # Its own thread: Playwright's sync API already runs an event loop in this one.
    failures: list[BaseException] = []

    def seed() -> None:
        try:
            asyncio.run(seed_history(gw.home / "history.sqlite3", HISTORY))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            failures.append(exc)

    seeder = threading.Thread(target=seed)
    seeder.start()
    seeder.join()
    if failures:
        raise failures[0]
    print(f"\nseeded {HISTORY} scans in {time.monotonic() - t0:.1f} s")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_page_stays_responsive_with_10000_scans_and_a_burst(browser: Any, big_gateway: Gateway) -> None:
    gw = big_gateway
    context, page, watch = open_dashboard(browser, gw)
    try:
        # The snapshot gives the totals of the whole history and the latest 50 scans.
        wait_js(page, f"document.querySelector('#stat-total').dataset.value === '{HISTORY}'", timeout=10)
        assert page.locator("#feed-body .feed-row").count() == 50
        assert page.is_hidden("#empty")

        page.evaluate(MONITOR)
        page.wait_for_timeout(500)
        baseline = page.evaluate("({n: window.__load.gaps.length})")
        assert baseline["n"] > 10, "requestAnimationFrame is not running; the monitor would measure nothing"

        # The burst: BURST_RATE captures per second through the API, paced from a thread while
        # the main thread keeps Playwright's event loop turning.
        submitted: list[str] = []
        errors: list[Any] = []

        def burst() -> None:
            t0 = time.monotonic()
            for i in range(BURST_RATE * BURST_SECONDS):
                due = t0 + i / BURST_RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                status, body = gw.request("POST", "/api/v1/scans", capture(f"https://burst{i % 40}.example/p/{i}", title=f"Burst {i}"))
                if status == 202:
                    submitted.append(body["scan_id"])
                else:
                    errors.append((status, body))

        started = time.monotonic()
        sender = threading.Thread(target=burst)
        sender.start()
        while sender.is_alive():
            page.wait_for_timeout(100)
        sender.join()
        send_s = time.monotonic() - started
        assert not errors, errors[:3]
        total = HISTORY + len(submitted)
        wait_js(page, f"document.querySelector('#stat-total').dataset.value === '{total}'", timeout=60)
        last = submitted[-200:]
        wait_js(page, "ids => ids.every(id => document.querySelector("
                "`#feed-body .feed-row[data-scan-id='${id}'][data-status=SCAN_COMPLETE]`))",
                last, timeout=60)
        drained_s = time.monotonic() - started
        figures = page.evaluate("""() => {
            const m = window.__load; m.running = false;
            const gaps = m.gaps.slice(1).sort((a, b) => a - b);
            const lt = m.longtasks;
            const q = (p) => gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))];
            return {
              frames: gaps.length, frame_gap_p50_ms: q(0.5), frame_gap_p99_ms: q(0.99), frame_gap_max_ms: gaps[gaps.length - 1],
              longtask_count: lt.length, longtask_max_ms: lt.length ? Math.max(...lt) : 0,
              longtask_total_ms: lt.reduce((a, b) => a + b, 0),
              total_blocking_ms: lt.reduce((a, b) => a + Math.max(0, b - 50), 0),
            };
        }""")
        events = len(watch.events())
        figures.update({
            "history_scans": HISTORY, "burst_captures": len(submitted), "burst_send_s": round(send_s, 2),
            "until_all_shown_s": round(drained_s, 2), "events_received": events,
            "events_per_s": round(events / drained_s, 1),
        })
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "dashboard-load.json").write_text(json.dumps(figures, indent=2))
        print("\ndashboard under load:", json.dumps(figures))
        screenshot(page, "dashboard-load", full_page=False)

        # The feed keeps the latest 200 rows, every one complete; the page is still usable.
        assert page.locator("#feed-body .feed-row").count() == 200
        assert page.locator("#feed-body .feed-row[data-status=SCAN_COMPLETE]").count() == 200
        assert page.get_attribute("#stat-total", "data-value") == str(total)
        assert page.text_content("#stat-total") == f"{total:,}"  # shown with a thousands separator
        t0 = time.monotonic()
        page.click("#tabs .tab[data-view=history]")
        wait_js(page, f"document.querySelector('#history-summary').textContent.includes('of {total:,} scans')")
        history_ms = (time.monotonic() - t0) * 1000
        print(f"history tab with {total} scans shown in {history_ms:.0f} ms")
        page.click("#history-next")
        wait_js(page, "document.querySelector('#history-summary').textContent.startsWith('51–100')")

        # Generous bounds (this 2-core machine also runs the gateway and its scan workers): no
        # main-thread task over a second, no frame gap over 1.5 s, and the main thread blocked
        # for under half of the burst's wall time. A page that re-rendered the feed per event
        # or froze on the burst fails all three.
        assert figures["longtask_max_ms"] < 1000, figures
        assert figures["frame_gap_max_ms"] < 1500, figures
        assert figures["total_blocking_ms"] < 0.5 * drained_s * 1000, figures
        assert not watch.errors, watch.errors
    finally:
        context.close()
