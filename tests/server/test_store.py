"""The scan stores on real backends: schema versions, scans, events, lists, retention, reopening.

Behaviour tests run on both SQLite (a file) and PostgreSQL (a fresh database per test, see
tests/helpers/postgres.py); the PostgreSQL ones skip with a reason when no server is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.postgres import TcpProxy, fresh_database
from helpers.store import StoreFactory, new_scan, result

from malwaresnipper.engine.lists import url_key
from malwaresnipper.server.store import (
    MIGRATIONS,
    NewScan,
    ScanFilter,
    ScanResult,
    ScanStore,
    SqliteScanStore,
    StoreUnavailable,
    open_store,
)
from malwaresnipper.settings import StoreSettings


def integrity_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    with contextlib.suppress(ImportError):
        import psycopg

        errors += (psycopg.IntegrityError,)
    return errors


async def committed(fut: Any) -> Any:
    """Await an ``append_events`` future without blocking the loop (the PG writer runs on it)."""
    return await asyncio.wait_for(asyncio.wrap_future(fut), 10)


# -- both backends ----------------------------------------------------------------------------


async def test_scans_filters_and_stats(store: ScanStore) -> None:
    now = time.time()
    await store.insert_scan(new_scan(1, ts=now - 10, gateway_id="gw-a"))
    await store.insert_scan(new_scan(2, ts=now - 5, method="PROXY", domain="login.bad.example", gateway_id="gw-b"))
    await store.insert_scan(new_scan(3, ts=now, gateway_id="gw-a"))
    phish = [{"id": "dom.password_form", "title": "Password form", "category": "phishing", "severity": "HIGH"}]
    await store.complete_scan(result(1))
    await store.complete_scan(result(2, "MALICIOUS", 91.0, phish))
    record = await store.get_scan("s2")
    assert record["status"] == "complete" and record["blocked"] is True and record["gateway_id"] == "gw-b"
    assert record["verdict"] == {"risk_score": 91.0, "threat_level": "MALICIOUS"}
    pending = await store.get_scan("s3")
    assert pending["status"] == "pending" and pending["verdict"] is None
    assert await store.get_scan("nope") is None

    items, total = await store.list_scans(ScanFilter(), 2, 0)
    assert total == 3 and [i["scan_id"] for i in items] == ["s3", "s2"]
    assert items[0]["gateway_id"] == "gw-a" and items[0]["blocked"] is False
    assert (await store.list_scans(ScanFilter(level="MALICIOUS"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(method="PROXY"), 50, 0))[0][0]["scan_id"] == "s2"
    assert (await store.list_scans(ScanFilter(domain="bad.example"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(domain="bad"), 50, 0))[1] == 0  # whole labels only
    assert (await store.list_scans(ScanFilter(domain="ad.example"), 50, 0))[1] == 0
    assert (await store.list_scans(ScanFilter(since=now - 6, until=now - 1), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(q="Title 3"), 50, 0))[1] == 1
    assert (await store.list_scans(ScanFilter(q="title 3"), 50, 0))[1] == 1  # ASCII case ignored, as LIKE
    assert (await store.list_scans(ScanFilter(q="%"), 50, 0))[1] == 0  # LIKE wildcards are literal
    assert [i["scan_id"] for i in (await store.list_scans(ScanFilter(gateway="gw-a"), 50, 0))[0]] == ["s3", "s1"]
    assert (await store.list_scans(ScanFilter(gateway="gw"), 50, 0))[1] == 0  # exact match
    top = (await store.list_scans(ScanFilter(level="MALICIOUS"), 1, 0))[0][0]["top_indicator"]
    assert top == {"id": "dom.password_form", "title": "Password form", "severity": "HIGH"}
    assert [i["scan_id"] for i in await store.export_rows(ScanFilter(method="EXTENSION"), 10)] == ["s3", "s1"]
    assert [i["scan_id"] for i in await store.recent(2)] == ["s3", "s2"]

    stats = await store.stats(3600, 600)
    assert stats["total"] == 3
    assert stats["totals_by_level"]["MALICIOUS"] == 1 and stats["totals_by_level"]["BENIGN"] == 1
    assert stats["totals_by_source"] == {"PROXY": 1, "EXTENSION": 2}
    assert stats["blocked"] == 1
    assert sum(b["scans"] for b in stats["timeseries"]) == 3
    assert sum(b["threats"] for b in stats["timeseries"]) == 1
    assert stats["top_domains"] == [{"domain": "login.bad.example", "count": 1, "threat_level": "MALICIOUS"}]
    assert stats["top_indicators"][0]["id"] == "dom.password_form"
    assert stats["indicator_categories"] == [{"category": "phishing", "count": 1}]


async def test_a_pages_resources_and_a_scripts_pages(store: ScanStore) -> None:
    """scan_links read both ways: the page lists its script and frame with their verdicts, sizes and
    hashes; the script names both pages that loaded it; a repeated link is kept once; retention
    removes links with their scans; history search finds a scan by its id."""
    now = time.time()
    for i in (1, 2, 3, 4):
        await store.insert_scan(new_scan(i, ts=now - 10 + i, method="PROXY"))
    await store.complete_scan(result(1))
    await store.complete_scan(result(2, "MALICIOUS", 91.0))
    await store.complete_scan(result(3, "BENIGN", 2.0))
    await store.link_resource("s1", "s2", "script", url="https://a.example/skim.js", size=1234, sha256="ab" * 32)
    await store.link_resource("s1", "s3", "frame", url="https://a.example/frame.html", size=99, sha256="cd" * 32)
    await store.link_resource("s1", "s2", "script", url="https://a.example/other.js", size=1, sha256="ef" * 32)
    await store.link_resource("s4", "s2", "script", url="https://a.example/skim.js", size=1234, sha256="ab" * 32)
    with pytest.raises(ValueError, match="kind"):
        store.link_resource("s1", "s3", "image")

    page = await store.get_scan("s1")
    assert page is not None
    assert [(r["scan_id"], r["kind"], r["url"], r["size"], r["sha256"], r["threat_level"], r["risk_score"])
            for r in page["resources"]] == [
        ("s2", "script", "https://a.example/2", 1234, "ab" * 32, "MALICIOUS", 91.0),
        ("s3", "frame", "https://a.example/3", 99, "cd" * 32, "BENIGN", 2.0),
    ]
    assert page["loaded_by"] == []
    script = await store.get_scan("s2")
    assert script is not None
    assert [(p["scan_id"], p["kind"]) for p in script["loaded_by"]] == [("s1", "page"), ("s4", "page")]
    assert script["resources"] == []

    items, total = await store.list_scans(ScanFilter(q="s3"), 10, 0)
    assert (total, [i["scan_id"] for i in items]) == (1, ["s3"])
    items, total = await store.list_scans(ScanFilter(q="s9"), 10, 0)
    assert total == 0

    assert await store.apply_retention(0, 2) == 2  # keeps s3 and s4
    script_after = await store.get_scan("s2")
    assert script_after is None
    kept = await store.get_scan("s4")
    # The link outlives the script's record (retention is by time): what the page got stays named.
    assert kept is not None
    assert [(r["scan_id"], r["url"], r["sha256"], r["status"]) for r in kept["resources"]] == [
        ("s2", "https://a.example/skim.js", "ab" * 32, None)]


async def test_full_export_carries_the_whole_verdict(store: ScanStore) -> None:
    await store.insert_scan(new_scan(1))
    indicators = [{"id": "dom.password_form", "title": "Password form", "category": "phishing", "severity": "HIGH"},
                  {"id": "url.risky_tld", "title": "Risky TLD", "category": "url", "severity": "LOW"}]
    await store.complete_scan(ScanResult(
        scan_id="s1", status="complete", risk_score=80.0, threat_level="MALICIOUS", classification="phishing",
        blocked=False, duration_ms=1.0, verdict={"risk_score": 80.0, "indicators": indicators}, indicators=indicators))
    short = await store.export_rows(ScanFilter(), 10)
    full = await store.export_rows(ScanFilter(), 10, full=True)
    assert "verdict" not in short[0] and short[0]["top_indicator"]["id"] == "dom.password_form"
    assert [i["id"] for i in full[0]["verdict"]["indicators"]] == ["dom.password_form", "url.risky_tld"]


async def test_same_ts_orders_by_insertion(store: ScanStore) -> None:
    for i in range(5):
        await store.insert_scan(new_scan(i, ts=1000.0))
    assert [i["scan_id"] for i in await store.recent(5)] == ["s4", "s3", "s2", "s1", "s0"]


async def test_events_log_and_seq(store: ScanStore) -> None:
    assert await store.last_seq() == 0
    await committed(store.append_events([(1, time.time(), "s1", '{"seq":1}'), (2, time.time(), "s1", '{"seq":2}')]))
    await committed(store.append_events([(3, time.time(), None, '{"seq":3}')]))
    assert await store.last_seq() == 3
    assert await store.events_after(1, 3) == ['{"seq":2}', '{"seq":3}']
    assert await store.events_after(0, 2, limit=1) == ['{"seq":1}']
    # A duplicate seq fails alone; the other operations of the batch still commit.
    seen: list[str] = []
    bad = store.append_events([(3, time.time(), None, '{"seq":3}')], on_commit=lambda: seen.append("bad"))
    good = store.append_events([(4, time.time(), None, '{"seq":4}')], on_commit=lambda: seen.append("good"))
    await store.incr_counter("ok", 2)
    with pytest.raises(integrity_errors()):
        await committed(bad)
    await committed(good)
    assert seen == ["good"]
    assert await store.counters() == {"ok": 2}
    assert await store.last_seq() == 4


async def test_write_order_is_call_order(store: ScanStore) -> None:
    """Writes queued without awaiting commit in call order (a complete never precedes its insert)."""
    futs = []
    for i in range(50):
        futs.append(store.insert_scan(new_scan(i)))
        futs.append(store.complete_scan(result(i, "SUSPICIOUS", 50.0)))
    await asyncio.gather(*futs)
    items, total = await store.list_scans(ScanFilter(level="SUSPICIOUS"), 100, 0)
    assert total == 50


async def test_lists_and_counters(store: ScanStore) -> None:
    await store.add_entry("allow", "good.example", "domain", "")
    await store.add_entry("allow", "good.example", "domain", "updated note")
    await store.add_entry("block", "https://bad.example/x", "url", "")
    assert [(i["entry"], i["note"]) for i in await store.list_entries("allow")] == [("good.example", "updated note")]
    assert await store.remove_entry("block", "https://bad.example/x") is True
    assert await store.remove_entry("block", "https://bad.example/x") is False
    await store.incr_counter("unscanned_too_large")
    await store.incr_counter("unscanned_too_large", 4)
    assert (await store.counters())["unscanned_too_large"] == 5
    assert store.available is True


async def test_retention_by_rows_and_days(store: ScanStore) -> None:
    now = time.time()
    old = now - 40 * 86_400
    for i in range(3):
        await store.insert_scan(new_scan(i, ts=old + i))
    for i in range(3, 13):
        await store.insert_scan(new_scan(i, ts=now - 100 + i))
    await committed(store.append_events([(i, old if i < 5 else now, f"s{i}", f'{{"seq":{i}}}') for i in range(1, 11)]))
    removed = await store.apply_retention(days=30, rows=0)
    assert removed == 3
    assert (await store.list_scans(ScanFilter(), 50, 0))[1] == 10
    assert await store.events_after(0, 100) == [f'{{"seq":{i}}}' for i in range(5, 11)]
    removed = await store.apply_retention(days=0, rows=4)
    items, total = await store.list_scans(ScanFilter(), 50, 0)
    assert total == 4 and removed == 6
    assert [i["scan_id"] for i in items] == ["s12", "s11", "s10", "s9"]
    assert await store.last_seq() == 10  # the counter survives retention


async def test_reopen_keeps_everything_and_marks_unfinished_scans(make_store: StoreFactory, backend: str) -> None:
    # PostgreSQL marks only its own gateway's unfinished scans (others may still be running).
    st = await make_store(gateway_id="gw-a")
    await st.insert_scan(new_scan(1, gateway_id="gw-a"))
    await st.insert_scan(new_scan(2, gateway_id="gw-a"))
    await st.complete_scan(result(1))
    await committed(st.append_events([(1, time.time(), "s1", '{"seq":1}')]))
    await st.add_entry("block", "bad.example", "domain", "")
    await st.close()

    again = await make_store(gateway_id="gw-a")
    assert (await again.get_scan("s1"))["status"] == "complete"
    unfinished = await again.get_scan("s2")
    assert unfinished["status"] == "interrupted" and "stopped" in unfinished["error"]
    assert await again.last_seq() == 1
    assert [i["entry"] for i in await again.list_entries("block")] == ["bad.example"]
    if backend == "sqlite":
        assert isinstance(again, SqliteScanStore)
        assert await again.integrity_check() == "ok"


async def test_completing_again_replaces_the_indicators(store: ScanStore) -> None:
    """A retried completion (PostgreSQL replays a batch whose COMMIT went unacknowledged) counts once."""
    await store.insert_scan(new_scan(1))
    two = [{"id": f"ind.{j}", "title": f"T{j}", "category": "phishing", "severity": "HIGH"} for j in range(2)]
    await store.complete_scan(result(1, "MALICIOUS", 90.0, two))
    await store.complete_scan(result(1, "MALICIOUS", 90.0, two[:1]))
    stats = await store.stats(3600, 600)
    assert stats["top_indicators"] == [{"id": "ind.0", "title": "T0", "category": "phishing", "count": 1}]
    assert stats["indicator_categories"] == [{"category": "phishing", "count": 1}]
    assert (await store.list_scans(ScanFilter(), 10, 0))[0][0]["top_indicator"]["id"] == "ind.0"


async def test_known_verdicts_by_url_key_and_sha256_and_scripts_blocked(store: ScanStore) -> None:
    """Schema 4: the newest COMPLETED scan of a normalised URL or a body sha256 is found (a pending
    one is not), and a page's "scripts blocked" is kept and shown in its summary and detail."""
    sha = "cd" * 32
    base = time.time() - 100
    await store.insert_scan(NewScan(scan_id="old", ts=base, url="https://cdn.evil.test/pay.js", domain="cdn.evil.test",
                                    title=None, method="PROXY", content_hash="h-old", body_sha256=sha))
    await store.complete_scan(result_of("old", "SUSPICIOUS", 50.0))
    await store.insert_scan(NewScan(scan_id="new", ts=base + 10, url="HTTPS://CDN.Evil.test:443/pay.js#x",
                                    domain="cdn.evil.test", title=None, method="PROXY", content_hash="h-new",
                                    body_sha256=sha))
    headline = [{"id": "signatures.skimmer", "title": "Sends card fields away", "category": "skimmer",
                 "severity": "CRITICAL"}]
    await store.complete_scan(result_of("new", "MALICIOUS", 95.0, headline))
    await store.insert_scan(NewScan(scan_id="pending", ts=base + 20, url="https://cdn.evil.test/pay.js",
                                    domain="cdn.evil.test", title=None, method="PROXY", content_hash="h-p",
                                    body_sha256=sha))
    key = url_key("http://cdn.evil.test/pay.js")  # the same resource over http or https
    by_url, by_sha = await store.lookup_verdicts([key, url_key("https://unknown.test/")], [sha, "ef" * 32])
    assert set(by_url) == {key} and set(by_sha) == {sha}
    for known in (by_url[key], by_sha[sha]):
        assert known["scan_id"] == "new" and known["threat_level"] == "MALICIOUS" and known["risk_score"] == 95.0
        assert known["headline"] == {"id": "signatures.skimmer", "title": "Sends card fields away",
                                     "severity": "CRITICAL"}
    await store.insert_scan(new_scan(7))
    page = result(7, "SUSPICIOUS", 41.0)
    page.scripts_blocked = True
    await store.complete_scan(page)
    assert (await store.get_scan("s7") or {})["scripts_blocked"] is True
    assert (await store.get_scan("new") or {})["scripts_blocked"] is False
    items, _ = await store.list_scans(ScanFilter(), 10, 0)
    assert {i["scan_id"]: i["scripts_blocked"] for i in items} == {"s7": True, "pending": False, "new": False,
                                                                     "old": False}


