"""The SQLite store on a real file: schema versions, scans, events, lists, retention, reopening."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from malwaresnipper.server.store import MIGRATIONS, NewScan, ScanFilter, ScanResult, SqliteScanStore


def new_scan(i: int, *, ts: float | None = None, method: str = "EXTENSION", domain: str = "a.example") -> NewScan:
    return NewScan(scan_id=f"s{i}", ts=ts if ts is not None else time.time(), url=f"https://{domain}/{i}",
                   domain=domain, title=f"Title {i}", method=method, content_hash=f"h{i}")


def result(i: int, level: str = "BENIGN", score: float = 5.0, indicators: list | None = None) -> ScanResult:
    return ScanResult(scan_id=f"s{i}", status="complete", risk_score=score, threat_level=level,
                      classification="benign" if level == "BENIGN" else "phishing", blocked=level == "MALICIOUS",
                      duration_ms=12.0, verdict={"risk_score": score, "threat_level": level},
                      indicators=indicators or [])


@pytest.fixture
async def store(tmp_path: Path):
    st = SqliteScanStore(tmp_path / "h.sqlite3")
    await st.open()
    yield st
    await st.close()


async def test_schema_version_and_wal(tmp_path: Path) -> None:
    st = SqliteScanStore(tmp_path / "h.sqlite3")
    await st.open()
    await st.close()
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    newer = SqliteScanStore(tmp_path / "h.sqlite3")
    with pytest.raises(RuntimeError, match="newer than this MalwareSnipper"):
        await newer.open()


async def test_scans_filters_and_stats(store: SqliteScanStore) -> None:
    now = time.time()
    await store.insert_scan(new_scan(1, ts=now - 10))
    await store.insert_scan(new_scan(2, ts=now - 5, method="PROXY", domain="login.bad.example"))
    await store.insert_scan(new_scan(3, ts=now))
    phish = [{"id": "dom.password_form", "title": "Password form", "category": "phishing", "severity": "HIGH"}]
    await store.complete_scan(result(1))
    await store.complete_scan(result(2, "MALICIOUS", 91.0, phish))
    record = await store.get_scan("s2")
    assert record["status"] == "complete" and record["blocked"] is True
    assert record["verdict"] == {"risk_score": 91.0, "threat_level": "MALICIOUS"}
    pending = await store.get_scan("s3")
    assert pending["status"] == "pending" and pending["verdict"] is None
    assert await store.get_scan("nope") is None

    items, total = await store.list_scans(ScanFilter(), 2, 0)
    assert total == 3 and [i["scan_id"] for i in items] == ["s3", "s2"]
    assert (await store.list_scans(ScanFilter(level="MALICIOUS"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(method="PROXY"), 50, 0))[0][0]["scan_id"] == "s2"
    assert (await store.list_scans(ScanFilter(domain="bad.example"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(domain="bad"), 50, 0))[1] == 0  # whole labels only
    assert (await store.list_scans(ScanFilter(domain="ad.example"), 50, 0))[1] == 0
    assert (await store.list_scans(ScanFilter(since=now - 6, until=now - 1), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(q="Title 3"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(q="%"), 50, 0))[1] == 0  # LIKE wildcards are literal
    top = (await store.list_scans(ScanFilter(level="MALICIOUS"), 1, 0))[0][0]["top_indicator"]
    assert top == {"id": "dom.password_form", "title": "Password form", "severity": "HIGH"}

    stats = await store.stats(3600, 600)
    assert stats["total"] == 3
    assert stats["totals_by_level"]["MALICIOUS"] == 1 and stats["totals_by_level"]["BENIGN"] == 1
    assert stats["totals_by_source"] == {"PROXY": 1, "EXTENSION": 2}
    assert stats["blocked"] == 1
    assert sum(b["scans"] for b in stats["timeseries"]) == 3
    assert sum(b["threats"] for b in stats["timeseries"]) == 1
    assert stats["top_domains"] == [{"domain": "login.bad.example", "count": 1}]
    assert stats["top_indicators"][0]["id"] == "dom.password_form"
    assert stats["indicator_categories"] == [{"category": "phishing", "count": 1}]


async def test_events_log_and_seq(store: SqliteScanStore) -> None:
    assert await store.last_seq() == 0
    fut = store.append_events([(1, time.time(), "s1", '{"seq":1}'), (2, time.time(), "s1", '{"seq":2}')])
    fut.result(10)
    store.append_events([(3, time.time(), None, '{"seq":3}')]).result(10)
    assert await store.last_seq() == 3
    assert await store.events_after(1, 3) == ['{"seq":2}', '{"seq":3}']
    assert await store.events_after(0, 2, limit=1) == ['{"seq":1}']
    # A duplicate seq fails alone; the other operations of the batch still commit.
    bad = store.append_events([(3, time.time(), None, '{"seq":3}')])
    await store.incr_counter("ok", 2)
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(10)
    assert await store.counters() == {"ok": 2}


async def test_lists_and_counters(store: SqliteScanStore) -> None:
    await store.add_entry("allow", "good.example", "domain", "")
    await store.add_entry("allow", "good.example", "domain", "updated note")
    await store.add_entry("block", "https://bad.example/x", "url", "")
    assert [(i["entry"], i["note"]) for i in await store.list_entries("allow")] == [("good.example", "updated note")]
    assert await store.remove_entry("block", "https://bad.example/x") is True
    assert await store.remove_entry("block", "https://bad.example/x") is False
    await store.incr_counter("unscanned_too_large")
    await store.incr_counter("unscanned_too_large", 4)
    assert (await store.counters())["unscanned_too_large"] == 5


async def test_retention_by_rows_and_days(store: SqliteScanStore) -> None:
    now = time.time()
    old = now - 40 * 86_400
    for i in range(3):
        await store.insert_scan(new_scan(i, ts=old + i))
    for i in range(3, 13):
        await store.insert_scan(new_scan(i, ts=now - 100 + i))
    store.append_events([(i, old if i < 5 else now, f"s{i}", f'{{"seq":{i}}}') for i in range(1, 11)]).result(10)
    removed = await store.apply_retention(days=30, rows=0)
    assert removed == 3
    assert (await store.list_scans(ScanFilter(), 50, 0))[1] == 10
    assert await store.events_after(0, 100) == [f'{{"seq":{i}}}' for i in range(5, 11)]
    removed = await store.apply_retention(days=0, rows=4)
    items, total = await store.list_scans(ScanFilter(), 50, 0)
    assert total == 4 and removed == 6
    assert [i["scan_id"] for i in items] == ["s12", "s11", "s10", "s9"]
    assert await store.last_seq() == 10  # the counter survives retention


async def test_reopen_keeps_everything_and_marks_unfinished_scans(tmp_path: Path) -> None:
    st = SqliteScanStore(tmp_path / "h.sqlite3")
    await st.open()
    await st.insert_scan(new_scan(1))
    await st.insert_scan(new_scan(2))
    await st.complete_scan(result(1))
    st.append_events([(1, time.time(), "s1", '{"seq":1}')]).result(10)
    await st.add_entry("block", "bad.example", "domain", "")
    await st.close()

    again = SqliteScanStore(tmp_path / "h.sqlite3")
    await again.open()
    try:
        assert (await again.get_scan("s1"))["status"] == "complete"
        unfinished = await again.get_scan("s2")
        assert unfinished["status"] == "interrupted" and "stopped" in unfinished["error"]
        assert await again.last_seq() == 1
        assert [i["entry"] for i in await again.list_entries("block")] == ["bad.example"]
        assert await again.integrity_check() == "ok"
    finally:
        await again.close()


async def test_migration_from_version_1_keeps_rows_and_fills_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO scans(scan_id, ts, url, domain, method) VALUES"
                 " ('old', 1.0, 'https://x.shop.example/', 'x.shop.example', 'PROXY')")
    conn.commit()
    conn.close()
    st = SqliteScanStore(path)
    await st.open()
    try:
        items, total = await st.list_scans(ScanFilter(domain="shop.example"), 10, 0)
        assert total == 1 and items[0]["scan_id"] == "old"
        assert (await st.list_scans(ScanFilter(domain="hop.example"), 10, 0))[1] == 0
    finally:
        await st.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
