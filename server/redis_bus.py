"""The event bus for several gateways: one Redis Stream that every gateway appends to and reads.

Writing
-------
:meth:`RedisEventBus.publish` never waits for Redis: it puts the event in a bounded in-memory
buffer and a writer task appends buffered events in batches with one Lua script. The script takes
the next numbers from a counter beside the stream and ``XADD``\\ s each event with the explicit ID
``0-<seq>``, so the stream's own position *is* the global ``seq``: every gateway's events get one
order, and a client resumes on any gateway with the ``seq`` it saw last. The script never goes
below a floor the gateway passes (the highest ``seq`` it has seen), so ``seq`` never goes backwards
even when Redis comes back empty. ``MAXLEN ~`` caps the stream (``[events] max_len``).

When Redis is unreachable the writer keeps the buffer, logs an error, retries with backoff (a
warning every 30 s while it lasts) and catches up when Redis returns. Beyond
``[events] buffer_events`` the oldest buffered events are dropped and counted (``lost``). Scans
are not events: an acknowledged scan is in the store whatever happens to Redis.

Reading
-------
Each event server reads the whole stream through its own consumer group (``XREADGROUP``; the
``XACK`` of a batch goes in the same round trip as the next read), so after a restart it resumes
where its group stopped, and delivers each entry to its subscribers once, in stream order. A
batch re-sent after a lost reply is not appended twice (the script remembers each process's last
event number), and an entry Redis hands out twice (pending entries after a restart) is
recognised by its per-process counter and skipped.
Replay for reconnecting clients reads ``XRANGE`` by ``seq``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from .events import Fanout

log = logging.getLogger(__name__)

#: KEYS: stream, counter, this process's writer key. ARGV: floor, maxlen, writer key TTL (s),
#: then (gateway, process, n, body) per event, all from one process, n increasing.
#: An event whose n the writer key has already recorded is not appended again: a batch re-sent
#: after a lost reply adds nothing twice. Returns the seq of the last event appended.
APPEND_SCRIPT = """
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[1])
if floor > seq then seq = floor end
local last_n = tonumber(redis.call('GET', KEYS[3]) or '0')
for i = 4, #ARGV, 4 do
  local n = tonumber(ARGV[i + 2])
  if n > last_n then
    seq = seq + 1
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. string.format('%d', seq),
               'g', ARGV[i], 'p', ARGV[i + 1], 'n', ARGV[i + 2], 'e', ARGV[i + 3])
    last_n = n
  end
end
redis.call('SET', KEYS[2], string.format('%d', seq))
redis.call('SET', KEYS[3], string.format('%d', last_n), 'EX', ARGV[3])
return seq
"""

WRITE_BATCH = 256
#: How long Redis remembers a process's last appended event number (for re-sent batches).
WRITER_KEY_TTL_S = 86_400
READ_BATCH = 512
READ_BLOCK_MS = 1000
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 2.0
DOWN_REPORT_EVERY_S = 30.0


def seq_of(entry_id: bytes | str) -> int:
    """``b"0-42"`` -> 42: our entries use the stream ID's sequence part as the global seq."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.rsplit("-", 1)[1])


def with_seq(seq: int, body: bytes | str) -> str:
    """The event as clients get it: the stored JSON object with ``seq`` put first."""
    text = body.decode() if isinstance(body, bytes) else body
    return f'{{"seq":{seq},{text[1:]}' if text != "{}" else f'{{"seq":{seq}}}'


