"""Scan history, the event log (for replay), the API-managed lists and counters.

:class:`ScanStore` is the small interface the service talks to; :class:`SqliteScanStore` is the
embedded default (one file in the data directory); :class:`~.store_postgres.PostgresScanStore`
implements the same coroutines on a PostgreSQL server shared by several gateways (imported only
when ``[store] backend = "postgres"``, so psycopg stays optional). :func:`open_store` picks one.

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
* Retention removes scans (and their events) older than ``retention_days`` and the oldest rows
  beyond ``retention_rows``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.errors import MalwareSnipperError

if TYPE_CHECKING:
    from ..settings import StoreSettings

log = logging.getLogger(__name__)

LIST_NAMES = ("allow", "block")
LIST_KINDS = ("domain", "url", "sha256")

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE scans (
        scan_id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        url TEXT NOT NULL,
        domain TEXT NOT NULL DEFAULT '',
        title TEXT,
        method TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        risk_score REAL,
        threat_level TEXT,
        classification TEXT,
        blocked INTEGER NOT NULL DEFAULT 0,
        top_indicator TEXT,
        duration_ms REAL,
        content_hash TEXT,
        verdict TEXT,
        error TEXT,
        completed_ts REAL
    );
    CREATE INDEX scans_ts ON scans(ts);
    CREATE INDEX scans_level_ts ON scans(threat_level, ts);
    CREATE INDEX scans_method_ts ON scans(method, ts);
    CREATE INDEX scans_domain_ts ON scans(domain, ts);
    CREATE TABLE scan_indicators (
        scan_id TEXT NOT NULL,
        ts REAL NOT NULL,
        indicator_id TEXT NOT NULL,
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        severity TEXT NOT NULL
    );
    CREATE INDEX scan_indicators_ts ON scan_indicators(ts);
    CREATE INDEX scan_indicators_scan ON scan_indicators(scan_id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        scan_id TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE TABLE lists (
        list TEXT NOT NULL,
        entry TEXT NOT NULL,
        kind TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        ts REAL NOT NULL,
        PRIMARY KEY (list, entry)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # 2: fast domain filter (reversed labels, so "a subdomain of x" is an index range) and
    #    covering indexes for the stats queries
    """
    ALTER TABLE scans ADD COLUMN rdomain TEXT NOT NULL DEFAULT '';
    UPDATE scans SET rdomain = ms_reverse_domain(domain);
    CREATE INDEX scans_rdomain_ts ON scans(rdomain, ts);
    CREATE INDEX scans_ts_level ON scans(ts, threat_level);
    CREATE INDEX scans_level_domain ON scans(threat_level, domain);
    CREATE INDEX scans_blocked ON scans(blocked) WHERE blocked = 1;
    CREATE INDEX scan_indicators_id ON scan_indicators(indicator_id, category, title);
    CREATE INDEX scan_indicators_category ON scan_indicators(category);
    """,
    # 3: several gateways share one history (PostgreSQL); the SQLite file carries the column too
    #    so rows, summaries and filters look the same on both backends
    """
    ALTER TABLE scans ADD COLUMN gateway_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX scans_gateway_ts ON scans(gateway_id, ts);
    """,
]

LEVELS = ("BENIGN", "SUSPICIOUS", "MALICIOUS")
METHODS = ("PROXY", "EXTENSION")


class StoreUnavailable(MalwareSnipperError):
    """The history backend cannot be reached (PostgreSQL down, or too many writes held for it).

    The API answers 503 for it: the request may succeed later, nothing is wrong with it.
    """


def reverse_domain(domain: str) -> str:
    """``login.bad.example`` -> ``example.bad.login``: subdomains of x sort right after x."""
    return ".".join(reversed(domain.split("."))) if domain else ""


def iso_ts(epoch: float) -> str:
    """``2026-11-26T12:00:00.123Z`` (UTC, milliseconds), the format of every timestamp we emit."""
    t = time.gmtime(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int((epoch % 1) * 1000):03d}Z"


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
        """The WHERE clause and its arguments, for ``sqlite`` (``?``) or ``postgres`` (``%s``).

        On PostgreSQL ``q`` uses ILIKE: SQLite's LIKE ignores ASCII case, and the text columns
        there are ``COLLATE "C"`` so ILIKE folds ASCII only, as SQLite does.
        """
        p = "%s" if dialect == "postgres" else "?"
        like = "ILIKE" if dialect == "postgres" else "LIKE"
        clauses: list[str] = []
        args: list[Any] = []
        if self.level:
            clauses.append(f"threat_level = {p}")
            args.append(self.level)
        if self.method:
            clauses.append(f"method = {p}")
            args.append(self.method)
        if self.domain:
            # The domain itself or any subdomain: an index range on the reversed labels.
            rdomain = reverse_domain(self.domain)
            clauses.append(f"(rdomain = {p} OR (rdomain > {p} AND rdomain < {p}))")
            args += [rdomain, rdomain + ".", rdomain + "/"]
        if self.gateway:
            clauses.append(f"gateway_id = {p}")
            args.append(self.gateway)
        if self.since is not None:
            clauses.append(f"ts >= {p}")
            args.append(self.since)
        if self.until is not None:
            clauses.append(f"ts < {p}")
            args.append(self.until)
        if self.q:
            pattern = "%" + _like_escape(self.q) + "%"
            clauses.append(f"(url {like} {p} ESCAPE '\\' OR title {like} {p} ESCAPE '\\')")
            args += [pattern, pattern]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


STATS_TOP_DOMAINS = (
    "SELECT domain, COUNT(*) AS n FROM scans WHERE threat_level IN ('SUSPICIOUS','MALICIOUS')"
    " AND domain <> '' GROUP BY domain ORDER BY n DESC, domain LIMIT 10"
)
STATS_TOP_INDICATORS = (
    "SELECT indicator_id, MAX(title), MAX(category), COUNT(*) AS n FROM scan_indicators"
    " GROUP BY indicator_id ORDER BY n DESC, indicator_id LIMIT 10"
)
STATS_CATEGORIES = "SELECT category, COUNT(*) AS n FROM scan_indicators GROUP BY category ORDER BY n DESC, category"


@dataclass
class StatsRows:
    """What the statistics queries return; each backend runs them in its own SQL dialect."""

    levels: Sequence[Sequence[Any]]  # (threat_level, count)
    methods: Sequence[Sequence[Any]]  # (method, count)
    blocked: int
    buckets: Sequence[Sequence[Any]]  # (bucket index, scans, threats)
    domains: Sequence[Sequence[Any]]  # (domain, count)
    indicators: Sequence[Sequence[Any]]  # (id, title, category, count)
    categories: Sequence[Sequence[Any]]  # (category, count)


def stats_payload(rows: StatsRows, *, now: float, start: float, bucket_s: float) -> dict[str, Any]:
    """``GET /api/v1/stats`` from the query rows: one shape whichever backend ran them."""
    by_level = {level: 0 for level in LEVELS}
    total = 0
    for level, n in rows.levels:
        total += n
        by_level[level or "PENDING"] = by_level.get(level or "PENDING", 0) + n
    by_source = {m: 0 for m in METHODS}
    for method, n in rows.methods:
        by_source[method] = n
    buckets = {int(b): (n, threats or 0) for b, n, threats in rows.buckets}
    series = [
        {"t": iso_ts(start + i * bucket_s), "scans": buckets.get(i, (0, 0))[0], "threats": buckets.get(i, (0, 0))[1]}
        for i in range(int((now - start) // bucket_s) + 1)
    ]
    return {
        "total": total,
        "totals_by_level": by_level,
        "totals_by_source": by_source,
        "blocked": rows.blocked,
        "timeseries": series,
        "bucket_s": bucket_s,
        "top_domains": [{"domain": d, "count": n} for d, n in rows.domains],
        "top_indicators": [{"id": i, "title": t, "category": cat, "count": n} for i, t, cat, n in rows.indicators],
        "indicator_categories": [{"category": cat, "count": n} for cat, n in rows.categories],
    }


class ScanStore(Protocol):
    """What the service needs from a history backend.

    Writes are queued when the method is called (so call order is commit order) and their
    awaitables resolve after the COMMIT. Reads and writes may raise :class:`StoreUnavailable`.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def insert_scan(self, scan: NewScan) -> Awaitable[Any]: ...  # queued at call time
    def complete_scan(self, result: ScanResult) -> Awaitable[Any]: ...  # queued at call time
    def append_events(self, events: Sequence[tuple[int, float, str | None, str]],
                      on_commit: Callable[[], None] | None = None) -> concurrent.futures.Future[Any]:
        """Queue events for the log; await the result with ``asyncio.wrap_future`` (never block
        the event loop on ``.result()``: the PostgreSQL writer runs on that loop)."""
        ...
    async def flush(self) -> None: ...
    async def last_seq(self) -> int: ...
    async def events_after(self, after: int, upto: int, limit: int = 100_000) -> list[str]: ...
    async def get_scan(self, scan_id: str) -> dict[str, Any] | None: ...
    async def list_scans(self, flt: ScanFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]: ...
    async def export_rows(self, flt: ScanFilter, limit: int) -> list[dict[str, Any]]: ...
    async def recent(self, limit: int) -> list[dict[str, Any]]: ...
    async def stats(self, window_s: float, bucket_s: float) -> dict[str, Any]: ...
    async def list_entries(self, name: str) -> list[dict[str, Any]]: ...
    async def add_entry(self, name: str, entry: str, kind: str, note: str) -> dict[str, Any]: ...
    async def remove_entry(self, name: str, entry: str) -> bool: ...
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
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"the history database is schema version {current}, newer than this MalwareSnipper "
            f"understands ({len(MIGRATIONS)}); upgrade MalwareSnipper or use another data dir"
        )
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


