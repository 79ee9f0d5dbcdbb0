"""The event bus on a real store: seq order, delivery only after commit, slow subscribers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from malwaresnipper.server.events import InMemoryEventBus, Subscription, text_frame
from malwaresnipper.server.store import SqliteScanStore
from helpers.events import payload


async def test_events_are_delivered_in_order_and_only_once_logged(tmp_path: Path) -> None:
    store = SqliteScanStore(tmp_path / "h.sqlite3")
    await store.open()
    bus = InMemoryEventBus(store)
    await bus.start()
    sub = bus.subscribe(10_000)
    try:
        seqs = [bus.publish({"type": "event", "scan_id": f"s{i}", "n": i}) for i in range(500)]
        assert seqs == list(range(1, 501))
        assert bus.delivered_seq == 0  # nothing is delivered before the commit
        for expected in range(1, 501):
            seq, frame = await asyncio.wait_for(sub.get(), 10)
            body = payload(frame)
            assert seq == expected and json.loads(body)["seq"] == expected
            # Whatever a subscriber sees is already in the log (so it can be replayed).
            if expected in (1, 250, 500):
                assert await store.events_after(expected - 1, expected) == [body]
        assert bus.delivered_seq == 500
    finally:
        await bus.flush()
        await store.close()
    # A new bus on the same file continues the sequence.
    store = SqliteScanStore(tmp_path / "h.sqlite3")
    await store.open()
    bus = InMemoryEventBus(store)
    await bus.start()
    assert bus.publish({"type": "event"}) == 501
    await bus.flush()
    await store.close()


async def test_subscription_bounds() -> None:
    congested = False
    sub = Subscription(5, lambda: congested)
    # A burst beyond the bound is absorbed while the connection is not backed up ...
    assert all(sub.offer(i, b"x") for i in range(1, 21))
    assert not sub.too_slow.is_set()
    # ... but not once the peer stops reading,
    congested = True
    assert not sub.offer(21, b"x")
    assert sub.too_slow.is_set() and not sub.items  # its backlog is freed at once
    # and never beyond the hard cap.
    hard = Subscription(5, lambda: False)
    results = [hard.offer(i, b"x") for i in range(1, 5 * Subscription.HARD_FACTOR + 2)]
    assert results.count(True) == 5 * Subscription.HARD_FACTOR and hard.too_slow.is_set()


async def test_broadcast_reaches_subscribers_without_seq(tmp_path: Path) -> None:
    store = SqliteScanStore(tmp_path / "h.sqlite3")
    await store.open()
    bus = InMemoryEventBus(store)
    await bus.start()
    a, b = bus.subscribe(10), bus.subscribe(10)
    bus.broadcast({"type": "lists_changed"})
    assert (await a.get()) == (0, text_frame('{"type":"lists_changed"}')) == (await b.get())
    bus.unsubscribe(b)
    bus.broadcast({"type": "lists_changed"})
    assert len(a.items) == 1 and not b.items
    assert await store.last_seq() == 0  # control messages are not logged
    await store.close()
