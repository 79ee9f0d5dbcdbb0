"""The event stream's promises: auth and Origin, exact replay after a reconnect, slow clients
dropped while the others keep up."""

from __future__ import annotations

import asyncio
import json
from typing import Any
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from websockets.typing import Origin
from helpers.api import VALIDATOR, Gateway, small_page
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # A small client queue so that a stalled client falls behind quickly.
    gw = Gateway(tmp_path_factory.mktemp("gw-events"),
                 config="[server]\nclient_queue_size = 200\nrate_limit_per_minute = 0\n")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def submit_many(gateway: Gateway, s: aiohttp.ClientSession, prefix: str, n: int,
                      concurrency: int = 8) -> list[str]:
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            status, body = await gateway.call(s, "POST", "/api/v1/scans", small_page(f"{prefix}{i}"))
            assert status == 202, body
            ids.append(body["scan_id"])

    await asyncio.gather(*(one(i) for i in range(n)))
    return ids


async def test_wrong_token_in_header_is_refused_at_the_handshake(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(gateway.events_url, additional_headers={"Authorization": "Bearer wrong"})
    assert info.value.response.status_code == 401


@pytest.mark.parametrize("hello", [
    {"type": "hello", "token": "wrong", "last_seq": None},
    {"type": "hello", "last_seq": None},  # no token and no header
    {"type": "subscribe", "token": "<token>"},  # not a hello
    "not json",
])
async def test_bad_hello_closes_with_4401(gateway: Gateway, hello: object) -> None:
    async with connect(gateway.events_url) as ws:
        text = hello if isinstance(hello, str) else json.dumps(hello).replace("<token>", gateway.token)
        await ws.send(text)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4401 and ws.close_reason == "unauthorized"


async def test_silent_client_is_closed_after_the_hello_timeout(gateway: Gateway) -> None:
    async with connect(gateway.events_url) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4401


async def test_origin_allowlist(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(gateway.events_url, origin=Origin("https://evil.example"))
    assert info.value.response.status_code == 403
    # A browser on the dashboard or in the extension authenticates with the hello message.
    for origin in (f"http://127.0.0.1:{gateway.api_port}", "chrome-extension://abcdefghijklmnop"):
        client = await gateway.events(header=False, origin=origin)
        assert client.snapshot is not None and client.snapshot["schema"] == 1
        await client.close()


async def test_reconnect_with_last_seq_replays_exactly_the_missed_events(gateway: Gateway) -> None:
    witness = await gateway.events()  # stays connected throughout
    async with aiohttp.ClientSession() as s:
        first_ids = await submit_many(gateway, s, "before", 2)
        leaver = await gateway.events()
        await witness.until_complete(set(first_ids))
        seen = await leaver.until_complete(set(first_ids))
        last_seq = max(m["seq"] for m in seen if m["type"] == "event")
        await leaver.close()

        missed_ids = await submit_many(gateway, s, "missed", 5)
        missed = [m for m in await witness.until_complete(set(missed_ids)) if m["type"] == "event"]

        back = await gateway.events(last_seq=last_seq)
        replayed: list[dict[str, Any]] = []
        while len(replayed) < len(missed):
            replayed.append(await back.recv())
        assert [m["seq"] for m in replayed] == [m["seq"] for m in missed]
        assert all(m.get("replay") is True for m in replayed)
        assert [{k: v for k, v in m.items() if k != "replay"} for m in replayed] == missed
        assert back.snapshot["seq"] == missed[-1]["seq"]

        # After the replay, live events continue with the next seq and no "replay" flag.
        live_ids = await submit_many(gateway, s, "live", 1)
        live = [m for m in await back.until_complete(set(live_ids)) if m["type"] == "event"]
        assert live[0]["seq"] == missed[-1]["seq"] + 1 and "replay" not in live[0]
        assert [m["seq"] for m in live] == list(range(live[0]["seq"], live[0]["seq"] + len(live)))
    await back.close()
    await witness.close()


async def test_slow_client_is_dropped_while_others_keep_receiving(gateway: Gateway) -> None:
    fast = await gateway.events(validate=False)  # validating costs the test client CPU it needs to keep up
    # The slow client never reads after its snapshot; a tiny receive buffer makes it fall behind fast.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.events_port))
    slow = await connect(gateway.events_url, sock=sock, max_queue=1,
                         additional_headers={"Authorization": f"Bearer {gateway.token}"})
    await slow.send(json.dumps({"type": "hello", "last_seq": None}))
    async with aiohttp.ClientSession() as s:
        fast.start_reading()
        ids = await submit_many(gateway, s, "burst", 300, concurrency=16)
        got = [m for m in await fast.wait_complete(set(ids), timeout=180) if m["type"] == "event"]
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the fast client missed events"
        # The server reports the drop.
        for _ in range(100):
            async with s.get(gateway.base_url + "/metrics", headers=gateway.headers()) as resp:
                text = await resp.text()
            closed = [line for line in text.splitlines()
                      if line.startswith("malwaresnipper_event_clients_closed_too_slow_total ")]
            if closed and float(closed[0].split()[1]) >= 1:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the slow client was never closed:\n" + text)
    # Reading now, the slow client finds what was buffered and then the 4008 close.
    received = 0
    with pytest.raises(ConnectionClosed):
        while True:
            VALIDATOR.validate(json.loads(await asyncio.wait_for(slow.recv(), 30)))
            received += 1
    assert slow.close_code == 4008 and slow.close_reason == "too slow"
    assert received < len(got)
    await fast.close()
