"""History, lists, the token and the event log survive a restart; a SIGKILL under load loses no
acknowledged scan and leaves a database that passes SQLite's integrity check."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time

import aiohttp
import pytest
from helpers.api import Gateway, small_page

pytestmark = pytest.mark.integration


async def test_restart_keeps_history_lists_token_and_seq(tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = Gateway(tmp_path_factory.mktemp("gw-restart"))
    gw.start()
    try:
        token_file = gw.home / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        client = await gw.events()
        async with aiohttp.ClientSession() as s:
            ids = []
            for i in range(4):
                _, body = await gw.call(s, "POST", "/api/v1/scans?wait=true", small_page(f"keep{i}"))
                ids.append(body["scan_id"])
            await gw.call(s, "POST", "/api/v1/lists/allow", {"entry": "trusted.example", "note": "ours"})
            _, stats_before = await gw.call(s, "GET", "/api/v1/stats")
        before = [m for m in await client.until_complete(set(ids)) if m["type"] == "event"]
        await client.close()
        token = gw.token
    finally:
        assert gw.stop() == 0  # a clean SIGTERM shutdown

    gw.start()
    try:
        assert gw.token == token
        async with aiohttp.ClientSession() as s:
            _, scans = await gw.call(s, "GET", "/api/v1/scans?q=shopkeep")
            assert {i["scan_id"] for i in scans["items"]} == set(ids)
            assert all(i["status"] == "complete" for i in scans["items"])
            _, stats_after = await gw.call(s, "GET", "/api/v1/stats")
            assert stats_after["total"] == stats_before["total"]
            assert stats_after["totals_by_level"] == stats_before["totals_by_level"]
            _, allow = await gw.call(s, "GET", "/api/v1/lists/allow")
            assert [(i["entry"], i["note"]) for i in allow["items"]] == [("trusted.example", "ours")]
            # The whole log replays from seq 0, byte-identical apart from the replay flag.
            replay = await gw.events(last_seq=0)
            assert replay.snapshot["seq"] == before[-1]["seq"]
            replayed = [await replay.recv() for _ in range(before[-1]["seq"])]
            tail = replayed[-len(before):]
            assert [{k: v for k, v in m.items() if k != "replay"} for m in tail] == before
            # New events continue the sequence.
            _, new = await gw.call(s, "POST", "/api/v1/scans", small_page("after-restart"))
            fresh = [m for m in await replay.until_complete({new["scan_id"]}) if m["type"] == "event"]
            assert fresh[0]["seq"] == before[-1]["seq"] + 1
            await replay.close()
    finally:
        gw.stop()


async def test_sigkill_under_load_keeps_every_acknowledged_scan(tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = Gateway(tmp_path_factory.mktemp("gw-kill"), config="[server]\nrate_limit_per_minute = 0\n")
    gw.start()
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def hammer(worker: int, s: aiohttp.ClientSession) -> None:
        i = 0
        while not stop.is_set():
            try:
                status, body = await gw.call(s, "POST", "/api/v1/scans", small_page(f"kill{worker}-{i}"))
            except (TimeoutError, aiohttp.ClientError):
                return  # the gateway died mid-request: that one was not acknowledged
            if status == 202:
                acknowledged.append(body["scan_id"])
            i += 1

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        tasks = [asyncio.create_task(hammer(w, s)) for w in range(8)]
        deadline = time.monotonic() + 10
        while len(acknowledged) < 150 and time.monotonic() < deadline:  # noqa: ASYNC110 - a count, not an event
            await asyncio.sleep(0.05)
        gw.kill()  # SIGKILL while requests, scans and writes are in flight
        stop.set()
        await asyncio.gather(*tasks)
    assert len(acknowledged) >= 50, gw.log_tail()

    db = gw.home / "history.sqlite3"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT scan_id FROM scans")}
        max_seq = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    finally:
        conn.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged scans were lost"

    gw.start()  # reopens cleanly
    try:
        async with aiohttp.ClientSession() as s:
            _, page = await gw.call(s, "GET", "/api/v1/scans?q=shopkill&limit=500")
            assert page["total"] == len(stored)
            statuses = {i["status"] for i in page["items"]}
            assert statuses <= {"complete", "interrupted", "failed"}  # nothing left "pending"
            client = await gw.events()
            assert client.snapshot["seq"] == max_seq
            _, new = await gw.call(s, "POST", "/api/v1/scans", small_page("after-kill"))
            fresh = [m for m in await client.until_complete({new["scan_id"]}) if m["type"] == "event"]
            assert fresh[0]["seq"] == max_seq + 1
            await client.close()
    finally:
        gw.stop()