def result_of(scan_id: str, level: str, score: float, indicators: list | None = None) -> ScanResult:
    return ScanResult(scan_id=scan_id, status="complete", risk_score=score, threat_level=level,
                      classification="skimmer", blocked=False, duration_ms=3.0,
                      verdict={"risk_score": score, "threat_level": level}, indicators=indicators or [])


async def test_a_duplicate_scan_id_keeps_the_first_record(store: ScanStore, backend: str) -> None:
    """SQLite reports the duplicate; PostgreSQL ignores it (a replayed batch re-inserts its scans)."""
    await store.insert_scan(new_scan(1, domain="first.example"))
    if backend == "sqlite":
        with pytest.raises(integrity_errors()):
            await store.insert_scan(new_scan(1, domain="second.example"))
    else:
        await store.insert_scan(new_scan(1, domain="second.example"))
    items, total = await store.list_scans(ScanFilter(), 10, 0)
    assert total == 1 and items[0]["domain"] == "first.example"


async def test_another_gateways_list_change_reaches_the_watcher(backend: str, make_store: StoreFactory) -> None:
    """PostgreSQL: a list change made through another store (another gateway) calls the watcher.
    SQLite: one process owns the file, so there is nothing to watch and the watcher stays quiet."""
    mine, theirs = await make_store(), await make_store()
    changed = asyncio.Event()
    await mine.watch_lists(changed.set)
    await theirs.add_entry("blocklist", "evil.example", "domain", "from another gateway")
    if backend == "postgres":
        await asyncio.wait_for(changed.wait(), timeout=10)
    else:
        await asyncio.sleep(0.3)
        assert not changed.is_set()
    assert [e["entry"] for e in await mine.list_entries("blocklist")] == ["evil.example"]