_Op = Callable[[sqlite3.Connection], Any]
_STOP = object()


class _Writer(threading.Thread):
    """The one thread that writes: batches queued operations into one transaction each."""

    def __init__(self, path: Path, max_batch: int = 1000) -> None:
        super().__init__(name="malwaresnipper-store-writer", daemon=True)
        self.path = path
        self.max_batch = max_batch
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.ready = concurrent.futures.Future()
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
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(False, exc)] * len(batch)
        for (ok, value), (_op, fut, after) in zip(outcomes, batch):
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


class SqliteScanStore:
    """The embedded :class:`ScanStore`: one SQLite file, a writer thread, reader threads."""

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
        # Scans accepted by a previous run that never completed (killed mid-scan) stay listed.
        await self._write(
            lambda c: c.execute(
                "UPDATE scans SET status='interrupted', threat_level=COALESCE(threat_level,'UNKNOWN'),"
                " error=COALESCE(error,'the gateway stopped before this scan finished')"
                " WHERE status='pending'"
            ).rowcount
        )

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
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass  # created by another thread; the GC closes it

    # -- plumbing ----------------------------------------------------------------------------

    def _write(self, op: _Op) -> asyncio.Future[Any]:
        """Queue ``op`` for the writer NOW (so queue order is call order); await the commit."""
        if self._writer is None or not self._writer.is_alive():
            raise RuntimeError("the history store is not open (or its writer stopped; see the log)")
        return asyncio.wrap_future(self._writer.submit(op))

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._reader_pool is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, lambda: fn(self._reader()))

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed."""
        await self._write(lambda c: None)

    # -- scans -------------------------------------------------------------------------------

    def insert_scan(self, scan: NewScan) -> asyncio.Future[Any]:
        return self._write(
            lambda c: c.execute(
                "INSERT INTO scans(scan_id, ts, url, domain, rdomain, title, method, status, content_hash,"
                " gateway_id) VALUES (?,?,?,?,?,?,?,'pending',?,?)",
                (scan.scan_id, scan.ts, scan.url, scan.domain, reverse_domain(scan.domain), scan.title,
                 scan.method, scan.content_hash, scan.gateway_id),
            )
        )

    def complete_scan(self, result: ScanResult) -> asyncio.Future[Any]:
        now = time.time()

        def op(c: sqlite3.Connection) -> None:
            top = None
            if result.indicators:
                first = result.indicators[0]
                top = json.dumps({"id": first.get("id"), "title": first.get("title"),
                                  "severity": first.get("severity")})
            c.execute(
                "UPDATE scans SET status=?, risk_score=?, threat_level=?, classification=?, blocked=?,"
                " top_indicator=?, duration_ms=?, verdict=?, error=?, completed_ts=? WHERE scan_id=?",
                (result.status, result.risk_score, result.threat_level, result.classification,
                 int(result.blocked), top, result.duration_ms,
                 json.dumps(result.verdict) if result.verdict is not None else None,
                 result.error, now, result.scan_id),
            )
            row = c.execute("SELECT ts FROM scans WHERE scan_id=?", (result.scan_id,)).fetchone()
            ts = row[0] if row else now
            # Completing twice replaces the indicators (as PostgreSQL's retried writes must).
            c.execute("DELETE FROM scan_indicators WHERE scan_id=?", (result.scan_id,))
            c.executemany(
                "INSERT INTO scan_indicators(scan_id, ts, indicator_id, title, category, severity)"
                " VALUES (?,?,?,?,?,?)",
                indicator_rows(result, ts),
            )

        return self._write(op)

    async def get_scan(self, scan_id: str) -> dict[str, Any] | None:
        def fn(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT * FROM scans WHERE scan_id=?", (scan_id,)).fetchone()
            if row is None:
                return None
            return detail(row)

        return await self._read(fn)

    async def list_scans(self, flt: ScanFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        where, args = flt.where()

        def fn(c: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
            total = c.execute(f"SELECT COUNT(*) FROM scans{where}", args).fetchone()[0]
            rows = c.execute(
                f"SELECT * FROM scans{where} ORDER BY ts DESC, rowid DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
            return [summary(r) for r in rows], total

        return await self._read(fn)

    async def export_rows(self, flt: ScanFilter, limit: int) -> list[dict[str, Any]]:
        where, args = flt.where()
        return await self._read(
            lambda c: [summary(r) for r in c.execute(
                f"SELECT * FROM scans{where} ORDER BY ts DESC, rowid DESC LIMIT ?", [*args, limit]
            )]
        )

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return await self._read(
            lambda c: [summary(r) for r in c.execute(
                "SELECT * FROM scans ORDER BY ts DESC, rowid DESC LIMIT ?", (limit,)
            )]
        )

    async def stats(self, window_s: float = 86_400, bucket_s: float = 3_600) -> dict[str, Any]:
        now = time.time()
        start = (now - window_s) // bucket_s * bucket_s

        def fn(c: sqlite3.Connection) -> dict[str, Any]:
            return stats_payload(StatsRows(
                levels=c.execute("SELECT threat_level, COUNT(*) FROM scans GROUP BY threat_level").fetchall(),
                methods=c.execute("SELECT method, COUNT(*) FROM scans GROUP BY method").fetchall(),
                blocked=c.execute("SELECT COUNT(*) FROM scans WHERE blocked=1").fetchone()[0],
                buckets=c.execute(
                    "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, COUNT(*),"
                    " SUM(threat_level IN ('SUSPICIOUS','MALICIOUS')) FROM scans WHERE ts >= ? GROUP BY b",
                    (start, bucket_s, start),
                ).fetchall(),
                domains=c.execute(STATS_TOP_DOMAINS).fetchall(),
                indicators=c.execute(STATS_TOP_INDICATORS).fetchall(),
                categories=c.execute(STATS_CATEGORIES).fetchall(),
            ), now=now, start=start, bucket_s=bucket_s)

        return await self._read(fn)

    # -- events ------------------------------------------------------------------------------

    def append_events(
        self,
        events: Sequence[tuple[int, float, str | None, str]],
        on_commit: Callable[[], None] | None = None,
    ) -> concurrent.futures.Future:
        """Queue events for the log; ``on_commit`` runs (on the writer thread) once committed."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        rows = list(events)

        def op(c: sqlite3.Connection) -> None:
            c.executemany("INSERT INTO events(seq, ts, scan_id, body) VALUES (?,?,?,?)", rows)
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('last_seq', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(rows[-1][0]),),
            )

        return self._writer.submit(op, on_commit)

    async def last_seq(self) -> int:
        def fn(c: sqlite3.Connection) -> int:
            top = c.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
            meta = c.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
            return max(int(top), int(meta[0]) if meta else 0)

        return await self._read(fn)

    async def events_after(self, after: int, upto: int, limit: int = 100_000) -> list[str]:
        return await self._read(
            lambda c: [r[0] for r in c.execute(
                "SELECT body FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, upto, limit)
            )]
        )

    # -- lists -------------------------------------------------------------------------------

    async def list_entries(self, name: str) -> list[dict[str, Any]]:
        return await self._read(
            lambda c: [
                {"entry": r["entry"], "kind": r["kind"], "note": r["note"], "ts": iso_ts(r["ts"])}
                for r in c.execute("SELECT * FROM lists WHERE list=? ORDER BY ts, entry", (name,))
            ]
        )

    async def add_entry(self, name: str, entry: str, kind: str, note: str) -> dict[str, Any]:
        now = time.time()
        await self._write(
            lambda c: c.execute(
                "INSERT INTO lists(list, entry, kind, note, ts) VALUES (?,?,?,?,?)"
                " ON CONFLICT(list, entry) DO UPDATE SET kind=excluded.kind, note=excluded.note",
                (name, entry, kind, note, now),
            )
        )
        return {"entry": entry, "kind": kind, "note": note, "ts": iso_ts(now)}

    async def remove_entry(self, name: str, entry: str) -> bool:
        return bool(await self._write(
            lambda c: c.execute("DELETE FROM lists WHERE list=? AND entry=?", (name, entry)).rowcount
        ))

    # -- counters ----------------------------------------------------------------------------

    async def incr_counter(self, name: str, amount: int = 1) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, amount),
            )
        )

    async def counters(self) -> dict[str, int]:
        return await self._read(lambda c: {r[0]: r[1] for r in c.execute("SELECT name, value FROM counters")})

    # -- maintenance -------------------------------------------------------------------------

    async def apply_retention(self, days: int, rows: int) -> int:
        """Delete what is older than ``days`` or beyond the newest ``rows`` scans; return scans removed."""
        cutoff = time.time() - days * 86_400 if days > 0 else None

        def op(c: sqlite3.Connection) -> int:
            removed = 0
            if cutoff is not None:
                removed += c.execute("DELETE FROM scans WHERE ts < ?", (cutoff,)).rowcount
                c.execute("DELETE FROM scan_indicators WHERE ts < ?", (cutoff,))
                # Keep the newest event whatever its age: it carries the seq counter.
                c.execute("DELETE FROM events WHERE ts < ? AND seq < (SELECT MAX(seq) FROM events)", (cutoff,))
            if rows > 0:
                edge = c.execute("SELECT ts FROM scans ORDER BY ts DESC LIMIT 1 OFFSET ?", (rows,)).fetchone()
                if edge is not None:
                    removed += c.execute("DELETE FROM scans WHERE ts <= ?", (edge[0],)).rowcount
                    c.execute("DELETE FROM scan_indicators WHERE ts <= ?", (edge[0],))
                # The event log (about eight events per scan) is bounded alongside.
                c.execute(
                    "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (rows * 10,)
                )
            return removed

        return await self._write(op)

    async def integrity_check(self) -> str:
        return await self._read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])

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


