"""Reports and overrides in the scan stores, on SQLite and PostgreSQL (the fixtures of test_store)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any
from pathlib import Path

from helpers.store import new_scan, result

from malwaresnipper.server.store import MIGRATIONS, ScanFilter, ScanStore, SqliteScanStore


async def test_reports_and_overrides_are_kept_with_their_scan(store: ScanStore) -> None:
    now = time.time()
    await store.insert_scan(new_scan(1, ts=now - 5, domain="bad.example"))
    await store.insert_scan(new_scan(2, ts=now, domain="fine.example"))
    await store.complete_scan(result(1, "MALICIOUS", 95.0))

    first = await store.add_report("s1", "safe", "blockpage", "our own <b>intranet</b>", gateway_id="gw-a")
    assert first is not None
    assert (first["scan_id"], first["verdict"], first["source"], first["url"], first["gateway_id"]) == (
        "s1", "safe", "blockpage", "https://bad.example/1", "gw-a")
    await store.add_report("s1", "dangerous", "dashboard")
    await store.add_override("s1", "proceed_once", "gateway")
    await store.add_override("s1", "always_allow", "extension")
    assert await store.add_report("nope", "safe", "api") is None
    assert await store.add_override("nope", "proceed_once", "gateway") is None

    record = await store.get_scan("s1")
    assert record is not None
    assert [(r["verdict"], r["source"], r["comment"]) for r in record["reports"]] == [
        ("safe", "blockpage", "our own <b>intranet</b>"), ("dangerous", "dashboard", "")]
    assert [(o["action"], o["source"]) for o in record["overrides"]] == [
        ("proceed_once", "gateway"), ("always_allow", "extension")]
    other = await store.get_scan("s2")
    assert other is not None and other["reports"] == [] and other["overrides"] == []

    items, _ = await store.list_scans(ScanFilter(), 50, 0)
    marks = {i["scan_id"]: i["feedback"] for i in items}
    assert marks == {"s1": {"safe": 1, "dangerous": 1, "overrides": 2},
                     "s2": {"safe": 0, "dangerous": 0, "overrides": 0}}
    assert {i["scan_id"]: i["feedback"] for i in await store.export_rows(ScanFilter(), 10)} == marks
    assert (await store.recent(10))[1]["feedback"] == marks["s1"]

    reports = await store.feedback_reports()
    assert [(r["verdict"], r["scan_threat_level"], r["url"]) for r in reports] == [
        ("safe", "MALICIOUS", "https://bad.example/1"), ("dangerous", "MALICIOUS", "https://bad.example/1")]
    assert await store.feedback_reports(since=time.time() + 60) == []


async def test_retention_removes_feedback_with_its_scan(store: ScanStore) -> None:
    now = time.time()
    await store.insert_scan(new_scan(1, ts=now - 40 * 86_400))
    await store.insert_scan(new_scan(2, ts=now))
    for scan_id in ("s1", "s2"):
        await store.add_report(scan_id, "safe", "api")
        await store.add_override(scan_id, "proceed_once", "gateway")
    assert await store.apply_retention(days=30, rows=0) == 1
    # the report on the old scan was filed today, and still goes with its scan
    assert [r["scan_id"] for r in await store.feedback_reports()] == ["s2"]
    record = await store.get_scan("s2")
    assert record is not None and len(record["overrides"]) == 1


async def test_version_3_file_gains_the_feedback_tables(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path)
    for version in range(3):
        conn.executescript(MIGRATIONS[version].replace("ms_reverse_domain(domain)", "domain"))
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO scans(scan_id, ts, url, method) VALUES ('old', 1.0, 'https://x.example/', 'PROXY')")
    conn.commit()
    conn.close()
    st = SqliteScanStore(path)
    await st.open()
    try:
        assert await st.add_report("old", "dangerous", "api") is not None
        record = await st.get_scan("old")
        assert record is not None and record["reports"][0]["verdict"] == "dangerous"
    finally:
        await st.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 6


async def test_pg_feedback_queries_use_the_scan_id_indexes(postgres_dsn: str) -> None:
    """The statements behind the detail view and the history marker, run as the store runs them,
    never fall back to a sequential scan of reports or overrides."""
    import psycopg

    from malwaresnipper.server import store_sql
    from malwaresnipper.server.store_postgres import PostgresScanStore, run_program

    st = PostgresScanStore(postgres_dsn)
    await st.open()
    try:
        await st.insert_scan(new_scan(1))
        await st.add_report("s1", "safe", "api")
        await st.add_override("s1", "proceed_once", "gateway")
    finally:
        await st.close()
    d = store_sql.POSTGRES
    programs = [store_sql.get_scan(d, "s1"),
                store_sql.with_feedback(d, [{"scan_id": "s1"}, {"scan_id": "s2"}])]

    def one(step: Any) -> Any:
        return (yield step)

    explained = []
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as c:
        await c.execute("SET enable_seqscan = off")
        for program in programs:
            reply: Any = None
            while True:
                try:
                    step = program.send(reply)
                except StopIteration:
                    break
                plan = "\n".join(r[0] for r in await (await c.execute("EXPLAIN " + step.sql, step.args)).fetchall())  # type: ignore[union-attr]  # a Run: EXPLAIN takes its args
                assert "Seq Scan" not in plan, (step.sql, plan)
                explained.append(step.sql)
                reply = await run_program(c, one(step))
    assert sum("reports" in sql for sql in explained) == 2 and sum("overrides" in sql for sql in explained) == 2
