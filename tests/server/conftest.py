"""Fixtures of the server tests."""

from __future__ import annotations

import os
import uuid

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers.postgres import fresh_database
from helpers.store import StoreFactory

from malwaresnipper.server.store import ScanStore, SqliteScanStore


@pytest.fixture
async def shared_redis_stream():
    """(url, stream) on the shared Redis that scripts/services.sh starts; the keys are removed after."""
    url = os.environ.get("MALWARESNIPPER_TEST_REDIS_URL")
    if not url:
        pytest.skip("shared Redis not configured: set MALWARESNIPPER_TEST_REDIS_URL (scripts/services.sh does)")
    stream = f"test:{uuid.uuid4().hex}"
    yield url, stream
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    writers = [key async for key in client.scan_iter(match=f"{stream}:writer:*")]
    await client.delete(stream, f"{stream}:seq", *writers)
    await client.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_store(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Open stores on ONE history (one file, or one fresh database); all closed after the test.

    Keyword arguments go to PostgresScanStore (SQLite ignores them).
    """
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(fresh_database()) if backend == "postgres" else ""
        opened: list[ScanStore] = []

        async def make(**kwargs: Any) -> ScanStore:
            if backend == "postgres":
                from malwaresnipper.server.store_postgres import PostgresScanStore

                st: ScanStore = PostgresScanStore(dsn, **kwargs)
            else:
                st = SqliteScanStore(tmp_path / "h.sqlite3")
            await st.open()
            opened.append(st)
            return st

        yield make
        for st in opened:
            await st.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> ScanStore:
    return await make_store()