def indicator_rows(result: ScanResult, ts: float) -> list[tuple[str, float, str, str, str, str]]:
    """``scan_indicators`` rows of a completed scan (what the stats' top indicators count)."""
    return [(result.scan_id, ts, str(i.get("id")), str(i.get("title", "")),
             str(i.get("category") or "general"), str(i.get("severity", "")))
            for i in result.indicators]


def summary(row: Any) -> dict[str, Any]:
    """The scan summary of the API and the snapshot (see docs/api.md); a sqlite3.Row or a dict."""
    return {
        "scan_id": row["scan_id"],
        "ts": iso_ts(row["ts"]),
        "url": row["url"],
        "domain": row["domain"],
        "gateway_id": row["gateway_id"],
        "title": row["title"],
        "method": row["method"],
        "status": row["status"],
        "risk_score": row["risk_score"],
        "threat_level": row["threat_level"],
        "classification": row["classification"],
        "blocked": bool(row["blocked"]),
        "top_indicator": json.loads(row["top_indicator"]) if row["top_indicator"] else None,
    }


def detail(row: Any) -> dict[str, Any]:
    """The record of ``GET /api/v1/scans/{id}``; a sqlite3.Row or a psycopg dict row."""
    return {
        "scan_id": row["scan_id"],
        "ts": iso_ts(row["ts"]),
        "url": row["url"],
        "gateway_id": row["gateway_id"],
        "title": row["title"],
        "method": row["method"],
        "status": row["status"],
        "blocked": bool(row["blocked"]),
        "error": row["error"],
        "verdict": json.loads(row["verdict"]) if row["verdict"] else None,
    }


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
