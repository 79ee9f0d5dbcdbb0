"""The Redis Streams event bus against a real redis-server: global seq, fan-out, outages, resume."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.redis_server import RedisServer

from malwaresnipper.server.events import Subscription
from malwaresnipper.server.redis_bus import RedisEventBus, with_seq


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def make_bus(server: RedisServer, gateway: str, **kwargs: Any) -> RedisEventBus:
    return RedisEventBus(server.url, gateway_id=gateway, stream="test:events", **kwargs)


def decode(frame: bytes) -> dict[str, Any]:
    """The JSON of one unmasked server text frame (as built by events.text_frame)."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return json.loads(frame[start:])


async def collect(sub: Subscription, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        _seq, frame = await asyncio.wait_for(sub.get(), max(0.05, deadline - time.monotonic()))
        got.append(decode(frame))
    return got


def event(gateway: str, i: int) -> dict[str, Any]:
    return {"type": "event", "scan_id": f"{gateway}-{i}", "gateway_id": gateway, "n": i}


def test_with_seq_puts_seq_first() -> None:
    assert json.loads(with_seq(7, b'{"a":1}')) == {"seq": 7, "a": 1}
    assert json.loads(with_seq(8, "{}")) == {"seq": 8}


async def test_two_gateways_one_order_every_event_once(shared_redis_stream: tuple[str, str]) -> None:
    url, stream = shared_redis_stream
    a = RedisEventBus(url, gateway_id="gw-a", stream=stream)
    b = RedisEventBus(url, gateway_id="gw-b", stream=stream)
    await a.start()
    await b.start()
    try:
        sub_a, sub_b = a.subscribe(10_000), b.subscribe(10_000)
        for i in range(50):
            a.publish(event("gw-a", i))
            b.publish(event("gw-b", i))
            if i % 7 == 0:
                await asyncio.sleep(0)
        seen_a = await collect(sub_a, 100)
        seen_b = await collect(sub_b, 100)
        # Both event servers see the same 100 events in the same global order, each once.
        assert [e["seq"] for e in seen_a] == [e["seq"] for e in seen_b]
        seqs = [e["seq"] for e in seen_a]
        assert seqs == list(range(seqs[0], seqs[0] + 100))
        for gateway in ("gw-a", "gw-b"):
            assert [e["n"] for e in seen_a if e["gateway_id"] == gateway] == list(range(50))
        await asyncio.sleep(0.3)
        assert sub_a.items == deque_empty() and sub_b.items == deque_empty()
        # Replay by seq from the stream gives the same bodies.
        replay = [json.loads(t) for t in await a.events_after(seqs[9], seqs[19], 1000)]
        assert replay == seen_a[10:20]
        assert a.health()["connected"] is True and a.lost == 0
    finally:
        await a.stop()
        await b.stop()


def deque_empty() -> Any:
    from collections import deque

    return deque()


async def test_outage_buffers_then_catches_up_without_loss(redis_server: RedisServer) -> None:
    bus = make_bus(redis_server, "gw-a")
    await bus.start()
    try:
        sub = bus.subscribe(10_000)
        bus.publish(event("gw-a", 0))
        first = (await collect(sub, 1))[0]["seq"]
        await asyncio.to_thread(redis_server.stop)
        for i in range(1, 21):
            bus.publish(event("gw-a", i))
        await asyncio.sleep(0.5)
        assert bus.health()["connected"] is False
        assert bus.health()["buffered"] == 20
        await asyncio.to_thread(redis_server.start)
        rest = await collect(sub, 20, timeout=20)
        assert [e["n"] for e in rest] == list(range(1, 21))
        assert [e["seq"] for e in rest] == list(range(first + 1, first + 21))
        assert bus.lost == 0 and bus.health()["connected"] is True
    finally:
        await bus.stop()


async def test_buffer_is_bounded_and_counts_what_it_drops(redis_server: RedisServer) -> None:
    bus = make_bus(redis_server, "gw-a", buffer_events=5)
    await bus.start()
    try:
        sub = bus.subscribe(10_000)
        await asyncio.to_thread(redis_server.stop)
        for i in range(8):
            bus.publish(event("gw-a", i))
        assert bus.lost == 3
        await asyncio.to_thread(redis_server.start)
        got = await collect(sub, 5, timeout=20)
        assert [e["n"] for e in got] == [3, 4, 5, 6, 7]  # the oldest were dropped
    finally:
        await bus.stop()


async def test_seq_never_goes_backwards_when_redis_returns_empty(redis_server: RedisServer, tmp_path: Path) -> None:
    bus = make_bus(redis_server, "gw-a")
    await bus.start()
    try:
        sub = bus.subscribe(10_000)
        for i in range(10):
            bus.publish(event("gw-a", i))
        before = await collect(sub, 10)
        await asyncio.to_thread(redis_server.stop)
        for path in (tmp_path / "redis").glob("appendonly*"):  # Redis comes back with nothing
            if path.is_dir():
                for child in path.iterdir():
                    child.unlink()
            else:
                path.unlink()
        await asyncio.to_thread(redis_server.start)
        bus.publish(event("gw-a", 10))
        after = await collect(sub, 1, timeout=20)
        assert after[0]["n"] == 10 and after[0]["seq"] > before[-1]["seq"]
    finally:
        await bus.stop()


async def test_a_restarted_event_server_resumes_from_its_group(redis_server: RedisServer) -> None:
    writer = make_bus(redis_server, "gw-a", read=False)
    reader = make_bus(redis_server, "gw-b")
    await writer.start()
    await reader.start()
    try:
        sub = reader.subscribe(10_000)
        writer.publish(event("gw-a", 0))
        seen = await collect(sub, 1)
        await reader.stop()
        for i in range(1, 6):  # published while gw-b's event server is down
            writer.publish(event("gw-a", i))
        await writer.flush()
        again = make_bus(redis_server, "gw-b")
        await again.start()
        try:
            assert again.delivered_seq == seen[0]["seq"]  # where its group stopped
            sub2 = again.subscribe(10_000)
            missed = await collect(sub2, 5)
            assert [e["n"] for e in missed] == [1, 2, 3, 4, 5]
        finally:
            await again.stop()
    finally:
        await writer.stop()


async def test_entries_a_stopped_server_was_handed_but_never_acked_are_delivered_after_restart(
        redis_server: RedisServer) -> None:
    """The race a blocked read loses on stop: Redis hands new entries to the read that was still
    waiting (the group's last-delivered-id moves on), nobody acknowledges or delivers them. The
    restarted server must resume before them, not after."""
    import redis.asyncio as aioredis

    writer = make_bus(redis_server, "gw-a", read=False)
    reader = make_bus(redis_server, "gw-b")
    await writer.start()
    await reader.start()
    raw = aioredis.from_url(redis_server.url)
    try:
        sub = reader.subscribe(10_000)
        writer.publish(event("gw-a", 0))
        seen = await collect(sub, 1)
        await reader.stop()
        for i in range(1, 6):
            writer.publish(event("gw-a", i))
        await writer.flush()
        # what the stopped server's last blocked read did: take them for the group, unacknowledged
        taken: Any = await raw.xreadgroup(reader.group, reader.consumer, {"test:events": ">"}, count=100)
        # (the stopped server's own blocked read may still have been waiting in Redis and taken
        # them first: the same state, which is what must be checked)
        assert not taken or len(taken[0][1]) == 5
        pending: Any = await raw.xpending("test:events", reader.group)
        assert pending["pending"] >= 5  # handed out, never acknowledged
        again = make_bus(redis_server, "gw-b")
        await again.start()
        try:
            assert again.delivered_seq == seen[0]["seq"]
            missed = await collect(again.subscribe(10_000), 5)
            assert [e["n"] for e in missed] == [1, 2, 3, 4, 5]
        finally:
            await again.stop()
    finally:
        await raw.aclose()
        await writer.stop()


async def test_a_batch_resent_after_a_lost_reply_is_in_the_stream_once(shared_redis_stream: tuple[str, str]) -> None:
    """The append ran but its reply never arrived: the writer sends the batch again."""
    url, stream = shared_redis_stream
    bus = RedisEventBus(url, gateway_id="gw-a", stream=stream)
    await bus.start()
    real_append = bus._append
    lost_replies = 0

    async def reply_lost_once(batch: list[tuple[int, str]]) -> int:
        nonlocal lost_replies
        last = await real_append(batch)  # Redis ran the script...
        if lost_replies == 0:
            lost_replies += 1
            raise ConnectionError("connection reset before the reply")  # ...the gateway never heard
        return last

    bus._append = reply_lost_once  # type: ignore[method-assign]
    try:
        sub = bus.subscribe(10_000)
        for i in range(5):  # one batch: the writer runs only once this coroutine yields
            bus.publish(event("gw-a", i))
        await asyncio.wait_for(bus.flush(), 10)
        live = await collect(sub, 5)
        with pytest.raises(asyncio.TimeoutError):
            await collect(sub, 1, timeout=0.5)
        replay = [json.loads(e) for e in await bus.events_after(0, 10_000, 100)]
    finally:
        await bus.stop()
    assert lost_replies == 1
    assert [e["n"] for e in live] == [0, 1, 2, 3, 4]
    assert [e["n"] for e in replay] == [0, 1, 2, 3, 4]
    assert [e["seq"] for e in replay] == [1, 2, 3, 4, 5]
