"""Pings detect a dead peer: a client that stops answering is dropped and unsubscribed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from malwaresnipper.server.auth import OriginPolicy
from malwaresnipper.server.events import EventStreamServer
from malwaresnipper.server.service import ScanService
from malwaresnipper.settings import Settings


class IdlePool:
    """No scans happen in this test; the stream only needs a running service."""

    queue_depth = 0

    def update_lists(self, snapshot) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_unresponsive_client_is_dropped_by_keepalive(tmp_path: Path) -> None:
    service = ScanService(Settings(data_dir=str(tmp_path)), pool=IdlePool())
    await service.start()
    stream = EventStreamServer(service.bus, service.snapshot, token="t",
                               origins=OriginPolicy(5000), host="127.0.0.1", port=0, queue_size=100,
                               ping_interval=0.2, ping_timeout=0.3, close_timeout=0.5)
    await stream.start()
    try:
        ws = await connect(stream.url, additional_headers={"Authorization": "Bearer t"}, ping_interval=None)
        await ws.send(json.dumps({"type": "hello", "last_seq": None}))
        assert json.loads(await ws.recv())["type"] == "snapshot"
        assert stream.clients == 1 and service.bus.subscriber_count == 1
        ws.transport.pause_reading()  # the peer hangs: it no longer answers pings
        for _ in range(100):
            if stream.clients == 0:
                break
            await asyncio.sleep(0.05)
        assert stream.clients == 0 and service.bus.subscriber_count == 0
        ws.transport.abort()
    finally:
        await stream.stop()
        await service.stop()