# -- SQLite only ------------------------------------------------------------------------------


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
        assert total == 1 and items[0]["scan_id"] == "old" and items[0]["gateway_id"] == ""
        assert (await st.list_scans(ScanFilter(domain="hop.example"), 10, 0))[1] == 0
        assert (await st.list_scans(ScanFilter(gateway=""), 10, 0))[1] == 1  # '' is no filter
    finally:
        await st.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert "scans_gateway_ts" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()


def test_open_store_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from malwaresnipper.engine.errors import ConfigError

    st = open_store(StoreSettings(), tmp_path)
    assert isinstance(st, SqliteScanStore) and st.path == tmp_path / "history.sqlite3"
    monkeypatch.setenv("HOME", str(tmp_path))
    st = open_store(StoreSettings(path="~/elsewhere.sqlite3"), tmp_path / "unused")
    assert isinstance(st, SqliteScanStore) and st.path == tmp_path / "elsewhere.sqlite3"
    with pytest.raises(ConfigError, match="'sqlite', 'postgres'"):
        open_store(StoreSettings(backend="mysql"), tmp_path)
    pytest.importorskip("psycopg")
    pg = open_store(StoreSettings(backend="postgres", dsn="postgresql://x@127.0.0.1/db", pool_size=3,
                                  max_pending_writes=7), tmp_path)
    assert type(pg).__name__ == "PostgresScanStore"
    from malwaresnipper.server.store_postgres import PostgresScanStore

    assert isinstance(pg, PostgresScanStore)
    assert (pg.dsn, pg.pool_size, pg.max_pending_writes) == ("postgresql://x@127.0.0.1/db", 3, 7)


