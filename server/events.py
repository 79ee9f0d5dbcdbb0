"""The event bus (sequence numbers, durable log, fan-out) and the websockets event stream.

Ordering and durability
-----------------------
:meth:`InMemoryEventBus.publish` gives each event the next ``seq`` at once, queues it for the
store's event log, and delivers it to subscribers only after the store committed it. So every
event a client ever saw can be replayed after a restart, ``seq`` never goes backwards (the next
run starts after the highest stored ``seq``), and a client reconnecting with ``last_seq`` gets
exactly the events it missed: the snapshot names the last delivered ``seq`` S at the moment the
client subscribed; events up to S come from the store, later ones from the client's live queue.

:class:`EventBus` is the seam: :class:`InMemoryEventBus` here for one gateway,
:class:`~malwaresnipper.server.redis_bus.RedisEventBus` for several gateways sharing one stream.
The stream server only talks to the interface (subscribe, ``delivered_seq``, ``events_after``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from .auth import HostPolicy, OriginPolicy, bearer_token, token_matches
from .store import ScanStore

log = logging.getLogger(__name__)

EVENT_SCHEMA_VERSION = 1
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_BAD_HELLO = 4400
HELLO_TIMEOUT_S = 5.0
REPLAY_CHUNK = 2000
#: Kernel send buffer per client. Fixed (not autotuned up to several MB) so that memory per client
#: is bounded and a client that stops reading is noticed after ~0.5 MB, not after 8 MB.
SEND_BUFFER_BYTES = 256 * 1024


class Subscription:
    """One consumer's queue of ``(seq, frame)``, bounded; overflowing marks it too slow.

    Events are delivered in commit batches, so a burst can briefly exceed ``maxsize`` for a
    client that reads perfectly well. The backlog therefore counts as too slow only when the
    connection is also backed up (``congested()``: the socket's buffers are full, so the peer is
    not reading), or when it exceeds ``HARD_FACTOR * maxsize`` whatever the cause.
    """

    HARD_FACTOR = 10

    def __init__(self, maxsize: int, congested: Callable[[], bool] | None = None) -> None:
        self.maxsize = max(1, maxsize)
        self.items: deque[tuple[int, bytes]] = deque()  # (seq, one server frame with the JSON text)
        self.ready = asyncio.Event()
        self.too_slow = asyncio.Event()
        self.congested = congested

    def offer(self, seq: int, body: bytes) -> bool:
        if self.too_slow.is_set():
            return False
        backlog = len(self.items)
        if backlog >= self.maxsize and (
            backlog >= self.maxsize * self.HARD_FACTOR or self.congested is None or self.congested()
        ):
            self.too_slow.set()
            self.items.clear()
            return False
        self.items.append((seq, body))
        self.ready.set()
        return True

    async def get(self) -> tuple[int, bytes]:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        return self.items.popleft()


class EventBus(Protocol):
    """What publishers and the stream server need from a bus (in-process or Redis)."""

    delivered_seq: int
    dropped: int
    published: int

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def publish(self, message: dict[str, Any], *, epoch: float | None = None) -> int | None: ...
    def broadcast(self, message: dict[str, Any]) -> None: ...
    def subscribe(self, maxsize: int, congested: Callable[[], bool] | None = None) -> Subscription: ...
    def unsubscribe(self, sub: Subscription) -> None: ...
    async def flush(self) -> None: ...
    async def events_after(self, after: int, upto: int, limit: int) -> list[str]: ...
    def health(self) -> dict[str, Any]: ...
    @property
    def subscriber_count(self) -> int: ...


class Fanout:
    """Delivery to this process's subscribers, shared by every bus: each event is framed once."""

    def __init__(self) -> None:
        self.delivered_seq = 0
        self.dropped = 0
        self.published = 0
        self._subs: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def _deliver_one(self, seq: int, text: str) -> None:
        if self._subs:  # nobody watching (the usual case for a proxy): no frame to build
            body = text_frame(text)  # framed once per event, shared by every subscriber
            for sub in list(self._subs):
                if not sub.offer(seq, body):
                    self.dropped += 1
        self.delivered_seq = seq

    def broadcast(self, message: dict[str, Any]) -> None:
        """Deliver an unsequenced control message (``lists_changed``) to current subscribers."""
        body = text_frame(json.dumps(message, separators=(",", ":")))
        for sub in list(self._subs):
            if not sub.offer(0, body):
                self.dropped += 1

    def subscribe(self, maxsize: int, congested: Callable[[], bool] | None = None) -> Subscription:
        sub = Subscription(maxsize, congested)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)


