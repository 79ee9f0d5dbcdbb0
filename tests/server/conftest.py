"""Fixtures of the server tests."""

from __future__ import annotations

import os
import uuid

import pytest


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