def test_open_store_without_psycopg_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from malwaresnipper.engine.errors import ConfigError

    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes "import psycopg" raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'malwaresnipper\[cluster\]'"):
        open_store(StoreSettings(backend="postgres"), tmp_path)


# -- PostgreSQL only --------------------------------------------------------------------------


def _pg_store(dsn: str, **kwargs: Any) -> Any:
    from malwaresnipper.server.store_postgres import PostgresScanStore

    return PostgresScanStore(dsn, **kwargs)


async def test_pg_same_results_as_sqlite(postgres_dsn: str, tmp_path: Path) -> None:
    """Identical rows give identical summaries, records and stats (orders, types, ties, bytes)."""
    lite = SqliteScanStore(tmp_path / "h.sqlite3")
    pg = _pg_store(postgres_dsn)
    await lite.open()
    await pg.open()
    try:
        now = time.time()
        domains = ["b.example", "B.example", "_x.example", "a-b.example", "a.example", "é.example", "a.example"]
        for st in (lite, pg):
            for i, dom in enumerate(domains):
                await st.insert_scan(new_scan(i, ts=now - 3000 + i * 400.5, domain=dom, gateway_id=f"g{i % 2}",
                                              method=("PROXY", "EXTENSION")[i % 2], title=f"Ünïcode {i}"))
            for i in range(len(domains) - 1):
                inds = [{"id": f"ind.{j}", "title": f"T{j}", "category": ("phishing", "Crypto", "_x")[j % 3],
                         "severity": "HIGH"} for j in range(i % 3 + 1)]
                await st.complete_scan(result(i, ("BENIGN", "SUSPICIOUS", "MALICIOUS")[i % 3], i * 10.0, inds))
        for flt in (ScanFilter(), ScanFilter(domain="example"), ScanFilter(q="ünïcode"), ScanFilter(q="_"),
                    ScanFilter(gateway="g1"), ScanFilter(level="SUSPICIOUS", since=now - 2000)):
            assert json.dumps(await lite.list_scans(flt, 50, 0)) == json.dumps(await pg.list_scans(flt, 50, 0)), flt
        for i in range(len(domains)):
            assert json.dumps(await lite.get_scan(f"s{i}")) == json.dumps(await pg.get_scan(f"s{i}"))
        a, b = await lite.stats(3600, 600), await pg.stats(3600, 600)
        if [x["t"] for x in a["timeseries"]] != [x["t"] for x in b["timeseries"]]:  # a bucket edge passed
            a, b = await lite.stats(3600, 600), await pg.stats(3600, 600)
        assert json.dumps(a) == json.dumps(b)
        assert sum(x["scans"] for x in b["timeseries"]) == len(domains)
    finally:
        await lite.close()
        await pg.close()


