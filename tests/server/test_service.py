"""ScanService in-process with the real ScanPool: the proxy path, lists reaching the workers,
dedupe, the blocked flag, and failures recorded instead of raised."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest

from malwaresnipper.engine.capture import Capture
from malwaresnipper.server.service import ScanService, script_verdict
from malwaresnipper.server.store import ScanFilter
from malwaresnipper.settings import ProxySettings, Settings
from helpers.events import payload

EVENT_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "server" / "event_schema.json").read_text())


@pytest.fixture
async def service(tmp_path: Path):
    svc = ScanService(Settings(proxy=ProxySettings(workers=1), data_dir=str(tmp_path)))
    await svc.start()
    sub = svc.bus.subscribe(10_000)
    svc.test_sub = sub  # type: ignore[attr-defined]
    try:
        yield svc
    finally:
        await svc.stop()


def page(url: str, text: str = "hello") -> Capture:
    return Capture.build(url, source="proxy", html=f"<html><body><p>{text}</p></body></html>")


async def statuses_for(svc: ScanService, scan_id: str) -> list[dict]:
    import json

    out = []
    while True:
        _seq, frame = await asyncio.wait_for(svc.test_sub.get(), 30)  # type: ignore[attr-defined]
        message = json.loads(payload(frame))
        if message.get("scan_id") == scan_id:
            out.append(message)
            if message["status"] == "SCAN_COMPLETE":
                return out


def blocked(service: ScanService, url: str) -> bool:
    return service.lists.lookup(url).blocked is not None


def allowed(service: ScanService, url: str) -> bool:
    return service.lists.lookup(url).allowed is not None


async def test_proxy_submission_and_blocklist_reaching_the_workers(service: ScanService) -> None:
    assert not blocked(service, "https://login.evil-bank.example/x")
    await service.add_list_entry("block", "evil-bank.example", "domain", "test")
    assert blocked(service, "https://login.evil-bank.example/x")
    assert not blocked(service, "https://evil-bank.example.org/")
    job = await service.submit(page("https://login.evil-bank.example/x"), method="PROXY", blocks_until=math.inf)
    verdict = await job.verdict(timeout=30)
    assert verdict.threat_level.value == "MALICIOUS"  # the worker's reputation layer saw the API list
    events = await statuses_for(service, job.scan_id)
    assert [e["status"] for e in events][0] == "SCAN_STARTED" and events[-1]["blocked"] is True
    assert all(e["method"] == "PROXY" for e in events)
    record = await service.store.get_scan(job.scan_id)
    assert record["blocked"] is True and record["method"] == "PROXY"

    await service.remove_list_entry("block", "evil-bank.example")
    assert not blocked(service, "https://login.evil-bank.example/x")
    again = await service.submit(page("https://login.evil-bank.example/x"), method="PROXY")
    assert not again.deduplicated  # list changes invalidate earlier verdicts
    assert (await again.verdict(timeout=30)).threat_level.value != "MALICIOUS"


async def test_a_verdict_after_the_response_went_on_is_not_recorded_as_a_block_and_dedupe(
        service: ScanService) -> None:
    await service.add_list_entry("block", "bad.example", "domain")
    # the response waited until now, no longer: the verdict arrives after it went on unblocked
    job = await service.submit(page("https://bad.example/"), method="PROXY", blocks_until=time.monotonic())
    assert (await job.verdict(timeout=30)).is_malicious
    events = await statuses_for(service, job.scan_id)
    assert events[-1]["blocked"] is False
    dup = await service.submit(page("https://bad.example/"), method="EXTENSION")
    assert dup.deduplicated and dup.scan_id == job.scan_id
    assert (await dup.verdict(timeout=1)).is_malicious
    _items, total = await service.store.list_scans(ScanFilter(domain="bad.example"), 10, 0)
    assert total == 1


async def test_request_time_lists_match_as_the_engine_does(service: ScanService) -> None:
    """The proxy's request-time check and the engine read entries one way (engine/lists.py):
    a URL entry names its resource whatever the host's case or a default port, a domain entry
    its subdomains, and what the API stores is that normal form."""
    item = await service.add_list_entry("block", "https://Evil.example/Login", "url")
    assert item["entry"] == "https://evil.example/Login"
    assert blocked(service, "https://evil.example/Login") and blocked(service, "https://EVIL.example:443/Login")
    assert blocked(service, "http://evil.example/Login")  # a feed's http:// URL is the resource seen over https
    assert not blocked(service, "https://evil.example/login") and not blocked(service, "https://evil.example/")
    await service.add_list_entry("allow", "https://intranet.example/app", "url")
    await service.add_list_entry("allow", "*.Corp.Example.", "domain")
    assert {i["entry"] for i in service.list_items("allow")} == {"https://intranet.example/app", "corp.example"}
    assert allowed(service, "https://intranet.example/app") and not allowed(service, "https://intranet.example/other")
    assert allowed(service, "https://a.b.corp.example/") and allowed(service, "https://corp.example/")
    assert not allowed(service, "https://notcorp.example/") and not allowed(service, "not a url")
    # what the scan worker's reputation layer says about the same address
    verdict = await (await service.submit(page("https://EVIL.example/Login"), method="EXTENSION")).verdict(timeout=30)
    assert verdict.is_malicious and any(i.id == "reputation.blocklisted_url" for i in verdict.indicators)


async def test_a_block_beats_an_allow_at_request_time_as_in_the_engine(service: ScanService) -> None:
    await service.add_list_entry("allow", "shop.example", "domain")
    await service.add_list_entry("block", "https://shop.example/skimmer.js", "url")
    lookup = service.lists.lookup("https://shop.example/skimmer.js")
    assert lookup.blocked is not None and lookup.allowed is None
    assert allowed(service, "https://shop.example/cart")


async def test_every_list_change_is_a_new_version_and_ends_dedupe(service: ScanService) -> None:
    before = service.lists.version
    first = await service.submit(page("https://versions.example/"), method="EXTENSION")
    await first.verdict(timeout=30)
    assert first.lists_version == before
    assert (await service.submit(page("https://versions.example/"), method="EXTENSION")).deduplicated
    await service.add_list_entry("allow", "unrelated.example", "domain")
    assert service.lists.version == before + 1 and service.lists.snapshot.version == before + 1
    again = await service.submit(page("https://versions.example/"), method="EXTENSION")
    assert not again.deduplicated and again.lists_version == before + 1
    await service.remove_list_entry("allow", "Unrelated.Example")  # removed by its normal form
    assert service.lists.version == before + 2 and service.list_items("allow") == []


class BrokenPool:
    """Stands in for a pool whose worker died: the service must record, not raise."""

    queue_depth = 0

    async def scan(self, capture, progress=None):
        raise RuntimeError("worker died (exit code -9)")

    def update_lists(self, snapshot) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_failed_scan_is_recorded_and_announced(tmp_path: Path) -> None:
    svc = ScanService(Settings(data_dir=str(tmp_path)), pool=BrokenPool())
    await svc.start()
    sub = svc.bus.subscribe(100)
    svc.test_sub = sub  # type: ignore[attr-defined]
    try:
        job = await svc.submit(page("https://x.example/"), method="EXTENSION")
        with pytest.raises(RuntimeError, match="worker died"):
            await job.verdict(timeout=10)
        events = await statuses_for(svc, job.scan_id)
        assert events[-1]["threat_level"] == "UNKNOWN" and "worker died" in events[-1]["error"]
        await svc.store.flush()
        record = await svc.store.get_scan(job.scan_id)
        assert record["status"] == "failed" and "worker died" in record["error"]
        again = await svc.submit(page("https://x.example/"), method="EXTENSION")
        assert not again.deduplicated  # a failure is not reused
    finally:
        await svc.stop()


async def test_an_unscanned_pass_is_recorded_with_its_reason_never_as_benign(service: ScanService) -> None:
    capture = Capture.build("https://big.example/bundle.js", source="proxy")
    scan_id = await service.record_unscanned(capture, "too_large", detail="7000000 bytes over the cap")
    events = await statuses_for(service, scan_id)
    assert [e["status"] for e in events] == ["SCAN_STARTED", "SCAN_COMPLETE"]
    assert events[-1]["threat_level"] == "UNKNOWN" and "too_large" in events[-1]["error"]
    for _ in range(100):
        record = await service.store.get_scan(scan_id)
        if record and record["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert record["status"] == "unscanned" and record["verdict"] is None
    assert "too_large" in record["error"] and "7000000 bytes" in record["error"]
    assert 'malwaresnipper_unscanned_total{reason="too_large"} 1' in service.metrics.render()


async def test_a_site_whose_scans_keep_timing_out_is_quarantined(tmp_path):
    from malwaresnipper.server import service as service_module

    svc = service_module.ScanService(Settings(data_dir=str(tmp_path)), pool=object())
    assert svc.quarantined("https://slow.example/a") is None
    svc._note_timeout("www.slow.example")
    assert svc.quarantined("https://slow.example/a") is None, "one timeout is not a pattern"
    svc._note_timeout("cdn.slow.example")
    reason = svc.quarantined("https://other.slow.example/b")
    assert reason and "slow.example" in reason and "timeout" in reason
    assert svc.quarantined("https://phish.example/") is None
    svc._quarantine["slow.example"] = 0.0  # expired
    assert svc.quarantined("https://slow.example/a") is None


class TimingOutPool(BrokenPool):
    """A pool whose scans time out, after running (slow content) or while queued (load)."""

    timeout_s = 5.0

    def __init__(self, ran_s: float) -> None:
        self.ran_s = ran_s

    async def scan(self, capture, progress=None):
        from malwaresnipper.server.scanner import ScanTimeout

        raise ScanTimeout("scan exceeded 5.0 s", self.ran_s)


@pytest.mark.parametrize(("ran_s", "quarantined"), [(4.9, True), (0.0, False)], ids=["ran-long", "queued"])
async def test_timed_out_scans_are_failed_records_and_only_long_runs_count_against_the_site(
        tmp_path: Path, ran_s: float, quarantined: bool) -> None:
    svc = ScanService(Settings(data_dir=str(tmp_path)), pool=TimingOutPool(ran_s))
    await svc.start()
    try:
        for i in range(2):
            job = await svc.submit(page(f"https://slow.example/{i}"), method="PROXY")
            with pytest.raises(Exception, match="exceeded"):
                await job.verdict(timeout=10)
            await svc.store.flush()
            record = await svc.store.get_scan(job.scan_id)
            # never BENIGN: failed, level UNKNOWN, and the history says why
            assert record["status"] == "failed" and record["verdict"] is None
            assert record["error"].startswith("timeout:")
        items, _ = await svc.store.list_scans(ScanFilter(), 10, 0)
        assert {i["threat_level"] for i in items} == {"UNKNOWN"}
        assert (svc.quarantined("https://slow.example/next") is not None) is quarantined
    finally:
        await svc.stop()


class TimeoutNamedPool(BrokenPool):
    """A pool whose scan fails with an error that is not the pool's timeout, though its name says
    "timeout" (a socket or asyncio timeout inside the engine, say)."""

    timeout_s = 5.0

    async def scan(self, capture, progress=None):
        raise TimeoutError("a timeout that is not the pool's")


async def test_a_failure_is_classified_by_type_not_by_its_name(tmp_path: Path) -> None:
    """Only the pool's ScanTimeout is a timeout (and counts against the site); any other error,
    whatever its class is called, is a failure."""
    svc = ScanService(Settings(data_dir=str(tmp_path)), pool=TimeoutNamedPool())
    await svc.start()
    try:
        for i in range(2):
            job = await svc.submit(page(f"https://named.example/{i}"), method="PROXY")
            with pytest.raises(TimeoutError, match="not the pool's"):
                await job.verdict(timeout=10)
            await svc.store.flush()
            record = await svc.store.get_scan(job.scan_id)
            assert record["status"] == "failed" and record["error"].startswith("failed:"), record["error"]
        assert svc.quarantined("https://named.example/next") is None
    finally:
        await svc.stop()


async def next_message(svc: ScanService, match: object) -> dict:
    """The next event for which ``match(message)`` is true."""
    import json

    while True:
        _seq, frame = await asyncio.wait_for(svc.test_sub.get(), 30)  # type: ignore[attr-defined]
        message = json.loads(payload(frame))
        if match(message):  # type: ignore[operator]
            return message


async def test_a_malicious_script_re_judges_its_page(service: ScanService) -> None:
    """Issue 16: the page that loads a MALICIOUS script is re-judged with it (at least SUSPICIOUS,
    engine.malicious_script, scripts blocked when the script was replaced), announced as a
    SCAN_UPDATE of layer "scripts" that the event schema accepts; lookups find both by URL and sha256."""
    import jsonschema

    shop = await service.submit(page("https://shop.test/checkout", "Pay here"), method="PROXY", blocks_until=math.inf)
    assert (await shop.verdict(timeout=30)).threat_level.value == "BENIGN"
    await service.add_list_entry("block", "https://cdn.skim.test/pay.js", "url", "test")
    skim = Capture.build("https://cdn.skim.test/pay.js", source="proxy",
                         scripts=[{"url": "https://cdn.skim.test/pay.js", "text": "var x = 1;", "inline": False}],
                         page_url="https://shop.test/checkout")
    job = await service.submit(skim, method="PROXY", blocks_until=math.inf, page_scan_id=shop.scan_id)
    assert (await job.verdict(timeout=30)).is_malicious
    update = await next_message(service, lambda m: m.get("scan_id") == shop.scan_id and m.get("rejudged"))
    jsonschema.validate({**update, "seq": 1}, EVENT_SCHEMA)
    assert update["status"] == "SCAN_UPDATE" and update["layer"] == "scripts" and update["progress"] == 100
    assert update["threat_level"] == "SUSPICIOUS" and update["scripts_blocked"] is True
    assert update["script_scan_id"] == job.scan_id
    record = await service.store.get_scan(shop.scan_id)
    assert record["scripts_blocked"] is True and record["blocked"] is False
    assert record["verdict"]["threat_level"] == "SUSPICIOUS"
    folded = next(i for i in record["verdict"]["indicators"] if i["id"] == "engine.malicious_script")
    assert "https://cdn.skim.test/pay.js" in folded["title"]
    sha = skim.scripts[0].sha256
    assert any(e["snippet"] == f"sha256 {sha}" for e in folded["evidence"])
    summary = next(s for s in (await service.store.list_scans(ScanFilter(), 10, 0))[0] if s["scan_id"] == shop.scan_id)
    assert summary["scripts_blocked"] is True and summary["top_indicator"]["id"] == "engine.malicious_script"

    # folding the same script again changes nothing and announces nothing new
    again = await service.fold_script(shop.scan_id, script_verdict(skim, job.scan_id, await job.verdict()),
                                      blocked=True)
    assert again is not None and again.threat_level.value == "SUSPICIOUS"
    assert sum(i.id == "engine.malicious_script" for i in again.indicators) == 1

    by_url, by_sha = await service.lookup(["http://cdn.skim.test/pay.js", "https://shop.test/checkout#top"], [sha])
    assert by_url["http://cdn.skim.test/pay.js"]["scan_id"] == job.scan_id
    assert by_url["http://cdn.skim.test/pay.js"]["threat_level"] == "MALICIOUS"
    assert by_url["https://shop.test/checkout#top"]["threat_level"] == "SUSPICIOUS"
    assert by_sha[sha]["scan_id"] == job.scan_id


async def test_a_script_verdict_for_an_unknown_page_changes_nothing(service: ScanService) -> None:
    from malwaresnipper.engine.verdict import ScriptVerdict

    assert await service.fold_script("no-such-scan", ScriptVerdict(url="https://x.test/a.js"), blocked=True) is None
