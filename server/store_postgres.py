"""The :class:`~.store.ScanStore` on PostgreSQL (psycopg 3, async): one history for several gateways.

Same behaviour as :class:`~.store.SqliteScanStore`, so the service cannot tell them apart: both
run the same programs (:mod:`.store_sql`); this module is the way PostgreSQL runs them.

* **Writes** are queued when the method is called (queue order is commit order) and one writer
  task, on its own connection, commits what it finds in one transaction, each operation in its
  own savepoint (a bad one fails only its own future). Futures resolve after the COMMIT.
* **PostgreSQL down**: the writer keeps the queue and retries the same batch with backoff
  (0.1 s doubling to 2 s), logging an ERROR when it goes down, a WARNING every 30 s while it is
  down (with the number of writes held), a WARNING when it is back. :attr:`available` is False
  meanwhile. Beyond ``max_pending_writes`` held operations a new write fails at once with
  :class:`~.store.StoreUnavailable`. Reads while down raise :class:`~.store.StoreUnavailable`.
* **Exactly once**: a batch whose COMMIT was sent but not acknowledged (the connection dropped)
  may or may not have committed. Every batch therefore stamps its number on this writer's row
  of ``store_writers`` (locked ``FOR UPDATE`` first); the retry reads the row and, if the stamp
  is there, resolves the futures with the first attempt's results instead of applying the
  operations twice. ``insert_scan`` is also ``ON CONFLICT DO NOTHING`` and ``complete_scan``
  replaces the scan's indicators, so they are idempotent on their own.
* **Migrations** (the schema versions SQLite has, in PostgreSQL's types) run under
  ``pg_advisory_xact_lock`` (gateways starting together apply them once); ``schema_version``
  records the last one; a newer database is refused.
* **Lists**: ``add_entry``/``remove_entry`` ``NOTIFY malwaresnipper_lists`` in their transaction,
  and :meth:`watch_lists` LISTENs on a dedicated connection, so a change on one gateway reaches
  the others when it commits.
* One event loop: open the store on the loop that uses it. ``append_events`` may also be called
  from another thread (it only queues); everything else is called on that loop.
* Text columns are ``COLLATE "C"`` and ``row_id`` stands in for SQLite's rowid (see
  :data:`~.store_sql.POSTGRES`), so orders and ranges are SQLite's whatever the server's locale.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import psycopg
import psycopg_pool
from psycopg.pq import ConnStatus
from psycopg.rows import dict_row, tuple_row

from . import store_sql
from .store import StoreUnavailable
from .store_sql import POSTGRES, Op, Program, Rows, Run, RunMany, SqlScanStore, Tuples

log = logging.getLogger(__name__)

LISTS_CHANNEL = "malwaresnipper_lists"
#: pg_advisory_xact_lock key for migrations: any fixed 64-bit number shared by every gateway.
MIGRATION_LOCK = 0x4D53_5F53_544F_5245  # "MS_STORE"

#: The PostgreSQL DDL of each schema version (the same versions as SQLite's).
PG_MIGRATIONS: list[str] = store_sql.migrations(POSTGRES)
#: Versions recorded before both backends shared one list: the single PostgreSQL migration of
#: those releases made, in one step, the schema that is now version 3.
LEGACY_VERSIONS = {1: 3}

T = TypeVar("T")


async def run_program(conn: psycopg.AsyncConnection[Any], program: Program[T]) -> T:
    """Run ``program``'s statements on ``conn``, sending each one's result back."""
    reply: Any = None
    while True:
        try:
            step = program.send(reply)
        except StopIteration as done:
            return cast(T, done.value)
        match step:
            case Run(sql, args):
                reply = (await conn.execute(sql, args)).rowcount
            case RunMany(sql, rows):
                if rows:
                    async with conn.cursor() as cur:
                        await cur.executemany(sql, rows)
                reply = None
            case Rows(sql, args):
                async with conn.cursor(row_factory=dict_row) as dcur:
                    await dcur.execute(sql, args)
                    reply = await dcur.fetchall()
            case Tuples(sql, args):
                async with conn.cursor(row_factory=tuple_row) as tcur:
                    await tcur.execute(sql, args)
                    reply = await tcur.fetchall()


@dataclass
class _Item:
    op: Op[Any]
    fut: concurrent.futures.Future[Any]
    after: Callable[[], None] | None = None
    #: NOTIFY the other gateways' list watchers in the same transaction.
    lists_changed: bool = False


@dataclass
class _Batch:
    number: int
    items: list[_Item]
    #: Results of the last attempt that reached COMMIT (used if that COMMIT turns out to have held).
    committing: list[tuple[bool, Any]] | None = None
    attempts: int = 0


class _ConnectionLost(Exception):
    """The writer's connection broke mid-batch: retry the same batch on a new one."""