async def test_pg_migrations_run_once_when_two_gateways_start_together(postgres_dsn: str) -> None:
    import psycopg

    from malwaresnipper.server.store_postgres import PG_MIGRATIONS

    a, b = _pg_store(postgres_dsn), _pg_store(postgres_dsn)
    try:
        await asyncio.gather(a.open(), b.open())
        await a.insert_scan(new_scan(1))
        assert (await b.get_scan("s1"))["scan_id"] == "s1"
    finally:
        await a.close()
        await b.close()
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        rows = await (await conn.execute("SELECT version FROM schema_version")).fetchall()
        assert rows == [(len(PG_MIGRATIONS),)]


async def test_pg_newer_schema_is_refused(postgres_dsn: str) -> None:
    import psycopg

    from malwaresnipper.server.store_postgres import PG_MIGRATIONS

    st = _pg_store(postgres_dsn)
    await st.open()
    await st.close()
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute("UPDATE schema_version SET version = %s", (len(PG_MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer than this MalwareSnipper"):
        await _pg_store(postgres_dsn).open()


async def test_pg_open_marks_only_its_own_gateways_unfinished_scans(postgres_dsn: str) -> None:
    a = _pg_store(postgres_dsn, gateway_id="gw-a")
    await a.open()
    await a.insert_scan(new_scan(1))  # gets the store's gateway_id
    await a.insert_scan(new_scan(2, gateway_id="gw-b"))
    await a.close()
    nameless = _pg_store(postgres_dsn)  # no gateway_id: marks nothing
    await nameless.open()
    assert (await nameless.get_scan("s1"))["status"] == "pending"
    await nameless.close()
    again = _pg_store(postgres_dsn, gateway_id="gw-a")
    await again.open()
    try:
        assert (await again.get_scan("s1"))["status"] == "interrupted"
        assert (await again.get_scan("s1"))["gateway_id"] == "gw-a"
        assert (await again.get_scan("s2"))["status"] == "pending"  # gw-b's scan may still be running
    finally:
        await again.close()


async def test_pg_list_changes_reach_other_gateways_within_a_second(postgres_dsn: str) -> None:
    a, b = _pg_store(postgres_dsn), _pg_store(postgres_dsn)
    await a.open()
    await b.open()
    changed = asyncio.Event()
    calls: list[float] = []

    def on_change() -> None:
        calls.append(time.monotonic())
        changed.set()

    try:
        await a.watch_lists(on_change)
        await b.add_entry("allow", "good.example", "domain", "")
        await asyncio.wait_for(changed.wait(), 1.0)
        assert [i["entry"] for i in await a.list_entries("allow")] == ["good.example"]
        changed.clear()
        await b.remove_entry("allow", "good.example")
        await asyncio.wait_for(changed.wait(), 1.0)
        changed.clear()
        await b.incr_counter("x")  # not a list change: no notification
        await asyncio.sleep(0.3)
        assert not changed.is_set()
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    px = TcpProxy(postgres_dsn)
    await px.start()
    yield px
    await px.stop()


async def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_pg_writes_are_held_while_down_and_committed_when_back(
    postgres_dsn: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    st = _pg_store(proxy.dsn(postgres_dsn), read_timeout=1.0, health_interval=0.2, connect_timeout=1.0)
    direct = _pg_store(postgres_dsn)
    await st.open()
    await direct.open()
    try:
        await st.insert_scan(new_scan(0))
        await proxy.stop()
        futs = [st.insert_scan(new_scan(i)) for i in range(1, 6)]
        futs.append(asyncio.ensure_future(st.incr_counter("held", 3)))
        events = st.append_events([(1, time.time(), "s1", '{"seq":1}')])
        await _wait_for(lambda: not st.available)
        with pytest.raises(StoreUnavailable):
            await st.get_scan("s0")
        with pytest.raises(StoreUnavailable):
            await st.stats()
        await asyncio.sleep(0.5)
        assert not any(f.done() for f in futs) and not events.done()
        assert (await direct.list_scans(ScanFilter(), 50, 0))[1] == 1  # nothing half-written
        assert st.pending_writes == 7
        await proxy.start()
        await asyncio.wait_for(asyncio.gather(*futs), 15)
        await committed(events)
        assert st.available
        assert (await direct.list_scans(ScanFilter(), 50, 0))[1] == 6
        assert await direct.counters() == {"held": 3}  # applied once
        assert await direct.last_seq() == 1
        assert (await st.get_scan("s5"))["scan_id"] == "s5"  # reads work again
        messages = [(r.levelname, r.getMessage()) for r in caplog.records if "history store" in r.getMessage()]
        assert any(level == "ERROR" and "unreachable" in m for level, m in messages)
        assert any(level == "WARNING" and "reachable again" in m for level, m in messages)
    finally:
        await st.close()
        await direct.close()


async def test_pg_too_many_held_writes_fail_at_once(postgres_dsn: str, proxy: TcpProxy) -> None:
    st = _pg_store(proxy.dsn(postgres_dsn), max_pending_writes=3, health_interval=0.2, connect_timeout=1.0)
    await st.open()
    try:
        await proxy.stop()
        held = [st.insert_scan(new_scan(i)) for i in range(3)]
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="pending"):
            await st.insert_scan(new_scan(3))
        with pytest.raises(StoreUnavailable):
            await committed(st.append_events([(1, time.time(), None, "{}")]))
        assert time.monotonic() - started < 0.5
        await proxy.start()
        await asyncio.wait_for(asyncio.gather(*held), 15)
        assert (await st.list_scans(ScanFilter(), 10, 0))[1] == 3
    finally:
        await st.close()


async def test_pg_list_listener_reconnects_and_reports_a_possible_miss(postgres_dsn: str, proxy: TcpProxy) -> None:
    watched = _pg_store(proxy.dsn(postgres_dsn), health_interval=0.2, connect_timeout=1.0)
    other = _pg_store(postgres_dsn)
    await watched.open()
    await other.open()
    calls = 0

    def on_change() -> None:
        nonlocal calls
        calls += 1

    try:
        await watched.watch_lists(on_change)
        await proxy.stop()
        await other.add_entry("block", "bad.example", "domain", "")  # missed by the listener
        await asyncio.sleep(0.5)
        assert calls == 0
        await proxy.start()
        await _wait_for(lambda: calls == 1)  # one call after reconnecting
        await other.add_entry("block", "worse.example", "domain", "")
        await _wait_for(lambda: calls == 2, 1.0)
    finally:
        await watched.close()
        await other.close()


async def test_pg_close_while_down_fails_held_writes(postgres_dsn: str, proxy: TcpProxy) -> None:
    st = _pg_store(proxy.dsn(postgres_dsn), health_interval=0.2, connect_timeout=1.0, close_timeout=0.5)
    await st.open()
    await proxy.stop()
    held = st.insert_scan(new_scan(1))
    await st.close()
    with pytest.raises(StoreUnavailable):
        await held


async def test_pg_a_commit_whose_ack_was_lost_is_not_applied_twice(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """COMMIT reached the server but the connection dropped before the answer: the retry must see it."""
    from malwaresnipper.server import store_postgres

    st = _pg_store(postgres_dsn, health_interval=0.2)
    await st.open()
    original = store_postgres.PostgresScanStore._resolve
    lost_once: list[int] = []

    def resolve(self: Any, batch: Any, outcomes: Any) -> None:
        if not lost_once and any("incr_counter" in getattr(i.op, "__qualname__", "")
                                 for i in batch.items):
            lost_once.append(batch.number)
            self._conn.pgconn.finish()  # the connection dies right after the COMMIT
            raise store_postgres._ConnectionLost("simulated: COMMIT acknowledgement lost")
        original(self, batch, outcomes)

    monkeypatch.setattr(store_postgres.PostgresScanStore, "_resolve", resolve)
    try:
        await asyncio.wait_for(st.incr_counter("once", 5), 10)
        await st.insert_scan(new_scan(1))
        assert lost_once and await st.counters() == {"once": 5}
        assert any("had committed before the connection dropped" in r.getMessage() for r in caplog.records)
    finally:
        await st.close()


async def test_pg_filters_and_stats_can_use_indexes(postgres_dsn: str) -> None:
    """With sequential scans disabled, no filter or stats query falls back to one (collation, columns)."""
    import psycopg

    st = _pg_store(postgres_dsn)
    await st.open()
    await st.close()
    now = time.time()
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
        await c.execute("SET enable_seqscan = off")
        queries: list[tuple[str, list[Any]]] = []
        for flt in (ScanFilter(level="MALICIOUS"), ScanFilter(method="PROXY"), ScanFilter(domain="bad.example"),
                    ScanFilter(gateway="gw-a"), ScanFilter(since=now - 10)):
            where, args = flt.where("postgres")
            queries += [(f"SELECT COUNT(*) FROM scans{where}", args),
                        (f"SELECT * FROM scans{where} ORDER BY ts DESC, row_id DESC LIMIT 50", args)]
        queries += [("SELECT * FROM scans ORDER BY ts DESC, row_id DESC LIMIT 50", []),
                    ("SELECT threat_level, COUNT(*) FROM scans GROUP BY threat_level", []),
                    ("SELECT COUNT(*) FROM scans WHERE blocked", []),
                    ("SELECT COUNT(*) FROM scans WHERE ts >= %s", [now]),
                    ("SELECT category, COUNT(*) FROM scan_indicators GROUP BY category", []),
                    ("SELECT indicator_id, COUNT(*) FROM scan_indicators GROUP BY indicator_id", [])]
        for sql, args in queries:
            plan = "\n".join(r[0] for r in await (await c.execute("EXPLAIN " + sql, args)).fetchall())
            assert "Seq Scan" not in plan, (sql, plan)


async def test_pg_open_while_down_raises_store_unavailable(postgres_dsn: str, proxy: TcpProxy) -> None:
    await proxy.stop()
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        await _pg_store(proxy.dsn(postgres_dsn), connect_timeout=1.0).open()


async def test_pg_append_events_from_another_thread(postgres_dsn: str) -> None:
    st = _pg_store(postgres_dsn)
    await st.open()
    try:
        fut = await asyncio.to_thread(st.append_events, [(1, time.time(), None, '{"seq":1}')])
        await committed(fut)
        assert await st.last_seq() == 1
    finally:
        await st.close()


async def test_pg_every_scan_query_can_use_an_index(postgres_dsn: str) -> None:
    """The statements the stores really run (not copies): with sequential scans disabled, none of
    the reads of scans, indicators, events or lists falls back to one (collation, columns, the
    partial index of blocked scans)."""
    import psycopg

    from malwaresnipper.server import store_sql
    from malwaresnipper.server.store_postgres import run_program

    st = _pg_store(postgres_dsn)
    await st.open()
    await st.close()
    d, now = store_sql.POSTGRES, time.time()
    filters = (ScanFilter(), ScanFilter(level="MALICIOUS"), ScanFilter(method="PROXY"),
               ScanFilter(domain="bad.example"), ScanFilter(gateway="gw-a"), ScanFilter(since=now - 10))
    programs = [store_sql.list_scans(d, flt, 50, 0) for flt in filters] + [
        store_sql.export_rows(d, ScanFilter(level="SUSPICIOUS"), 100), store_sql.recent(d, 50),
        store_sql.get_scan(d, "s1"), store_sql.stats(d, now, 86_400, 3_600), store_sql.last_seq(d),
        store_sql.events_after(d, 0, 10, 100), store_sql.list_entries(d, "block"),
        store_sql.lookup_verdicts(d, ["//a.example/1"], ["ab" * 32]),
    ]

    def one(step: Any) -> Any:
        return (yield step)

    statements = 0
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
        await c.execute("SET enable_seqscan = off")
        for program in programs:
            reply = None
            while True:
                try:
                    step = program.send(reply)
                except StopIteration:
                    break
                assert not isinstance(step, store_sql.RunMany)  # reads: one statement each
                plan = "\n".join(r[0] for r in await (await c.execute("EXPLAIN " + step.sql, step.args)).fetchall())
                assert "Seq Scan" not in plan, (step.sql, plan)
                statements += 1
                reply = await run_program(c, one(step))
    assert statements == 2 * len(filters) + 15


async def test_pg_database_of_the_single_migration_releases_opens(postgres_dsn: str) -> None:
    """Earlier releases made the whole schema in one PostgreSQL migration and recorded version 1:
    such a database is taken as version 3, keeps its rows and ends up with a fresh one's schema."""
    import psycopg

    from malwaresnipper.server.store_postgres import PG_MIGRATIONS

    legacy_ddl = (Path(__file__).parent / "pg_schema_legacy_v1.sql").read_text()
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
        await c.execute(legacy_ddl)
        await c.execute("CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
        await c.execute("INSERT INTO schema_version VALUES (1, 1)")
        await c.execute("INSERT INTO scans(scan_id, ts, url, domain, rdomain, gateway_id, method, status, blocked)"
                        " VALUES ('old', 1.0, 'https://x.shop.example/', 'x.shop.example', 'example.shop.x',"
                        " 'gw-a', 'PROXY', 'complete', true)")
    st = _pg_store(postgres_dsn)
    await st.open()
    try:
        items, total = await st.list_scans(ScanFilter(domain="shop.example", gateway="gw-a"), 10, 0)
        assert total == 1 and items[0]["scan_id"] == "old" and items[0]["blocked"] is True
        await st.insert_scan(new_scan(1))
        await st.complete_scan(result(1, "MALICIOUS", 80.0))
        assert (await st.stats(3600, 600))["blocked"] == 2
    finally:
        await st.close()

    async def schema(dsn: str) -> tuple[list[Any], list[Any], list[Any]]:
        async with await psycopg.AsyncConnection.connect(dsn) as c:
            columns = await (await c.execute(
                "SELECT table_name, column_name, data_type, collation_name, is_nullable, column_default,"
                " is_identity FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
            )).fetchall()
            indexes = await (await c.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
            )).fetchall()
            version = await (await c.execute("SELECT version FROM schema_version")).fetchall()
            return columns, indexes, version

    async with fresh_database() as fresh_dsn:
        fresh = _pg_store(fresh_dsn)
        await fresh.open()
        await fresh.close()
        assert await schema(postgres_dsn) == await schema(fresh_dsn)
    assert (await schema(postgres_dsn))[2] == [(len(PG_MIGRATIONS),)]


async def test_pg_retention_forgets_writers_silent_for_a_week(postgres_dsn: str) -> None:
    """The exactly-once stamps of gateway processes long gone are removed; live ones stay."""
    import psycopg

    st = _pg_store(postgres_dsn)
    await st.open()
    try:
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
            await c.execute("INSERT INTO store_writers VALUES ('gone', 5, %s), ('recent', 7, %s)",
                            (time.time() - 8 * 86_400, time.time() - 6 * 86_400))
            await c.execute("UPDATE store_writers SET ts = %s WHERE writer_id NOT IN ('gone', 'recent')",
                            (time.time() - 30 * 86_400,))  # this store's own row: idle, but alive
            assert await st.apply_retention(days=0, rows=0) == 0
            rows = await (await c.execute("SELECT writer_id FROM store_writers ORDER BY writer_id")).fetchall()
        assert [r[0] for r in rows if r[0] in ("gone", "recent")] == ["recent"] and len(rows) == 2
    finally:
        await st.close()
