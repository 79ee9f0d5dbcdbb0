"""Scan history, the event log (for replay), the API-managed lists and counters.

:class:`ScanStore` is the small interface the service talks to; :class:`SqliteScanStore` is the
embedded default (one file in the data directory); :class:`~.store_postgres.PostgresScanStore`
implements the same coroutines on a PostgreSQL server shared by several gateways (imported only
when ``[store] backend = "postgres"``, so psycopg stays optional). :func:`open_store` picks one.
Both run the same SQL (:mod:`.store_sql`); each is only the way its backend runs it.

SQLite details
--------------
* WAL mode, ``synchronous=NORMAL``: a committed transaction survives the process being killed
  (SIGKILL); only a power cut can lose the last transactions.
* Every write goes through one writer thread with its own connection. It drains its queue and
  commits what it found in one transaction (each operation in its own SAVEPOINT, so a bad one
  cannot undo the others); the awaiting coroutine resumes only after the COMMIT. Reads run on a
  small pool of reader threads, each with its own connection. The event loop never touches
  SQLite.
* Schema migrations are numbered; ``PRAGMA user_version`` records the last one applied.
* Retention removes scans (and their events, reports and overrides) older than ``retention_days``
  and the oldest rows beyond ``retention_rows``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from ..engine.errors import MalwareSnipperError
from .store_sql import (
    DIALECTS,
    SQLITE,
    Op,
    Program,
    Rows,
    Run,
    RunMany,
    SqlScanStore,
    Tuples,
    check_schema_version,
    filter_clause,
    mark_interrupted,
    migrations,
    reverse_domain,
)
from .store_sql import iso_ts as iso_ts  # re-exported: the timestamp format of every event

if TYPE_CHECKING:
    from ..settings import StoreSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_NAMES = ("allow", "block")
LIST_KINDS = ("domain", "url", "sha256")

#: The SQLite DDL of each schema version (``PRAGMA user_version`` counts those applied).
MIGRATIONS: list[str] = migrations(SQLITE)


class StoreUnavailable(MalwareSnipperError):
    """The history backend cannot be reached (PostgreSQL down, or too many writes held for it).

    The API answers 503 for it: the request may succeed later, nothing is wrong with it.
    """


@dataclass(frozen=True)
class ScanFilter:
    """The filters shared by ``GET /api/v1/scans`` and the export."""

    level: str | None = None
    method: str | None = None
    domain: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None
    #: Exact ``gateway_id`` (several gateways sharing one history).
    gateway: str | None = None

    def where(self, dialect: str = "sqlite") -> tuple[str, list[Any]]:
        """The WHERE clause ('' for no filter) and its arguments, for ``sqlite`` or ``postgres``."""
        d = DIALECTS[dialect]
        clause, args = filter_clause(self, d)
        return d.render(clause), args


@dataclass
class NewScan:
    """A scan as recorded when it is accepted (before its verdict exists)."""

    scan_id: str
    ts: float
    url: str
    domain: str
    title: str | None
    method: str
    content_hash: str
    #: The gateway that accepted the scan ('' when only one gateway writes this history).
    gateway_id: str = ""
    #: sha256 of the body (a script's text, a page's HTML; '' for a URL alone): what a lookup finds
    body_sha256: str = ""


@dataclass
class ScanResult:
    """What completes a scan record."""

    scan_id: str
    status: str  # "complete" | "failed" | "unscanned"
    risk_score: float
    threat_level: str
    classification: str
    blocked: bool
    duration_ms: float
    verdict: dict[str, Any] | None
    error: str | None = None
    indicators: list[dict[str, Any]] = field(default_factory=list)
    #: a page whose MALICIOUS scripts the gateway replaced (the page itself was served)
    scripts_blocked: bool = False


class ScanStore(Protocol):
    """What the service needs from a history backend.

    Writes are queued when the method is called (so call order is commit order) and return a
    future (not a coroutine: the write is queued even if nobody awaits it, and a caller may attach
    ``add_done_callback``) that resolves after the COMMIT. Reads and writes may raise
    :class:`StoreUnavailable`.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def insert_scan(self, scan: NewScan) -> asyncio.Future[None]: ...
    def complete_scan(self, result: ScanResult) -> asyncio.Future[None]: ...
    def rejudge_scan(self, result: ScanResult) -> asyncio.Future[int]:
        """Replace a completed scan's verdict (level, reasons, ``scripts_blocked``); 0: not completed."""
        ...
    def link_resource(self, page_scan_id: str, resource_scan_id: str, kind: str, *, url: str = "",
                      size: int | None = None, sha256: str | None = None) -> asyncio.Future[None]: ...
    def append_events(self, events: Sequence[tuple[int, float, str | None, str]],
                      on_commit: Callable[[], None] | None = None) -> concurrent.futures.Future[None]:
        """Queue events for the log (from any thread); await the result with ``asyncio.wrap_future``
        (never block the event loop on ``.result()``: the PostgreSQL writer runs on that loop)."""
        ...
    async def flush(self) -> None: ...
    async def last_seq(self) -> int: ...
    async def events_after(self, after: int, upto: int, limit: int = 100_000) -> list[str]: ...
    async def get_scan(self, scan_id: str) -> dict[str, Any] | None: ...
    async def list_scans(self, flt: ScanFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...
    async def export_rows(self, flt: ScanFilter, limit: int, full: bool = False) -> list[dict[str, Any]]: ...
    async def lookup_verdicts(self, url_keys: Sequence[str], sha256s: Sequence[str],
                              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The newest completed verdict by URL key and by body sha256 (see store_sql)."""
        ...
    async def recent(self, limit: int) -> list[dict[str, Any]]: ...
    async def stats(self, window_s: float, bucket_s: float) -> dict[str, Any]: ...
    async def list_entries(self, name: str) -> list[dict[str, Any]]: ...
    async def add_entry(self, name: str, entry: str, kind: str, note: str) -> dict[str, Any]: ...
    async def remove_entry(self, name: str, entry: str) -> bool: ...
    async def add_report(self, scan_id: str, verdict: str, source: str, comment: str = "",
                         *, gateway_id: str = "") -> dict[str, Any] | None: ...
    async def add_override(self, scan_id: str, action: str, source: str,
                           *, gateway_id: str = "") -> dict[str, Any] | None: ...
    async def feedback_reports(self, since: float | None = None, limit: int = 1_000_000) -> list[dict[str, Any]]: ...
    async def incr_counter(self, name: str, amount: int = 1) -> None: ...
    async def counters(self) -> dict[str, int]: ...
    async def apply_retention(self, days: int, rows: int) -> int: ...
    async def watch_lists(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) whenever another gateway changes a list."""
        ...
    @property
    def available(self) -> bool:
        """False while the backend cannot be reached (writes are being held, reads fail)."""
        ...


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the pragmas every connection of ours uses."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the file has not seen yet; return the resulting version."""
    conn.create_function("ms_reverse_domain", 1, reverse_domain, deterministic=True)
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    check_schema_version(current, elsewhere="another data dir")
    for version in range(current, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def run_program(conn: sqlite3.Connection, program: Program[T]) -> T:
    """Run ``program``'s statements on ``conn``, sending each one's result back."""
    reply: Any = None
    while True:
        try:
            step = program.send(reply)
        except StopIteration as done:
            return cast(T, done.value)
        match step:
            case Run(sql, args):
                reply = conn.execute(sql, args).rowcount
            case RunMany(sql, rows):
                conn.executemany(sql, rows)
                reply = None
            case Rows(sql, args) | Tuples(sql, args):  # a sqlite3.Row is read by name and by position
                reply = conn.execute(sql, args).fetchall()


_Op = Callable[[sqlite3.Connection], Any]
_STOP = object()


class _Writer(threading.Thread):
    """The one thread that writes: batches queued operations into one transaction each."""

    def __init__(self, path: Path, max_batch: int = 1000) -> None:
        super().__init__(name="malwaresnipper-store-writer", daemon=True)
        self.path = path
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self.commits = 0

    def submit(self, op: _Op, after: Callable[[], None] | None = None) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.queue.put((op, fut, after))
        return fut

    def run(self) -> None:
        try:
            conn = connect(self.path)
            migrate(conn)
            self.ready.set_result(True)
        except BaseException as exc:  # noqa: BLE001 - reported to open()
            self.ready.set_exception(exc)
            return
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    break
                batch = [item]
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                # A caller that gave up (its awaiting task was cancelled) cancels its future; such
                # an operation is skipped, and its future is never set twice.
                batch = [b for b in batch if b[1].set_running_or_notify_cancel()]
                if batch:
                    self._run_batch(conn, batch)
                if stop:
                    break
        finally:
            try:
                conn.execute("PRAGMA optimize")
                conn.close()
            except sqlite3.Error:
                pass

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[_Op, concurrent.futures.Future, Any]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _fut, _after in batch:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:  # noqa: BLE001 - one bad op fails alone
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # noqa: BLE001 - the whole transaction failed (disk full ...)
            log.error("history store: transaction failed: %r", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        for (ok, value), (_op, fut, after) in zip(outcomes, batch, strict=True):
            if ok:
                fut.set_result(value)
                if after is not None:
                    try:
                        after()
                    except Exception:  # noqa: BLE001
                        log.exception("store after-commit callback failed")
            else:
                fut.set_exception(value)

    def stop(self) -> None:
        self.queue.put(_STOP)


class SqliteScanStore(SqlScanStore):
    """The embedded :class:`ScanStore`: one SQLite file, a writer thread, reader threads."""

    dialect = SQLITE

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._readers_n = readers
        self._writer: _Writer | None = None
        self._reader_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            # History names every site the user visited: readable by its owner only.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._writer = _Writer(self.path)
        self._writer.start()
        await asyncio.wrap_future(self._writer.ready)
        self._reader_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._readers_n, thread_name_prefix="malwaresnipper-store-reader"
        )
        # One process owns the file: every unfinished scan is from a run that is over.
        await self._write(lambda: mark_interrupted(SQLITE, None))

    async def close(self) -> None:
        if self._writer is not None:
            await self.flush()
            self._writer.stop()
            await asyncio.to_thread(self._writer.join, 30)
            self._writer = None
        if self._reader_pool is not None:
            pool = self._reader_pool
            self._reader_pool = None
            await asyncio.to_thread(self._close_readers, pool)

    def _close_readers(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        pool.shutdown(wait=True)
        with self._conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):  # made by another thread: the GC closes it
                conn.close()

    # -- the executor ------------------------------------------------------------------------

    def _submit(self, op: Op[Any], after: Callable[[], None] | None = None, *,
                lists_changed: bool = False) -> concurrent.futures.Future[Any]:
        """Queue ``op`` for the writer thread NOW (queue order is call order). ``after`` runs on
        that thread. ``lists_changed`` needs nothing: one process owns the file."""
        if self._writer is None or not self._writer.is_alive():
            raise RuntimeError("the history store is not open (or its writer stopped; see the log)")
        return self._writer.submit(lambda c: run_program(c, op()), after)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, program: Program[T]) -> T:
        """Run ``program`` on a reader thread (its own connection): the event loop never waits on SQLite."""
        if self._reader_pool is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, lambda: run_program(self._reader(), program))

    # -- maintenance -------------------------------------------------------------------------

    async def integrity_check(self) -> str:
        return await self._read(_integrity_check())

    @property
    def writer_commits(self) -> int:
        return self._writer.commits if self._writer else 0

    @property
    def available(self) -> bool:
        """True while the writer thread runs (a local file has no outage to wait out)."""
        return self._writer is not None and self._writer.is_alive()

    async def watch_lists(self, callback: Callable[[], None]) -> None:
        """Nothing to watch: one process owns the file, and it changes lists itself."""
        return None


def _integrity_check() -> Program[str]:
    return str((yield Tuples("PRAGMA integrity_check"))[0][0])


def open_store(settings: StoreSettings, data_dir: Path, *, gateway_id: str = "") -> ScanStore:
    """The store for ``[store] backend``: ``sqlite`` (default) or ``postgres``.

    ``gateway_id`` scopes start-up clean-up on a shared database: only this gateway's unfinished
    scans are marked interrupted.

    psycopg is imported only for ``postgres``, so a single gateway never needs it installed.
    """
    from ..engine.errors import ConfigError

    if settings.backend == "sqlite":
        path = Path(settings.path).expanduser() if settings.path else Path(data_dir) / "history.sqlite3"
        return SqliteScanStore(path)
    if settings.backend == "postgres":
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "[store] backend = 'postgres' needs psycopg 3 and psycopg_pool "
                f"({exc}); install them with: pip install 'malwaresnipper[cluster]'"
            ) from None
        from .store_postgres import PostgresScanStore

        return PostgresScanStore(
            settings.dsn, pool_size=settings.pool_size, max_pending_writes=settings.max_pending_writes,
            gateway_id=gateway_id,
        )
    raise ConfigError(f"[store] backend = {settings.backend!r} is not available (known: 'sqlite', 'postgres')")
