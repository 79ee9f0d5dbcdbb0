"""Known-verdict lookups (``POST /api/v1/verdicts/lookup``'s store query) against a large history.

Fills a history with ``--scans`` completed scans (pages and scripts, distinct URLs and bodies),
then times lookups of 20 script URLs + 20 sha256s (half known, half unknown) straight on the
store, which is what the endpoint awaits: p50 and p99 over ``--rounds``. SQLite by default;
``--postgres`` runs the same on a fresh database of the tests' PostgreSQL server too
(``MALWARESNIPPER_TEST_POSTGRES_DSN``). Goal: a lookup of 20 URLs in
a few milliseconds (each item one index seek), not growing with the history.

    python3 benchmarks/lookup_bench.py [--scans 20000] [--rounds 200] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from malwaresnipper.engine.lists import url_key
from malwaresnipper.server.store import NewScan, ScanResult, SqliteScanStore

TESTS = Path(__file__).resolve().parents[1] / "tests"


async def fill(store: Any, n: int) -> list[tuple[str, str]]:
    """``n`` completed scans; returns (url, sha256) of each."""
    now = time.time() - n
    items = []
    for i in range(n):
        url = f"https://cdn{i % 97}.example/{i}/app.js"
        sha = hashlib.sha256(f"body {i}".encode()).hexdigest()
        items.append((url, sha))
        store.insert_scan(NewScan(scan_id=f"b{i}", ts=now + i, url=url, domain=f"cdn{i % 97}.example", title=None,
                                  method="PROXY", content_hash=f"h{i}", body_sha256=sha))
        store.complete_scan(ScanResult(scan_id=f"b{i}", status="complete", risk_score=5.0, threat_level="BENIGN",
                                       classification="benign", blocked=False, duration_ms=1.0,
                                       verdict={"risk_score": 5.0, "threat_level": "BENIGN"},
                                       indicators=[{"id": "x.y", "title": "t", "category": "c", "severity": "INFO"}]))
        if i % 1000 == 999:
            await store.flush()
    await store.flush()
    return items


async def measure(name: str, store: Any, n: int, rounds: int) -> None:
    t0 = time.perf_counter()
    items = await fill(store, n)
    filled = time.perf_counter() - t0
    known = items[:: max(1, n // 10)][:10]
    urls = [url_key(u) for u, _ in known] + [url_key(f"https://nowhere.example/{i}.js") for i in range(10)]
    shas = [s for _, s in known] + [hashlib.sha256(f"unknown {i}".encode()).hexdigest() for i in range(10)]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        by_url, by_sha = await store.lookup_verdicts(urls, shas)
        times.append((time.perf_counter() - start) * 1000)
        assert len(by_url) == 10 and len(by_sha) == 10, (len(by_url), len(by_sha))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{name}: {n} scans (filled in {filled:.1f} s); lookup of 20 URLs + 20 sha256s: "
          f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms over {rounds} rounds")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteScanStore(Path(tmp) / "h.sqlite3")
        await store.open()
        try:
            await measure("sqlite", store, args.scans, args.rounds)
        finally:
            await store.close()
    if args.postgres:
        sys.path.insert(0, str(TESTS))
        from support_postgres import fresh_database  # type: ignore[import-not-found]

        from malwaresnipper.server.store_postgres import PostgresScanStore

        async with fresh_database() as dsn:
            pg = PostgresScanStore(dsn)
            await pg.open()
            try:
                await measure("postgres", pg, args.scans, args.rounds)
            finally:
                await pg.close()


if __name__ == "__main__":
    asyncio.run(main())