@dataclass
class _Watcher:
    callback: Callable[[], None]
    task: asyncio.Task[None] | None = None
    conn: psycopg.AsyncConnection[Any] | None = None
    #: Set once the first connection attempt is over (listening, or failed and retrying).
    settled: asyncio.Event = field(default_factory=asyncio.Event)


def _lost(conn: psycopg.AsyncConnection[Any] | None) -> bool:
    """True when ``conn`` can no longer be used (closed, or the server/socket went away)."""
    return conn is None or conn.closed or conn.broken or conn.pgconn.status == ConnStatus.BAD


class PostgresScanStore(SqlScanStore):
    """The shared :class:`~.store.ScanStore`: a read pool, one writer connection, one listener."""

    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        max_pending_writes: int = 10_000,
        gateway_id: str = "",
        read_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        close_timeout: float = 10.0,
        health_interval: float = 5.0,
        max_batch: int = 1000,
    ) -> None:
        """``gateway_id``: scans inserted without one get it, and ``open()`` marks this gateway's
        (and only this gateway's) unfinished scans interrupted; '' skips that step, since the
        other gateways' pending scans are still running."""
        self.dsn = dsn
        self.pool_size = max(1, pool_size)
        self.max_pending_writes = max_pending_writes
        self.gateway_id = gateway_id
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.health_interval = health_interval
        self.max_batch = max_batch
        self.commits = 0
        self._writer_id = uuid.uuid4().hex
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._queue: collections.deque[_Item] = collections.deque()
        self._batch: _Batch | None = None
        self._batch_counter = 0
        self._wake: asyncio.Event | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._down_since: float | None = None
        self._last_down_log = 0.0
        self._rejected = 0
        self._last_reject_log = 0.0
        self._watchers: list[_Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        # Keepalives: a silently dead peer is noticed in seconds, not after the OS's two hours.
        return {
            "connect_timeout": max(1, int(self.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "application_name": "malwaresnipper",
        }

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, **self._connect_kwargs())

    async def open(self) -> None:
        """Connect, migrate, mark this gateway's unfinished scans, start the writer."""
        self._stopping = False
        try:
            self._conn = await self._connect()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot reach the PostgreSQL history store: {exc}".strip()) from exc
        try:
            await migrate(self._conn)
            now = time.time()
            await self._conn.execute(
                "INSERT INTO store_writers(writer_id, batch_no, ts) VALUES (%s, 0, %s)", (self._writer_id, now)
            )
            if self.gateway_id:
                marked = await run_program(self._conn, store_sql.mark_interrupted(POSTGRES, self.gateway_id))
                if marked:
                    log.info("history store: %d unfinished scans of gateway %r marked interrupted",
                             marked, self.gateway_id)
            self._pool = psycopg_pool.AsyncConnectionPool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.read_timeout,
                kwargs={"autocommit": True, **self._connect_kwargs()},
                check=psycopg_pool.AsyncConnectionPool.check_connection,
                open=False,
                name="malwaresnipper-store-readers",
            )
            await self._pool.open(wait=True, timeout=self.read_timeout + self.connect_timeout)
        except BaseException as exc:
            await self._conn.close()
            self._conn = None
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            if isinstance(exc, (psycopg.OperationalError, psycopg_pool.PoolTimeout)):
                raise StoreUnavailable(f"cannot reach the PostgreSQL history store: {exc}".strip()) from exc
            raise
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._writer_task = asyncio.create_task(self._run_writer(), name="malwaresnipper-store-writer")

    async def close(self) -> None:
        """Flush (waiting at most ``close_timeout``), then close the writer, listeners and pool."""
        for watcher in self._watchers:
            if watcher.task is not None:
                watcher.task.cancel()
        for watcher in self._watchers:
            if watcher.task is not None:
                await asyncio.gather(watcher.task, return_exceptions=True)
        self._watchers = []
        if self._writer_task is not None:
            self._stopping = True
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._writer_task), self.close_timeout)
            except TimeoutError:
                self._writer_task.cancel()
                await asyncio.gather(self._writer_task, return_exceptions=True)
            self._writer_task = None
            self._fail_pending(StoreUnavailable("the history store closed before PostgreSQL came back"))
        if self._conn is not None and not _lost(self._conn):
            with contextlib.suppress(psycopg.Error):  # a clean exit needs no exactly-once stamp any more
                await self._conn.execute("DELETE FROM store_writers WHERE writer_id=%s", (self._writer_id,))
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _fail_pending(self, exc: Exception) -> None:
        lost = list(self._batch.items) if self._batch else []
        lost += list(self._queue)
        self._batch = None
        self._queue.clear()
        failed = 0
        for item in lost:
            if not item.fut.done():
                item.fut.set_exception(exc)
                failed += 1
        if failed:
            log.error("history store: %d writes were never committed (PostgreSQL unreachable at close)", failed)

    @property
    def available(self) -> bool:
        """True while the writer runs and its last contact with PostgreSQL succeeded."""
        return self._writer_task is not None and not self._writer_task.done() and self._down_since is None

    @property
    def pending_writes(self) -> int:
        """Operations queued or in the batch being committed."""
        return len(self._queue) + (len(self._batch.items) if self._batch else 0)

    @property
    def writer_commits(self) -> int:
        return self.commits

    # -- the writer --------------------------------------------------------------------------

    def _submit(self, op: Op[Any], after: Callable[[], None] | None = None, *,
                lists_changed: bool = False) -> concurrent.futures.Future[Any]:
        """Queue ``op`` NOW (so queue order is call order); the future resolves after COMMIT.
        ``after`` runs on the event loop; ``lists_changed`` NOTIFYs the other gateways."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._writer_task is None or self._writer_task.done() or self._stopping:
            raise RuntimeError("the history store is not open (or its writer stopped; see the log)")
        if self.pending_writes >= self.max_pending_writes:
            self._rejected += 1
            now = time.monotonic()
            if now - self._last_reject_log >= 5.0:
                log.error("history store: %d writes already held for PostgreSQL (max_pending_writes); "
                          "rejected %d new writes", self.pending_writes, self._rejected)
                self._last_reject_log = now
                self._rejected = 0
            fut.set_exception(StoreUnavailable(
                f"PostgreSQL history store unavailable: {self.pending_writes} writes already pending"
            ))
            return fut
        self._queue.append(_Item(op, fut, after, lists_changed))
        assert self._wake is not None and self._loop is not None
        try:
            same_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._wake.set()
        else:  # append_events may be called from another thread, as with SQLite
            self._loop.call_soon_threadsafe(self._wake.set)
        return fut

    def _take_batch(self) -> _Batch | None:
        items: list[_Item] = []
        while self._queue and len(items) < self.max_batch:
            item = self._queue.popleft()
            # A caller that gave up (cancelled its await) cancels its future: skip the op.
            if item.fut.set_running_or_notify_cancel():
                items.append(item)
        if not items:
            return None
        self._batch_counter += 1
        return _Batch(self._batch_counter, items)

    async def _run_writer(self) -> None:
        assert self._wake is not None
        backoff = 0.1
        while True:
            if self._batch is None and not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.health_interval)
                except TimeoutError:
                    # Idle: check the connection so ``available`` and the logs tell the truth.
                    try:
                        await self._ensure_connection()
                        assert self._conn is not None
                        await self._conn.execute("SELECT 1")
                    except (psycopg.Error, OSError) as exc:
                        self._went_down(exc)
                        await self._close_conn()
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 2.0)
                        continue
                    self._came_back()
                    backoff = 0.1
                continue
            try:
                await self._ensure_connection()
                if self._batch is None:
                    self._batch = self._take_batch()
                    if self._batch is None:
                        continue
                await self._run_batch(self._batch)
            except (_ConnectionLost, psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self._went_down(exc)
                await self._close_conn()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # noqa: BLE001 - a bug must not kill the writer silently
                log.exception("history store: writer failed on a batch; its writes fail")
                if self._batch is not None:
                    for item in self._batch.items:
                        if not item.fut.done():
                            item.fut.set_exception(StoreUnavailable("history store writer error (see log)"))
                    self._batch = None
                continue
            self._batch = None
            self._came_back()
            backoff = 0.1

    async def _ensure_connection(self) -> None:
        if _lost(self._conn):
            await self._close_conn()
            self._conn = await self._connect()
            await self._conn.execute(
                "INSERT INTO store_writers(writer_id, batch_no, ts) VALUES (%s, 0, %s)"
                " ON CONFLICT (writer_id) DO NOTHING",
                (self._writer_id, time.time()),
            )

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                await conn.close()

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._last_down_log = now
            log.error("history store: PostgreSQL unreachable (%s); holding %d writes and retrying",
                      str(exc).strip() or type(exc).__name__, self.pending_writes)
        elif now - self._last_down_log >= 30.0:
            self._last_down_log = now
            log.warning("history store: PostgreSQL still unreachable after %.0f s; %d writes pending (max %d)",
                        now - self._down_since, self.pending_writes, self.max_pending_writes)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning("history store: PostgreSQL reachable again after %.1f s; %d writes pending",
                        time.monotonic() - self._down_since, self.pending_writes)
            self._down_since = None

    async def _run_batch(self, batch: _Batch) -> None:
        """One transaction: check this batch was not already committed, a savepoint per op, stamp, COMMIT."""
        conn = self._conn
        assert conn is not None
        batch.attempts += 1
        outcomes: list[tuple[bool, Any]] = []
        already = False
        try:
            async with conn.transaction():
                row = None
                if batch.committing is not None:  # a retry after a COMMIT that may have held
                    cur = await conn.execute(
                        "SELECT batch_no FROM store_writers WHERE writer_id=%s FOR UPDATE", (self._writer_id,)
                    )
                    row = await cur.fetchone()
                if row is not None and row[0] >= batch.number and batch.committing is not None:
                    # The previous attempt's COMMIT held though its acknowledgement was lost.
                    already = True
                else:
                    if len(batch.items) == 1:
                        # Alone in its batch, an op needs no savepoint: if it fails, the batch
                        # (just this op) fails below, as "transaction failed". Two round trips fewer.
                        outcomes.append((True, await run_program(conn, batch.items[0].op())))
                    else:
                        for item in batch.items:
                            try:
                                async with conn.transaction():
                                    outcomes.append((True, await run_program(conn, item.op())))
                            except psycopg.Error as exc:
                                if _lost(conn):
                                    raise _ConnectionLost(str(exc)) from exc
                                outcomes.append((False, exc))
                            except Exception as exc:  # noqa: BLE001 - one bad op fails alone
                                if _lost(conn):
                                    raise _ConnectionLost(str(exc)) from exc
                                outcomes.append((False, exc))
                    if any(ok and item.lists_changed for (ok, _), item in zip(outcomes, batch.items, strict=True)):
                        await conn.execute("SELECT pg_notify(%s, '')", (LISTS_CHANNEL,))
                    await conn.execute(
                        "INSERT INTO store_writers(writer_id, batch_no, ts) VALUES (%s, %s, %s)"
                        " ON CONFLICT (writer_id) DO UPDATE SET batch_no=excluded.batch_no, ts=excluded.ts",
                        (self._writer_id, batch.number, time.time()),
                    )
                    batch.committing = outcomes
                # leaving the block sends COMMIT
        except _ConnectionLost:
            raise
        except psycopg.Error as exc:
            if _lost(conn):
                raise _ConnectionLost(str(exc)) from exc
            # The transaction itself failed (not one op), or the one op of a single-op batch:
            # every op of the batch fails, as on SQLite.
            if len(batch.items) > 1:
                log.error("history store: transaction failed: %r", exc)
            outcomes = [(False, exc)] * len(batch.items)
            batch.committing = None
            self._resolve(batch, outcomes)
            return
        self.commits += 1
        if already:
            log.warning("history store: batch %d had committed before the connection dropped; not replayed",
                        batch.number)
        self._resolve(batch, batch.committing if already else outcomes)

    def _resolve(self, batch: _Batch, outcomes: list[tuple[bool, Any]] | None) -> None:
        assert outcomes is not None
        for (ok, value), item in zip(outcomes, batch.items, strict=True):
            if item.fut.done():
                continue
            if ok:
                item.fut.set_result(value)
                if item.after is not None:
                    try:
                        item.after()
                    except Exception:  # noqa: BLE001
                        log.exception("store after-commit callback failed")
            else:
                item.fut.set_exception(value)

    # -- reads -------------------------------------------------------------------------------

    async def _read(self, program: Program[T]) -> T:
        if self._pool is None:
            raise RuntimeError("store is not open")
        # While the writer knows PostgreSQL is down, fail fast rather than make every API call wait.
        timeout = self.read_timeout if self._down_since is None else min(self.read_timeout, 1.0)
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                return await run_program(conn, program)
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(f"PostgreSQL history store unavailable (no connection in "
                                   f"{timeout:g} s)") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL history store unavailable: {exc}".strip()) from exc

    # -- lists -------------------------------------------------------------------------------

    async def watch_lists(self, callback: Callable[[], None]) -> None:
        """LISTEN for list changes (any gateway's, this one's included) on a dedicated connection.

        Returns once listening (or after the first attempt failed: it keeps retrying in the
        background). After a reconnection ``callback`` runs once, since changes may have been missed.
        """
        if self._pool is None:
            raise RuntimeError("store is not open")
        watcher = _Watcher(callback)
        watcher.task = asyncio.create_task(self._watch(watcher), name="malwaresnipper-store-lists-listener")
        self._watchers.append(watcher)
        settled = asyncio.ensure_future(watcher.settled.wait())
        try:
            await asyncio.wait([watcher.task, settled], timeout=self.connect_timeout + 1,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()

    async def _watch(self, watcher: _Watcher) -> None:
        backoff = 0.1
        first = True
        down_since: float | None = None
        while True:
            try:
                conn = await self._connect()
                watcher.conn = conn
                try:
                    await conn.execute(f"LISTEN {LISTS_CHANNEL}")
                    watcher.settled.set()
                    if down_since is not None:
                        log.warning("history store: list-change listener reconnected after %.1f s",
                                    time.monotonic() - down_since)
                        down_since = None
                    if not first:
                        self._call(watcher.callback)  # changes made while we were away
                    first = False
                    backoff = 0.1
                    while True:
                        async for _ in conn.notifies(timeout=self.health_interval):
                            self._call(watcher.callback)
                        await conn.execute("SELECT 1")  # idle: prove the connection is alive
                finally:
                    watcher.conn = None
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                first = False
                watcher.settled.set()
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("history store: list-change listener lost PostgreSQL (%s); reconnecting",
                              str(exc).strip() or type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # noqa: BLE001 - the listener must survive a failing callback
            log.exception("lists watch callback failed")

    # -- maintenance -------------------------------------------------------------------------

    def _retention(self, cutoff: float | None, rows: int) -> Program[int]:
        removed = yield from store_sql.apply_retention(POSTGRES, cutoff, rows)
        # Writers (gateway processes) silent for a week are gone.
        yield POSTGRES.run("DELETE FROM store_writers WHERE ts < ? AND writer_id <> ?",
                           (time.time() - 7 * 86_400, self._writer_id))
        return removed


async def migrate(conn: psycopg.AsyncConnection[Any]) -> int:
    """Apply the migrations the database has not seen, under an advisory lock; return the version.

    ``conn`` is in autocommit mode; everything happens in one transaction (DDL is transactional
    in PostgreSQL), so a gateway that starts at the same moment waits and then sees the result.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        await conn.execute("INSERT INTO schema_version(id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        cur = await conn.execute("SELECT version FROM schema_version WHERE id = 1")
        row = await cur.fetchone()
        assert row is not None  # inserted just above
        recorded = row[0]
        current = LEGACY_VERSIONS.get(recorded, recorded)
        store_sql.check_schema_version(current, elsewhere="another database")
        for version in range(current, len(PG_MIGRATIONS)):
            await conn.execute(PG_MIGRATIONS[version])
        if recorded != len(PG_MIGRATIONS):
            await conn.execute("UPDATE schema_version SET version = %s WHERE id = 1", (len(PG_MIGRATIONS),))
    return len(PG_MIGRATIONS)