class RedisEventBus(Fanout):
    """:class:`~malwaresnipper.server.events.EventBus` over one Redis Stream (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        gateway_id: str,
        stream: str = "malwaresnipper:events",
        group: str = "",
        max_len: int = 100_000,
        buffer_events: int = 10_000,
        read: bool = True,
    ) -> None:
        super().__init__()
        self.url = url
        self.gateway_id = gateway_id
        self.stream = stream
        self.counter_key = f"{stream}:seq"
        self.group = group or f"events-{gateway_id}"
        self.consumer = gateway_id
        self.max_len = max_len
        self.buffer_limit = max(1, buffer_events)
        self.read = read
        #: Events this process lost because Redis stayed down longer than the buffer lasts.
        self.lost = 0
        self.connected = False
        self._process = uuid.uuid4().hex[:12]
        self.writer_key = f"{stream}:writer:{self._process}"
        self._counter = itertools.count(1)
        self._buffer: deque[tuple[int, str]] = deque()  # (this process's event number, JSON body)
        self._appended_n = 0  # last event number known to be in Redis
        self._floor = 0  # highest seq seen: the script never numbers below it
        self._seen: dict[bytes, int] = {}  # process -> last event number delivered
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None
        self._script: Any = None
        self._down_since: float | None = None
        self._down_reported = 0.0
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            from ..engine.errors import ConfigError

            raise ConfigError(
                "[events] backend = 'redis' needs the redis package: pip install 'malwaresnipper[cluster]'"
            ) from exc
        self._redis = aioredis.from_url(
            self.url, decode_responses=False, socket_connect_timeout=2.0,
            socket_timeout=READ_BLOCK_MS / 1000.0 + 5.0, health_check_interval=10,
        )
        self._script = self._redis.register_script(APPEND_SCRIPT)
        try:
            await self._join_group()
            self._mark_up()
        except Exception as exc:  # noqa: BLE001 - the gateway starts anyway; the tasks retry
            self._mark_down(exc)
        self._tasks.append(asyncio.create_task(self._write_loop(), name="redis-bus-writer"))
        if self.read:
            self._tasks.append(asyncio.create_task(self._read_loop(), name="redis-bus-reader"))
        for task in self._tasks:
            task.add_done_callback(_report_task_end)

    async def stop(self) -> None:
        """Give the writer a moment to drain the buffer, then stop (what is left is logged)."""
        try:
            await asyncio.wait_for(self._drained(), 5.0)
        except TimeoutError:
            log.error("redis event bus: stopping with %d events not yet in Redis (lost)", len(self._buffer))
        # redis-py may turn a cancellation inside a command into a connection error, which the
        # loops would retry: the flag ends them whatever the cancellation became.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def health(self) -> dict[str, Any]:
        return {"backend": "redis", "connected": self.connected, "buffered": len(self._buffer),
                "lost": self.lost, "stream": self.stream}

    # -- publishing --------------------------------------------------------------------------

    def publish(self, message: dict[str, Any], *, epoch: float | None = None) -> None:
        """Buffer ``message`` for Redis; its ``seq`` is given later, by the stream (so None here)."""
        message.pop("seq", None)
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        if len(self._buffer) >= self.buffer_limit:
            self._buffer.popleft()
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                log.error("redis event bus: buffer full (%d events): %d events lost so far",
                          self.buffer_limit, self.lost)
        self._buffer.append((next(self._counter), body))
        self._wake.set()

    async def _write_loop(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer and not self._stopping:
                batch = list(itertools.islice(self._buffer, WRITE_BATCH))
                try:
                    last = await self._append(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - Redis down or unwell: keep, retry, log
                    self._mark_down(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(BACKOFF_MAX_S, backoff * 2)
                    continue
                backoff = BACKOFF_START_S
                self._mark_up()
                self._floor = max(self._floor, last)
                sent_upto = batch[-1][0]
                # Events dropped from the front meanwhile (buffer full) were not in this batch.
                while self._buffer and self._buffer[0][0] <= sent_upto:
                    self._buffer.popleft()
                self._appended_n = sent_upto
                self.published += len(batch)
                self._progress.set()

    async def _append(self, batch: list[tuple[int, str]]) -> int:
        """Append one batch with the script; returns the seq of the last event in the stream."""
        args: list[Any] = [self._floor, self.max_len, WRITER_KEY_TTL_S]
        for n, body in batch:
            args += [self.gateway_id, self._process, n, body]
        return int(await self._script(keys=[self.stream, self.counter_key, self.writer_key], args=args))

    # -- reading -----------------------------------------------------------------------------

    async def _join_group(self) -> None:
        """Create this server's consumer group at the stream's end, or resume the existing one."""
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except Exception as exc:  # noqa: BLE001
            if "BUSYGROUP" not in str(exc):
                raise
        for info in await self._redis.xinfo_groups(self.stream):
            name = info.get("name") or info.get(b"name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                last = info.get("last-delivered-id") or info.get(b"last-delivered-id") or b"0-0"
                group_seq = seq_of(last)
                # Entries Redis handed out but nobody acknowledged (a read that was still blocked
                # when the last server stopped) were never delivered: resume before the first.
                pending = await self._redis.xpending(self.stream, self.group)
                if pending and pending.get("pending") and pending.get("min"):
                    group_seq = min(group_seq, seq_of(pending["min"]) - 1)
                self.delivered_seq = max(self.delivered_seq, group_seq)
        self._floor = max(self._floor, self.delivered_seq)

    async def _read_loop(self) -> None:
        backoff = BACKOFF_START_S
        pending_first = True  # after (re)joining: entries handed to us before but never acked
        to_ack: list[bytes] = []
        while not self._stopping:
            try:
                # The previous batch's XACK travels with the next read: one round trip, not two.
                pipe = self._redis.pipeline(transaction=False)
                if to_ack:
                    pipe.xack(self.stream, self.group, *to_ack)
                pipe.xreadgroup(
                    self.group, self.consumer, {self.stream: "0" if pending_first else ">"},
                    count=READ_BATCH, block=None if pending_first else READ_BLOCK_MS,
                )
                reply = (await pipe.execute())[-1]
                to_ack = []
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                if "NOGROUP" in str(exc):  # Redis came back without our group (data lost)
                    try:
                        await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
                    except Exception:  # noqa: BLE001 - BUSYGROUP or down again: next round tells
                        pass
                    pending_first = True
                    to_ack = []  # acknowledgements for a group that is gone
                    continue
                self._mark_down(exc)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                pending_first = True
                continue
            backoff = BACKOFF_START_S
            self._mark_up()
            entries = reply[0][1] if reply else []
            if pending_first and not entries:
                pending_first = False
                continue
            if entries:
                self._deliver_entries(entries)
                to_ack = [entry_id for entry_id, _fields in entries]  # acked with the next read

    def _deliver_entries(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            seq = seq_of(entry_id)
            process, n = fields.get(b"p", b""), int(fields.get(b"n", b"0") or 0)
            if seq <= self.delivered_seq or n <= self._seen.get(process, 0):
                continue  # delivered already (a retried batch, a pending entry after a restart)
            self._seen[process] = n
            self._deliver_one(seq, with_seq(seq, fields.get(b"e", b"{}")))
        self._floor = max(self._floor, self.delivered_seq)
        self._progress.set()

    async def events_after(self, after: int, upto: int, limit: int) -> list[str]:
        entries = await self._redis.xrange(self.stream, min=f"(0-{after}", max=f"0-{upto}", count=limit)
        return [with_seq(seq_of(entry_id), fields.get(b"e", b"{}")) for entry_id, fields in entries]

    # -- waiting -----------------------------------------------------------------------------

    async def _drained(self) -> None:
        while self._buffer:
            self._progress.clear()
            await self._progress.wait()

    async def flush(self) -> None:
        """Wait until what was published so far is in Redis and (when reading) delivered here."""
        await self._drained()
        if not self.read:
            return
        target = self._floor
        while self.delivered_seq < target:
            self._progress.clear()
            await self._progress.wait()

    # -- health ------------------------------------------------------------------------------

    def _mark_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._down_reported = now
            self.connected = False
            log.error("redis event bus: Redis at %s is unreachable (%r); buffering events (%d held, "
                      "up to %d)", _safe_url(self.url), exc, len(self._buffer), self.buffer_limit)
        elif now - self._down_reported >= DOWN_REPORT_EVERY_S:
            self._down_reported = now
            log.warning("redis event bus: Redis still unreachable after %.0f s; %d events buffered, %d lost",
                        now - self._down_since, len(self._buffer), self.lost)

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning("redis event bus: Redis is back after %.1f s; catching up %d buffered events",
                        time.monotonic() - self._down_since, len(self._buffer))
            self._down_since = None
        self.connected = True


def _report_task_end(task: asyncio.Task[None]) -> None:
    """The writer and reader run until stop(); ending any other way is a bug worth shouting about."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("redis event bus: %s stopped: %r", task.get_name(), task.exception(),
                     exc_info=task.exception())


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