class InMemoryEventBus(Fanout):
    """The single-gateway bus: seq counter in memory, log in the :class:`ScanStore`."""

    def __init__(self, store: ScanStore) -> None:
        super().__init__()
        self.store = store
        self._seq = 0
        self._pending: list[tuple[int, float, str | None, str]] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._seq = await self.store.last_seq()
        self.delivered_seq = self._seq

    async def stop(self) -> None:
        await self.flush()

    def health(self) -> dict[str, Any]:
        return {"backend": "memory", "connected": True, "buffered": len(self._pending)}

    def publish(self, message: dict[str, Any], *, epoch: float | None = None) -> int:
        """Number, log and (after the commit) deliver ``message``; returns its ``seq``.

        ``epoch`` is the event's time (for retention); now when omitted.
        """
        assert self._loop is not None, "bus not started"
        self._seq += 1
        message["seq"] = self._seq
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        self._pending.append((self._seq, epoch if epoch is not None else time.time(), message.get("scan_id"), body))
        if not self._flush_scheduled:
            # Everything published in this loop iteration goes to the store as one operation.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_pending)
        return self._seq

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        items, self._pending = self._pending, []
        if not items:
            return
        loop = self._loop
        assert loop is not None
        fut = self.store.append_events(items)
        afut = asyncio.wrap_future(fut, loop=loop) if isinstance(fut, concurrent.futures.Future) else fut
        self._inflight.add(afut)

        def done(f: asyncio.Future[Any]) -> None:
            self._inflight.discard(f)
            if f.cancelled() or f.exception() is not None:
                log.error("event log write failed (events delivered anyway, not replayable): %r",
                          None if f.cancelled() else f.exception())
            for seq, _ts, _scan, text in items:
                self._deliver_one(seq, text)
                self.published += 1

        afut.add_done_callback(done)

    async def events_after(self, after: int, upto: int, limit: int) -> list[str]:
        return await self.store.events_after(after, upto, limit)

    async def flush(self) -> None:
        """Wait until everything published so far is committed and delivered."""
        if self._pending:
            self._flush_pending()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        await asyncio.sleep(0)


SnapshotFn = Callable[[], Awaitable[dict[str, Any]]]


def text_frame(text: str) -> bytes:
    """One unmasked, uncompressed WebSocket text frame: identical for every client, so built once."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def frame_text(frame: bytes) -> str:
    """The JSON text of a frame built by :func:`text_frame`, for subscribers that are not sockets."""
    length = frame[1] & 0x7F
    return frame[2 if length < 126 else 4 if length == 126 else 10:].decode()


class BatchingConnection(ServerConnection):
    """A ServerConnection that writes a batch of prebuilt event frames with one socket write.

    Sending each event with ``send()`` frames it again for every client and costs one
    ``socket.send`` per event per client, which was most of the gateway's CPU at a few hundred
    scans per second. Server frames are unmasked and the stream runs without compression, so an
    event's frame is the same bytes for every client: the bus builds it once and
    :meth:`send_frames` writes a batch of them together, inside websockets' ``send_context``
    (state checks, flow control, close handling). Plugged in through the ``create_connection`` hook.

    It also carries what the handshake learnt: ``header_authed`` is set by ``process_request``
    when the request held the right ``Authorization`` header. Kept on the connection object, it
    dies with it, whether the handshake then succeeds or fails.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_authed = False

    async def send_frames(self, frames: list[bytes]) -> None:
        async with self.send_context():
            if self.protocol.extensions:  # pragma: no cover - compression is off; never prebuilt then
                raise RuntimeError("prebuilt frames need a connection without extensions")
            self.transport.write(b"".join(frames))


async def _send_frames(conn: ServerConnection, frames: list[bytes]) -> None:
    assert isinstance(conn, BatchingConnection), "the server is created with create_connection=BatchingConnection"
    await conn.send_frames(frames)


MAX_BATCH = 256


class EventStreamServer:
    """The websockets endpoint: handshake checks, hello, snapshot, replay, live events."""

    def __init__(
        self,
        bus: EventBus,
        snapshot: SnapshotFn,
        *,
        token: str,
        origins: OriginPolicy,
        hosts: HostPolicy | None = None,
        host: str,
        port: int,
        queue_size: int,
        ssl_context: ssl.SSLContext | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.bus = bus
        self.snapshot = snapshot
        self.token = token
        self.origins = origins
        self.hosts = hosts or HostPolicy(host)
        self.host = host
        self.port = port
        self.queue_size = queue_size
        self.ssl_context = ssl_context
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.server: Server | None = None
        self.clients = 0
        self.closed_too_slow = 0
        self.refused = 0

    async def start(self) -> None:
        self.server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,  # one JSON text per event, sent to every client: not worth deflating
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            max_size=64 * 1024,
            ssl=self.ssl_context,
            server_header=None,
            create_connection=BatchingConnection,
        )
        if self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 10)
            except TimeoutError:
                log.warning("event stream: some connections did not close in time")
            self.server = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"

    # -- handshake ---------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, BatchingConnection), "the server is created with create_connection=BatchingConnection"
        sockname = conn.transport.get_extra_info("sockname") if conn.transport else None
        port = sockname[1] if sockname else self.port
        host_headers = request.headers.get_all("Host")
        host = host_headers[0] if len(host_headers) == 1 else None  # none or several: refused
        if not self.hosts.allows(host, port):
            self.refused += 1
            return _http_error(HTTPStatus.MISDIRECTED_REQUEST,
                               f"this gateway does not answer to Host {(host or '')[:100]!r}; {self.hosts.hint(port)}",
                               code="unknown_host")
        path = request.path.split("?", 1)[0]
        if path not in ("/", "/events", "/api/v1/events"):
            return _http_error(HTTPStatus.NOT_FOUND, "no event stream here; connect to /")
        origin = request.headers.get("Origin")
        if not self.origins.allows(origin):
            self.refused += 1
            return _http_error(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed")
        header = request.headers.get("Authorization")
        if header is not None:
            if not token_matches(self.token, bearer_token(header)):
                self.refused += 1
                return _http_error(HTTPStatus.UNAUTHORIZED, "wrong token")
            conn.header_authed = True
        return None

    # -- connection --------------------------------------------------------------------------

    async def _handler(self, conn: ServerConnection) -> None:
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass
        header_ok = isinstance(conn, BatchingConnection) and conn.header_authed
        try:
            raw = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT_S)
        except (TimeoutError, ConnectionClosed):
            self.refused += 1
            await conn.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        hello = _parse_hello(raw)
        if hello is None:
            self.refused += 1
            await conn.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        offered = hello.get("token")
        if not (token_matches(self.token, offered) or (header_ok and offered is None)):
            self.refused += 1
            await conn.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        last_seq = hello.get("last_seq")
        if last_seq is not None and (not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0):
            await conn.close(CLOSE_BAD_HELLO, "last_seq must be a non-negative integer or null")
            return

        sub = self.bus.subscribe(self.queue_size, lambda: _congested(conn))
        self.clients += 1
        try:
            snapshot_seq = self.bus.delivered_seq
            snap = await self.snapshot()
            snap = {"type": "snapshot", "schema": EVENT_SCHEMA_VERSION, "seq": snapshot_seq, **snap}
            await _send_frames(conn, [text_frame(json.dumps(snap, separators=(",", ":"), ensure_ascii=False))])
            if last_seq is not None and last_seq < snapshot_seq:
                try:
                    await self._replay(conn, last_seq, snapshot_seq)
                except ConnectionClosed:
                    raise
                except Exception as exc:  # noqa: BLE001 - the log is unreachable: live events go on
                    log.warning("event stream: replay after seq %d failed: %r", last_seq, exc)
            # A client that already saw newer events (its last_seq is ahead of this server, e.g.
            # right after this server restarted and is catching up) gets none of them twice.
            await self._pump(conn, sub, max(snapshot_seq, last_seq or 0))
        except ConnectionClosed:
            pass
        finally:
            self.bus.unsubscribe(sub)
            self.clients -= 1

    async def _replay(self, conn: ServerConnection, after: int, upto: int) -> None:
        cursor = after
        while cursor < upto:
            bodies = await self.bus.events_after(cursor, upto, REPLAY_CHUNK)
            if not bodies:
                break
            await _send_frames(conn, [text_frame(body[:-1] + ',"replay":true}') for body in bodies])
            cursor = json.loads(bodies[-1])["seq"]

    async def _pump(self, conn: ServerConnection, sub: Subscription, after: int) -> None:
        async def send_live() -> None:
            while True:
                seq, body = await sub.get()
                batch = [] if seq and seq <= after else [body]  # <= after: already sent from the store
                while sub.items and len(batch) < MAX_BATCH:
                    seq, body = sub.items.popleft()
                    if not (seq and seq <= after):
                        batch.append(body)
                if batch:
                    await _send_frames(conn, batch)

        async def read_client() -> None:
            async for _message in conn:  # clients have nothing to say after hello; drain pings
                pass

        tasks = [
            asyncio.create_task(send_live()),
            asyncio.create_task(read_client()),
            asyncio.create_task(sub.too_slow.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if sub.too_slow.is_set():
            self.closed_too_slow += 1
            log.info("event stream: closing a client that cannot keep up")
            await conn.close(CLOSE_TOO_SLOW, "too slow")


def _congested(conn: ServerConnection) -> bool:
    """True when the socket is backed up: bytes wait in our buffer because the peer is not reading."""
    transport = conn.transport
    try:
        return transport is None or transport.get_write_buffer_size() > 0
    except (AttributeError, RuntimeError):
        return True


def _parse_hello(raw: str | bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("type") != "hello":
        return None
    token = data.get("token")
    if token is not None and not isinstance(token, str):
        return None
    return data


def _http_error(status: HTTPStatus, message: str, *, code: str | None = None) -> Response:
    code = code or status.phrase.lower().replace(" ", "_")
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)
