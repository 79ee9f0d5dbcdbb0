"""The SQL of the scan stores, written once for SQLite and PostgreSQL.

Every store operation is a *program*: a generator that yields statements (:class:`Run`,
:class:`RunMany`, :class:`Rows`, :class:`Tuples`) and is sent back their results. So the
statements, their order and what the rows become exist once, while each store keeps its own way
of running them: :class:`~.store.SqliteScanStore` on its writer thread and reader threads,
:class:`~.store_postgres.PostgresScanStore` on its writer task (which holds writes while
PostgreSQL is down) and its connection pool. :class:`SqlScanStore` is the
:class:`~.store.ScanStore` methods written once over those two executors.

Statements are written with ``?`` placeholders; :meth:`Dialect.run` and its siblings render them
for the store's driver. The few real differences between the two dialects are the fields of
:class:`Dialect`; the schema is one list of versions (:data:`SCHEMA`) whose DDL names the types
that differ.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import secrets
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..engine.lists import url_key

if TYPE_CHECKING:
    from .store import NewScan, ScanFilter, ScanResult

T = TypeVar("T")

LEVELS = ("BENIGN", "SUSPICIOUS", "MALICIOUS")
METHODS = ("PROXY", "EXTENSION")


# -- statements and programs ----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Execute one statement; the program is sent its row count."""

    sql: str
    args: Sequence[Any] = ()


@dataclass(frozen=True)
class RunMany:
    """Execute one statement per row of ``rows``; the program is sent None."""

    sql: str
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Rows:
    """Fetch every row, each readable by column name (``row["ts"]``)."""

    sql: str
    args: Sequence[Any] = ()


@dataclass(frozen=True)
class Tuples:
    """Fetch every row, each readable by position (``row[0]``)."""

    sql: str
    args: Sequence[Any] = ()


Step = Run | RunMany | Rows | Tuples
#: The logic of one store operation; the executor sends each statement's result back.
Program = Generator[Step, Any, T]
#: A write: makes a fresh program each time it runs (PostgreSQL's writer reruns a batch whose
#: connection dropped before COMMIT was acknowledged, and a generator runs only once).
Op = Callable[[], Program[T]]


# -- dialects --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _format_style(sql: str) -> str:
    """``?`` -> psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, in one place."""

    name: str
    #: True: psycopg's ``%s`` placeholders; False: sqlite3's own ``?``.
    format_params: bool
    #: LIKE ignoring ASCII case: SQLite's LIKE does; PostgreSQL's ILIKE does so on ``COLLATE "C"``
    #: text (it folds ASCII only there, as SQLite).
    like: str
    #: What orders rows of the same ``ts`` by insertion: SQLite's rowid, PostgreSQL's identity.
    insertion_order: str
    #: "The scan was blocked" (``blocked`` is INTEGER on SQLite, BOOLEAN on PostgreSQL), as the
    #: partial index ``scans_blocked`` states it, so that the stats query can use that index.
    is_blocked: str
    #: The stats bucket of ``ts`` (arguments: start, bucket_s). It must floor: SQLite's cast to an
    #: integer truncates (the same, as ``ts >= start``), PostgreSQL's rounds.
    bucket: str
    #: The larger of two values: SQLite's two-argument MAX.
    greatest: str
    #: UPDATE ... RETURNING: SQLite has it only from 3.35 (RHEL 9 ships 3.34).
    returning: bool
    #: The end of ``INSERT INTO scans``: on PostgreSQL a retried batch must not fail on the row
    #: its first attempt wrote (SQLite has no retry, and reports a duplicate id).
    insert_scan_conflict: str
    #: What :data:`SCHEMA`'s placeholders stand for (types, and ``{is_blocked}``).
    ddl: Mapping[str, str]

    def render(self, sql: str) -> str:
        return _format_style(sql) if self.format_params else sql

    def run(self, sql: str, args: Sequence[Any] = ()) -> Run:
        return Run(self.render(sql), args)

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> RunMany:
        return RunMany(self.render(sql), rows)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        return Rows(self.render(sql), args)

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> Tuples:
        return Tuples(self.render(sql), args)


SQLITE = Dialect(
    name="sqlite", format_params=False, like="LIKE", insertion_order="rowid", is_blocked="blocked = 1",
    bucket="CAST((ts - ?) / ? AS INTEGER)", greatest="MAX", returning=False, insert_scan_conflict="",
    ddl={"text": "TEXT", "real": "REAL", "int": "INTEGER", "bool": "INTEGER", "false": "0",
         "row_id": "", "tiebreak": ""},
)
POSTGRES = Dialect(
    name="postgres", format_params=True, like="ILIKE", insertion_order="row_id", is_blocked="blocked",
    bucket="floor((ts - ?::float8) / ?::float8)::bigint", greatest="GREATEST", returning=True,
    insert_scan_conflict=" ON CONFLICT (scan_id) DO NOTHING",
    # COLLATE "C": byte order, as SQLite's BINARY, whatever the server's locale, so range filters
    # and ORDER BY tie-breaks give the same results on both. row_id stands in for SQLite's rowid
    # (which every SQLite index ends with implicitly).
    ddl={"text": 'TEXT COLLATE "C"', "real": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN",
         "false": "false", "row_id": "\n        row_id BIGINT GENERATED ALWAYS AS IDENTITY,",
         "tiebreak": ", row_id"},
)
DIALECTS = {d.name: d for d in (SQLITE, POSTGRES)}


# -- schema ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One schema version: DDL for both dialects, then statements for one dialect only."""

    ddl: str
    sqlite: str = ""
    postgres: str = ""

    def render(self, d: Dialect) -> str:
        only = self.sqlite if d is SQLITE else self.postgres
        return self.ddl.format_map({**d.ddl, "is_blocked": d.is_blocked}) + only


SCHEMA: list[Migration] = [
    # 1: the first schema
    Migration(
        """
    CREATE TABLE scans (
        scan_id {text} PRIMARY KEY,{row_id}
        ts {real} NOT NULL,
        url {text} NOT NULL,
        domain {text} NOT NULL DEFAULT '',
        title {text},
        method {text} NOT NULL,
        status {text} NOT NULL DEFAULT 'pending',
        risk_score {real},
        threat_level {text},
        classification {text},
        blocked {bool} NOT NULL DEFAULT {false},
        top_indicator TEXT,
        duration_ms {real},
        content_hash TEXT,
        verdict TEXT,
        error TEXT,
        completed_ts {real}
    );
    CREATE INDEX scans_ts ON scans(ts{tiebreak});
    CREATE INDEX scans_level_ts ON scans(threat_level, ts{tiebreak});
    CREATE INDEX scans_method_ts ON scans(method, ts{tiebreak});
    CREATE INDEX scans_domain_ts ON scans(domain, ts{tiebreak});
    CREATE TABLE scan_indicators (
        scan_id {text} NOT NULL,
        ts {real} NOT NULL,
        indicator_id {text} NOT NULL,
        title {text} NOT NULL,
        category {text} NOT NULL,
        severity {text} NOT NULL
    );
    CREATE INDEX scan_indicators_ts ON scan_indicators(ts);
    CREATE INDEX scan_indicators_scan ON scan_indicators(scan_id);
    CREATE TABLE events (
        seq {int} PRIMARY KEY,
        ts {real} NOT NULL,
        scan_id TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE TABLE lists (
        list {text} NOT NULL,
        entry {text} NOT NULL,
        kind {text} NOT NULL,
        note {text} NOT NULL DEFAULT '',
        ts {real} NOT NULL,
        PRIMARY KEY (list, entry)
    );
    CREATE TABLE meta (key {text} PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE counters (name {text} PRIMARY KEY, value {int} NOT NULL);
    """,
        # Each PostgreSQL writer stamps its last committed batch here (exactly-once retries).
        postgres="""
    CREATE TABLE store_writers (writer_id TEXT PRIMARY KEY, batch_no BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL);
    """,
    ),
    # 2: fast domain filter (reversed labels, so "a subdomain of x" is an index range) and
    #    covering indexes for the stats queries
    Migration(
        """
    ALTER TABLE scans ADD COLUMN rdomain {text} NOT NULL DEFAULT '';
    CREATE INDEX scans_rdomain_ts ON scans(rdomain, ts{tiebreak});
    CREATE INDEX scans_ts_level ON scans(ts, threat_level);
    CREATE INDEX scans_level_domain ON scans(threat_level, domain);
    CREATE INDEX scans_blocked ON scans(blocked) WHERE {is_blocked};
    CREATE INDEX scan_indicators_id ON scan_indicators(indicator_id, category, title);
    CREATE INDEX scan_indicators_category ON scan_indicators(category);
    """,
        # Only SQLite files can hold rows from before this version: a PostgreSQL database runs
        # versions 1-3 in one transaction, on empty tables (ms_reverse_domain is SQLite's).
        sqlite="""
    UPDATE scans SET rdomain = ms_reverse_domain(domain);
    """,
    ),
    # 3: several gateways share one history (PostgreSQL); the SQLite file carries the column too
    #    so rows, summaries and filters look the same on both backends
    Migration(
        """
    ALTER TABLE scans ADD COLUMN gateway_id {text} NOT NULL DEFAULT '';
    CREATE INDEX scans_gateway_ts ON scans(gateway_id, ts{tiebreak});
    """,
        # Start-up marks this gateway's unfinished scans interrupted.
        postgres="""
    CREATE INDEX scans_pending ON scans(gateway_id) WHERE status = 'pending';
    """,
    ),
    # 4: feedback on verdicts: reports ("this page is safe/dangerous") and overrides (the user
    #    went past a block); both kept with the scan they are about and removed with it
    Migration(
        """
    CREATE TABLE reports (
        report_id {text} PRIMARY KEY,{row_id}
        scan_id {text} NOT NULL,
        ts {real} NOT NULL,
        verdict {text} NOT NULL,
        source {text} NOT NULL,
        url {text} NOT NULL,
        comment {text} NOT NULL DEFAULT '',
        gateway_id {text} NOT NULL DEFAULT ''
    );
    CREATE INDEX reports_scan ON reports(scan_id);
    CREATE INDEX reports_ts ON reports(ts{tiebreak});
    CREATE TABLE overrides (
        override_id {text} PRIMARY KEY,{row_id}
        scan_id {text} NOT NULL,
        ts {real} NOT NULL,
        action {text} NOT NULL,
        source {text} NOT NULL,
        url {text} NOT NULL,
        gateway_id {text} NOT NULL DEFAULT ''
    );
    CREATE INDEX overrides_scan ON overrides(scan_id);
    CREATE INDEX overrides_ts ON overrides(ts{tiebreak});
    """,
    ),
    # 5: a page's verdict includes its scripts ("scripts blocked"), and known verdicts are looked
    #    up by normalised URL (engine.lists.url_key) or body sha256 (POST /api/v1/verdicts/lookup).
    #    Rows from before this version keep '' (they are not found by a lookup).
    Migration(
        """
    ALTER TABLE scans ADD COLUMN url_key {text} NOT NULL DEFAULT '';
    ALTER TABLE scans ADD COLUMN body_sha256 {text} NOT NULL DEFAULT '';
    ALTER TABLE scans ADD COLUMN scripts_blocked {bool} NOT NULL DEFAULT {false};
    CREATE INDEX scans_url_key_ts ON scans(url_key, ts{tiebreak});
    CREATE INDEX scans_body_sha256_ts ON scans(body_sha256, ts{tiebreak});
    """,
    ),
    # 6: a page's resources (urlscan-style): which script and frame scans a page's scan loaded,
    #    read both ways (a page's resources, a script's pages); size and sha256 as the gateway
    #    received the resource, so a deduplicated scan still shows what this page got
    Migration(
        """
    CREATE TABLE scan_links (
        page_scan_id {text} NOT NULL,
        resource_scan_id {text} NOT NULL,
        kind {text} NOT NULL,
        url {text} NOT NULL DEFAULT '',
        size {int},
        sha256 {text},
        ts {real} NOT NULL,
        PRIMARY KEY (page_scan_id, resource_scan_id)
    );
    CREATE INDEX scan_links_resource ON scan_links(resource_scan_id);
    CREATE INDEX scan_links_ts ON scan_links(ts);
    """,
    ),
]

#: What a report says about a scan's page, and who filed it.
REPORT_VERDICTS = ("safe", "dangerous")
REPORT_SOURCES = ("blockpage", "extension", "dashboard", "api")
#: How the user went past a block, and where.
OVERRIDE_ACTIONS = ("proceed_once", "proceed_anyway", "always_allow")
OVERRIDE_SOURCES = ("gateway", "extension")
#: Longest report comment kept (characters).
MAX_COMMENT = 1000
#: What a page loaded, as :meth:`SqlScanStore.link_resource` records it.
LINK_KINDS = ("script", "frame")


def migrations(d: Dialect) -> list[str]:
    """The DDL of every schema version, for ``d``: the ``n``-th string makes version ``n + 1``."""
    return [m.render(d) for m in SCHEMA]


def check_schema_version(current: int, *, elsewhere: str) -> None:
    """Refuse a history written by a newer MalwareSnipper (its schema may mean other things)."""
    if current > len(SCHEMA):
        raise RuntimeError(
            f"the history database is schema version {current}, newer than this MalwareSnipper "
            f"understands ({len(SCHEMA)}); upgrade MalwareSnipper or use {elsewhere}"
        )


# -- values and rows -------------------------------------------------------------------------


def reverse_domain(domain: str) -> str:
    """``login.bad.example`` -> ``example.bad.login``: subdomains of x sort right after x."""
    return ".".join(reversed(domain.split("."))) if domain else ""


def iso_ts(epoch: float) -> str:
    """``2026-11-26T12:00:00.123Z`` (UTC, milliseconds), the format of every timestamp we emit."""
    t = time.gmtime(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int((epoch % 1) * 1000):03d}Z"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(flt: ScanFilter, d: Dialect) -> tuple[str, list[Any]]:
    """``flt`` as a WHERE clause (``?`` placeholders, '' for no filter) and its arguments."""
    clauses: list[str] = []
    args: list[Any] = []
    if flt.level:
        clauses.append("threat_level = ?")
        args.append(flt.level)
    if flt.method:
        clauses.append("method = ?")
        args.append(flt.method)
    if flt.domain:
        # The domain itself or any subdomain: an index range on the reversed labels.
        rdomain = reverse_domain(flt.domain)
        clauses.append("(rdomain = ? OR (rdomain > ? AND rdomain < ?))")
        args += [rdomain, rdomain + ".", rdomain + "/"]
    if flt.gateway:
        clauses.append("gateway_id = ?")
        args.append(flt.gateway)
    if flt.since is not None:
        clauses.append("ts >= ?")
        args.append(flt.since)
    if flt.until is not None:
        clauses.append("ts < ?")
        args.append(flt.until)
    if flt.q:
        # The text in the URL or title, or the scan whose id it is (a block page names its scan).
        pattern = "%" + _like_escape(flt.q) + "%"
        clauses.append(f"(url {d.like} ? ESCAPE '\\' OR title {d.like} ? ESCAPE '\\' OR scan_id = ?)")
        args += [pattern, pattern, flt.q.strip()]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def indicator_rows(result: ScanResult, ts: float) -> list[tuple[str, float, str, str, str, str]]:
    """``scan_indicators`` rows of a completed scan (what the stats' top indicators count)."""
    return [(result.scan_id, ts, str(i.get("id")), str(i.get("title", "")),
             str(i.get("category") or "general"), str(i.get("severity", "")))
            for i in result.indicators]


def summary(row: Any) -> dict[str, Any]:
    """The scan summary of the API and the snapshot (see docs/api.md), from a ``scans`` row."""
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
        "scripts_blocked": bool(row["scripts_blocked"]),
        "top_indicator": json.loads(row["top_indicator"]) if row["top_indicator"] else None,
    }


def detail(row: Any) -> dict[str, Any]:
    """The record of ``GET /api/v1/scans/{id}``, from a ``scans`` row."""
    return {
        "scan_id": row["scan_id"],
        "ts": iso_ts(row["ts"]),
        "url": row["url"],
        "gateway_id": row["gateway_id"],
        "title": row["title"],
        "method": row["method"],
        "status": row["status"],
        "blocked": bool(row["blocked"]),
        "scripts_blocked": bool(row["scripts_blocked"]),
        "error": row["error"],
        "verdict": json.loads(row["verdict"]) if row["verdict"] else None,
    }


def report(row: Any) -> dict[str, Any]:
    """A report as the API shows it, from a ``reports`` row."""
    return {"report_id": row["report_id"], "scan_id": row["scan_id"], "ts": iso_ts(row["ts"]),
            "verdict": row["verdict"], "source": row["source"], "url": row["url"], "comment": row["comment"],
            "gateway_id": row["gateway_id"]}


def override(row: Any) -> dict[str, Any]:
    """An override as the API shows it, from an ``overrides`` row."""
    return {"override_id": row["override_id"], "scan_id": row["scan_id"], "ts": iso_ts(row["ts"]),
            "action": row["action"], "source": row["source"], "url": row["url"], "gateway_id": row["gateway_id"]}


def no_feedback() -> dict[str, int]:
    """The history row's feedback marker: reports by verdict and overrides, counted."""
    return {"safe": 0, "dangerous": 0, "overrides": 0}
def linked(row: Any) -> dict[str, Any]:
    """A linked scan (a page's resource, or a resource's page) as ``GET /api/v1/scans/{id}``
    shows it, from a ``scan_links`` row joined with the other scan's ``scans`` row."""
    return {
        "scan_id": row["linked_id"],
        "kind": row["kind"],
        "url": row["scan_url"] or row["link_url"],
        "ts": iso_ts(row["link_ts"]),
        "size": row["size"],
        "sha256": row["sha256"],
        "status": row["status"],
        "threat_level": row["threat_level"],
        "risk_score": row["risk_score"],
        "classification": row["classification"],
    }


def list_entry(row: Any) -> dict[str, Any]:
    """An allow/block list entry as the API shows it, from a ``lists`` row."""
    return {"entry": row["entry"], "kind": row["kind"], "note": row["note"], "ts": iso_ts(row["ts"])}


# -- programs: writes ------------------------------------------------------------------------


def nothing() -> Program[None]:
    """No statement: what ``flush`` queues (it resolves once everything before it committed)."""
    return None
    yield  # a generator


def mark_interrupted(d: Dialect, gateway_id: str | None) -> Program[int]:
    """Scans a previous run accepted and never completed (killed mid-scan) stay listed, as
    interrupted; ``gateway_id`` None: all of them (a file has one gateway). Returns how many."""
    sql = ("UPDATE scans SET status='interrupted', threat_level=COALESCE(threat_level,'UNKNOWN'),"
           " error=COALESCE(error,'the gateway stopped before this scan finished') WHERE status='pending'")
    if gateway_id is None:
        return int((yield d.run(sql)))
    return int((yield d.run(sql + " AND gateway_id=?", (gateway_id,))))


def insert_scan(d: Dialect, scan: NewScan, gateway_id: str) -> Program[None]:
    yield d.run(
        "INSERT INTO scans(scan_id, ts, url, domain, rdomain, title, method, status, content_hash, gateway_id,"
        " url_key, body_sha256) VALUES (?,?,?,?,?,?,?,'pending',?,?,?,?)" + d.insert_scan_conflict,
        (scan.scan_id, scan.ts, scan.url, scan.domain, reverse_domain(scan.domain), scan.title,
         scan.method, scan.content_hash, gateway_id, url_key(scan.url), scan.body_sha256),
    )


def complete_scan(d: Dialect, result: ScanResult, now: float) -> Program[None]:
    top = None
    if result.indicators:
        first = result.indicators[0]
        top = json.dumps({"id": first.get("id"), "title": first.get("title"), "severity": first.get("severity")})
    update = ("UPDATE scans SET status=?, risk_score=?, threat_level=?, classification=?, blocked=?,"
              " scripts_blocked=?, top_indicator=?, duration_ms=?, verdict=?, error=?, completed_ts=?"
              " WHERE scan_id=?")
    args = (result.status, result.risk_score, result.threat_level, result.classification,
            bool(result.blocked), bool(result.scripts_blocked), top, result.duration_ms,
            json.dumps(result.verdict) if result.verdict is not None else None,
            result.error, now, result.scan_id)
    if d.returning:
        found = yield d.tuples(update + " RETURNING ts", args)
    else:
        yield d.run(update, args)
        found = yield d.tuples("SELECT ts FROM scans WHERE scan_id=?", (result.scan_id,))
    ts = found[0][0] if found else now
    # Completing twice replaces the indicators (as PostgreSQL's retried writes must).
    yield d.run("DELETE FROM scan_indicators WHERE scan_id=?", (result.scan_id,))
    yield d.run_many(
        "INSERT INTO scan_indicators(scan_id, ts, indicator_id, title, category, severity) VALUES (?,?,?,?,?,?)",
        indicator_rows(result, ts),
    )


def rejudge_scan(d: Dialect, result: ScanResult) -> Program[int]:
    """A completed scan's verdict re-judged (a page with its scripts' verdicts folded in): level,
    score, reasons and ``scripts_blocked`` replaced; its status, timing and ``blocked`` kept.
    Returns the rows changed (0: not a completed scan)."""
    top = None
    if result.indicators:
        first = result.indicators[0]
        top = json.dumps({"id": first.get("id"), "title": first.get("title"), "severity": first.get("severity")})
    changed = yield d.run(
        "UPDATE scans SET risk_score=?, threat_level=?, classification=?, scripts_blocked=?, top_indicator=?,"
        " verdict=? WHERE scan_id=? AND status='complete'",
        (result.risk_score, result.threat_level, result.classification, bool(result.scripts_blocked), top,
         json.dumps(result.verdict) if result.verdict is not None else None, result.scan_id))
    if not changed:
        return 0
    found = yield d.tuples("SELECT ts FROM scans WHERE scan_id=?", (result.scan_id,))
    yield d.run("DELETE FROM scan_indicators WHERE scan_id=?", (result.scan_id,))
    yield d.run_many(
        "INSERT INTO scan_indicators(scan_id, ts, indicator_id, title, category, severity) VALUES (?,?,?,?,?,?)",
        indicator_rows(result, found[0][0]),
    )
    return int(changed)


def append_events(d: Dialect, rows: Sequence[tuple[int, float, str | None, str]]) -> Program[None]:
    yield d.run_many("INSERT INTO events(seq, ts, scan_id, body) VALUES (?,?,?,?)", rows)
    # The larger seq: several gateways may write one log, and the counter never goes back.
    yield d.run(
        "INSERT INTO meta(key, value) VALUES ('last_seq', ?) ON CONFLICT (key) DO UPDATE"
        f" SET value = CAST({d.greatest}(CAST(meta.value AS BIGINT), CAST(excluded.value AS BIGINT)) AS TEXT)",
        (str(rows[-1][0]),),
    )


def link_resource(d: Dialect, page_scan_id: str, resource_scan_id: str, kind: str, url: str,
                  size: int | None, sha256: str | None, now: float) -> Program[None]:
    """Record that a page's scan loaded a resource's scan (once per pair: a reload keeps the first)."""
    yield d.run(
        "INSERT INTO scan_links(page_scan_id, resource_scan_id, kind, url, size, sha256, ts) VALUES (?,?,?,?,?,?,?)"
        " ON CONFLICT (page_scan_id, resource_scan_id) DO NOTHING",
        (page_scan_id, resource_scan_id, kind, url, size, sha256, now),
    )


def add_entry(d: Dialect, name: str, entry: str, kind: str, note: str, now: float) -> Program[None]:
    yield d.run(
        "INSERT INTO lists(list, entry, kind, note, ts) VALUES (?,?,?,?,?)"
        " ON CONFLICT (list, entry) DO UPDATE SET kind=excluded.kind, note=excluded.note",
        (name, entry, kind, note, now),
    )


def add_report(d: Dialect, report_id: str, scan_id: str, verdict: str, source: str, comment: str,
               gateway_id: str, now: float) -> Program[dict[str, Any] | None]:
    """Record a report on scan ``scan_id`` (its URL is the scan's); None when there is no such scan."""
    found = yield d.tuples("SELECT url FROM scans WHERE scan_id=?", (scan_id,))
    if not found:
        return None
    row = {"report_id": report_id, "scan_id": scan_id, "ts": now, "verdict": verdict, "source": source,
           "url": found[0][0], "comment": comment, "gateway_id": gateway_id}
    # A retried PostgreSQL batch may run this twice: the same report_id is one report.
    yield d.run("INSERT INTO reports(report_id, scan_id, ts, verdict, source, url, comment, gateway_id)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (report_id) DO NOTHING",
                (report_id, scan_id, now, verdict, source, row["url"], comment, gateway_id))
    return report(row)


def add_override(d: Dialect, override_id: str, scan_id: str, action: str, source: str, gateway_id: str,
                 now: float) -> Program[dict[str, Any] | None]:
    """Record that the user went past scan ``scan_id``'s verdict; None when there is no such scan."""
    found = yield d.tuples("SELECT url FROM scans WHERE scan_id=?", (scan_id,))
    if not found:
        return None
    row = {"override_id": override_id, "scan_id": scan_id, "ts": now, "action": action, "source": source,
           "url": found[0][0], "gateway_id": gateway_id}
    yield d.run("INSERT INTO overrides(override_id, scan_id, ts, action, source, url, gateway_id)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (override_id) DO NOTHING",
                (override_id, scan_id, now, action, source, row["url"], gateway_id))
    return override(row)


def remove_entry(d: Dialect, name: str, entry: str) -> Program[int]:
    return int((yield d.run("DELETE FROM lists WHERE list=? AND entry=?", (name, entry))))


def incr_counter(d: Dialect, name: str, amount: int) -> Program[None]:
    yield d.run(
        "INSERT INTO counters(name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
        (name, amount),
    )


def apply_retention(d: Dialect, cutoff: float | None, rows: int) -> Program[int]:
    """Delete scans (and their indicators and events) before ``cutoff`` or beyond the newest
    ``rows``; returns the number of scans removed."""
    removed = 0
    if cutoff is not None:
        removed += yield d.run("DELETE FROM scans WHERE ts < ?", (cutoff,))
        yield d.run("DELETE FROM scan_indicators WHERE ts < ?", (cutoff,))
        yield d.run("DELETE FROM scan_links WHERE ts < ?", (cutoff,))
        # Keep the newest event whatever its age: it carries the seq counter.
        yield d.run("DELETE FROM events WHERE ts < ? AND seq < (SELECT MAX(seq) FROM events)", (cutoff,))
    if rows > 0:
        edge = yield d.tuples("SELECT ts FROM scans ORDER BY ts DESC LIMIT 1 OFFSET ?", (rows,))
        if edge:
            removed += yield d.run("DELETE FROM scans WHERE ts <= ?", (edge[0][0],))
            yield d.run("DELETE FROM scan_indicators WHERE ts <= ?", (edge[0][0],))
            yield d.run("DELETE FROM scan_links WHERE ts <= ?", (edge[0][0],))
        # The event log (about eight events per scan) is bounded alongside.
        yield d.run("DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?", (rows * 10,))
    if removed:
        # Feedback goes with the scan it is about (a report filed today on an old scan too).
        for table in ("reports", "overrides"):
            yield d.run(f"DELETE FROM {table} WHERE NOT EXISTS"
                        f" (SELECT 1 FROM scans WHERE scans.scan_id = {table}.scan_id)")
    return removed


# -- programs: reads -------------------------------------------------------------------------


#: A scan's links with the other scan's record: ``{mine}`` is this scan's column, ``{other}`` the other's.
_LINKS = ("SELECT l.{other} AS linked_id, l.kind, l.url AS link_url, l.size, l.sha256, l.ts AS link_ts,"
          " s.url AS scan_url, s.status, s.threat_level, s.risk_score, s.classification"
          " FROM scan_links l LEFT JOIN scans s ON s.scan_id = l.{other}"
          " WHERE l.{mine} = ? ORDER BY l.ts, l.{other} LIMIT ?")
#: At most this many resources (or pages) listed with a scan.
MAX_LINKS = 200


def get_scan(d: Dialect, scan_id: str) -> Program[dict[str, Any] | None]:
    """The record, with the scripts and frames the page loaded (``resources``) and the pages
    that loaded this resource (``loaded_by``)."""
    rows = yield d.rows("SELECT * FROM scans WHERE scan_id=?", (scan_id,))
    if not rows:
        return None
    record = detail(rows[0])
    reports = yield d.rows(f"SELECT * FROM reports WHERE scan_id=? ORDER BY ts, {d.insertion_order}", (scan_id,))
    overrides = yield d.rows(f"SELECT * FROM overrides WHERE scan_id=? ORDER BY ts, {d.insertion_order}", (scan_id,))
    record["reports"] = [report(r) for r in reports]
    record["overrides"] = [override(r) for r in overrides]
    resources = yield d.rows(_LINKS.format(mine="page_scan_id", other="resource_scan_id"), (scan_id, MAX_LINKS))
    pages = yield d.rows(_LINKS.format(mine="resource_scan_id", other="page_scan_id"), (scan_id, MAX_LINKS))
    record["resources"] = [linked(r) for r in resources]
    record["loaded_by"] = [{**linked(r), "kind": "page"} for r in pages]
    return record


#: Scan ids per feedback count query (well under both drivers' parameter limits).
FEEDBACK_CHUNK = 500


def with_feedback(d: Dialect, items: list[dict[str, Any]]) -> Program[list[dict[str, Any]]]:
    """Give each scan summary its ``feedback`` marker (reports by verdict, overrides), counted
    for those scans only: by the ``scan_id`` indexes, never over the whole tables."""
    for item in items:
        item["feedback"] = no_feedback()
    by_id = {item["scan_id"]: item for item in items}
    ids = list(by_id)
    for start in range(0, len(ids), FEEDBACK_CHUNK):
        chunk = ids[start:start + FEEDBACK_CHUNK]
        marks = ",".join("?" * len(chunk))
        counts = yield d.tuples(f"SELECT scan_id, verdict, COUNT(*) FROM reports WHERE scan_id IN ({marks})"
                                " GROUP BY scan_id, verdict", chunk)
        for scan_id, verdict, n in counts:
            if verdict in REPORT_VERDICTS:
                by_id[scan_id]["feedback"][verdict] = int(n)
        counts = yield d.tuples(f"SELECT scan_id, COUNT(*) FROM overrides WHERE scan_id IN ({marks})"
                                " GROUP BY scan_id", chunk)
        for scan_id, n in counts:
            by_id[scan_id]["feedback"]["overrides"] = int(n)
    return items


def feedback_reports(d: Dialect, since: float | None, limit: int) -> Program[list[dict[str, Any]]]:
    """Reports, oldest first (what ``feedback export`` labels), each with its scan's verdict
    (threat level, classification) when the scan is still kept."""
    where, args = ("WHERE r.ts >= ?", [since]) if since is not None else ("", [])
    rows = yield d.rows(
        "SELECT r.*, s.threat_level AS scan_level, s.classification AS scan_classification, s.method AS scan_method"
        f" FROM reports r LEFT JOIN scans s ON s.scan_id = r.scan_id {where}"
        f" ORDER BY r.ts, r.{d.insertion_order} LIMIT ?", [*args, limit])
    return [{**report(r), "scan_threat_level": r["scan_level"], "scan_classification": r["scan_classification"],
             "scan_method": r["scan_method"]} for r in rows]


def list_scans(d: Dialect, flt: ScanFilter, limit: int, offset: int) -> Program[tuple[list[dict[str, Any]], int]]:
    where, args = filter_clause(flt, d)
    total = (yield d.tuples(f"SELECT COUNT(*) FROM scans{where}", args))[0][0]
    rows = yield d.rows(
        f"SELECT * FROM scans{where} ORDER BY ts DESC, {d.insertion_order} DESC LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    return (yield from with_feedback(d, [summary(r) for r in rows])), int(total)


#: What a lookup answers for a known verdict (the newest completed scan of a URL or body).
_LOOKUP_COLUMNS = "scan_id, ts, url, method, risk_score, threat_level, classification, top_indicator"


def known_verdict(row: Any) -> dict[str, Any]:
    """One answer of ``POST /api/v1/verdicts/lookup``, from a ``scans`` row."""
    return {
        "scan_id": row["scan_id"],
        "ts": iso_ts(row["ts"]),
        "url": row["url"],
        "method": row["method"],
        "risk_score": row["risk_score"],
        "threat_level": row["threat_level"],
        "classification": row["classification"],
        "headline": json.loads(row["top_indicator"]) if row["top_indicator"] else None,
    }


def lookup_verdicts(d: Dialect, url_keys: Sequence[str],
                    sha256s: Sequence[str]) -> Program[tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]]:
    """The newest completed verdict of each URL key and of each body sha256 (absent: unknown).

    One index seek each (``scans_url_key_ts``, ``scans_body_sha256_ts``), newest first."""
    by_url: dict[str, dict[str, Any]] = {}
    by_sha: dict[str, dict[str, Any]] = {}
    for column, keys, out in (("url_key", url_keys, by_url), ("body_sha256", sha256s, by_sha)):
        for key in dict.fromkeys(k for k in keys if k):
            rows = yield d.rows(
                f"SELECT {_LOOKUP_COLUMNS} FROM scans WHERE {column}=? AND status='complete'"
                f" ORDER BY ts DESC, {d.insertion_order} DESC LIMIT 1", (key,))
            if rows:
                out[key] = known_verdict(rows[0])
    return by_url, by_sha


def export_rows(d: Dialect, flt: ScanFilter, limit: int, full: bool = False) -> Program[list[dict[str, Any]]]:
    """Summaries for the export; ``full``: each with its whole verdict (every indicator)."""
    where, args = filter_clause(flt, d)
    rows = yield d.rows(f"SELECT * FROM scans{where} ORDER BY ts DESC, {d.insertion_order} DESC LIMIT ?",
                        [*args, limit])
    items = [summary(r) for r in rows] if not full else [
        {**summary(r), "verdict": json.loads(r["verdict"]) if r["verdict"] else None} for r in rows]
    return (yield from with_feedback(d, items))


def recent(d: Dialect, limit: int) -> Program[list[dict[str, Any]]]:
    rows = yield d.rows(f"SELECT * FROM scans ORDER BY ts DESC, {d.insertion_order} DESC LIMIT ?", (limit,))
    return (yield from with_feedback(d, [summary(r) for r in rows]))


def stats(d: Dialect, now: float, window_s: float, bucket_s: float) -> Program[dict[str, Any]]:
    """``GET /api/v1/stats``: totals, a time series of ``bucket_s`` buckets over ``window_s``, the
    top domains, indicators and categories (ties broken by name, so both backends agree)."""
    start = (now - window_s) // bucket_s * bucket_s
    levels = yield d.tuples("SELECT threat_level, COUNT(*) FROM scans GROUP BY threat_level")
    methods = yield d.tuples("SELECT method, COUNT(*) FROM scans GROUP BY method")
    blocked = (yield d.tuples(f"SELECT COUNT(*) FROM scans WHERE {d.is_blocked}"))[0][0]
    buckets = yield d.tuples(
        f"SELECT {d.bucket} AS b, COUNT(*), COUNT(CASE WHEN threat_level IN ('SUSPICIOUS','MALICIOUS') THEN 1 END)"
        " FROM scans WHERE ts >= ? GROUP BY b",
        (start, bucket_s, start),
    )
    domains = yield d.tuples(
        "SELECT domain, COUNT(*) AS n, COUNT(CASE WHEN threat_level = 'MALICIOUS' THEN 1 END)"
        " FROM scans WHERE threat_level IN ('SUSPICIOUS','MALICIOUS')"
        " AND domain <> '' GROUP BY domain ORDER BY n DESC, domain LIMIT 10"
    )
    indicators = yield d.tuples(
        "SELECT indicator_id, MAX(title), MAX(category), COUNT(*) AS n FROM scan_indicators"
        " GROUP BY indicator_id ORDER BY n DESC, indicator_id LIMIT 10"
    )
    categories = yield d.tuples(
        "SELECT category, COUNT(*) AS n FROM scan_indicators GROUP BY category ORDER BY n DESC, category"
    )

    by_level = {level: 0 for level in LEVELS}
    total = 0
    for level, n in levels:
        total += n
        by_level[level or "PENDING"] = by_level.get(level or "PENDING", 0) + n
    by_source = {m: 0 for m in METHODS}
    for method, n in methods:
        by_source[method] = n
    counts = {int(b): (n, threats) for b, n, threats in buckets}
    series = [
        {"t": iso_ts(start + i * bucket_s), "scans": counts.get(i, (0, 0))[0], "threats": counts.get(i, (0, 0))[1]}
        for i in range(int((now - start) // bucket_s) + 1)
    ]
    return {
        "total": total,
        "totals_by_level": by_level,
        "totals_by_source": by_source,
        "blocked": blocked,
        "timeseries": series,
        "bucket_s": bucket_s,
        # each domain's worst level, so the chart shows a MALICIOUS domain in its colour
        "top_domains": [{"domain": dom, "count": n, "threat_level": "MALICIOUS" if mal else "SUSPICIOUS"}
                        for dom, n, mal in domains],
        "top_indicators": [{"id": i, "title": t, "category": cat, "count": n} for i, t, cat, n in indicators],
        "indicator_categories": [{"category": cat, "count": n} for cat, n in categories],
    }


def last_seq(d: Dialect) -> Program[int]:
    """The event log's last seq: its newest event, or the counter that outlives retention."""
    row = (yield d.tuples(
        f"SELECT {d.greatest}(COALESCE((SELECT MAX(seq) FROM events), 0),"
        " COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key='last_seq'), 0))"
    ))[0]
    return int(row[0])


def events_after(d: Dialect, after: int, upto: int, limit: int) -> Program[list[str]]:
    rows = yield d.tuples("SELECT body FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                          (after, upto, limit))
    return [r[0] for r in rows]


def list_entries(d: Dialect, name: str) -> Program[list[dict[str, Any]]]:
    rows = yield d.rows("SELECT * FROM lists WHERE list=? ORDER BY ts, entry", (name,))
    return [list_entry(r) for r in rows]


def counters(d: Dialect) -> Program[dict[str, int]]:
    rows = yield d.tuples("SELECT name, value FROM counters")
    return {name: int(value) for name, value in rows}


# -- the ScanStore methods, over two executors ----------------------------------------------


class SqlScanStore:
    """The :class:`~.store.ScanStore` methods, written once; a subclass is an executor.

    A subclass sets :attr:`dialect` and runs programs: :meth:`_submit` queues a write (queue
    order is commit order; the future resolves after COMMIT), :meth:`_read` runs a read.
    """

    dialect: ClassVar[Dialect]
    #: Given to scans inserted without one ('' for a history only one gateway writes).
    gateway_id: str = ""

    def _submit(self, op: Op[Any], after: Callable[[], None] | None = None, *,
                lists_changed: bool = False) -> concurrent.futures.Future[Any]:
        """Queue ``op`` NOW; ``after`` runs once it committed; ``lists_changed`` tells other gateways."""
        raise NotImplementedError

    async def _read(self, program: Program[T]) -> T:
        raise NotImplementedError

    def _write(self, op: Op[Any], *, lists_changed: bool = False) -> asyncio.Future[Any]:
        return asyncio.wrap_future(self._submit(op, lists_changed=lists_changed))

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed."""
        await self._write(nothing)

    # -- scans -------------------------------------------------------------------------------

    def insert_scan(self, scan: NewScan) -> asyncio.Future[None]:
        gateway_id = scan.gateway_id or self.gateway_id
        return self._write(lambda: insert_scan(self.dialect, scan, gateway_id))

    def complete_scan(self, result: ScanResult) -> asyncio.Future[None]:
        now = time.time()
        return self._write(lambda: complete_scan(self.dialect, result, now))

    def rejudge_scan(self, result: ScanResult) -> asyncio.Future[int]:
        return self._write(lambda: rejudge_scan(self.dialect, result))

    async def get_scan(self, scan_id: str) -> dict[str, Any] | None:
        return await self._read(get_scan(self.dialect, scan_id))

    async def list_scans(self, flt: ScanFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await self._read(list_scans(self.dialect, flt, limit, offset))

    async def export_rows(self, flt: ScanFilter, limit: int, full: bool = False) -> list[dict[str, Any]]:
        return await self._read(export_rows(self.dialect, flt, limit, full))

    async def lookup_verdicts(self, url_keys: Sequence[str], sha256s: Sequence[str],
                              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        return await self._read(lookup_verdicts(self.dialect, url_keys, sha256s))

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return await self._read(recent(self.dialect, limit))

    async def stats(self, window_s: float = 86_400, bucket_s: float = 3_600) -> dict[str, Any]:
        return await self._read(stats(self.dialect, time.time(), window_s, bucket_s))

    def link_resource(self, page_scan_id: str, resource_scan_id: str, kind: str, *, url: str = "",
                      size: int | None = None, sha256: str | None = None) -> asyncio.Future[None]:
        """Record that the page of ``page_scan_id`` loaded the script or frame of ``resource_scan_id``."""
        if kind not in LINK_KINDS:
            raise ValueError(f"kind must be one of {LINK_KINDS}, not {kind!r}")
        now = time.time()
        return self._write(lambda: link_resource(self.dialect, page_scan_id, resource_scan_id, kind, url,
                                                 size, sha256, now))

    # -- events ------------------------------------------------------------------------------

    def append_events(
        self,
        events: Sequence[tuple[int, float, str | None, str]],
        on_commit: Callable[[], None] | None = None,
    ) -> concurrent.futures.Future[None]:
        """Queue events for the log; ``on_commit`` runs once they are committed (on SQLite's
        writer thread, on PostgreSQL's event loop). May be called from any thread. Await the
        future with ``asyncio.wrap_future``: blocking the loop on ``.result()`` would stop
        PostgreSQL's writer, which runs on that loop."""
        rows = list(events)
        return self._submit(lambda: append_events(self.dialect, rows), on_commit)

    async def last_seq(self) -> int:
        return await self._read(last_seq(self.dialect))

    async def events_after(self, after: int, upto: int, limit: int = 100_000) -> list[str]:
        return await self._read(events_after(self.dialect, after, upto, limit))

    # -- lists -------------------------------------------------------------------------------

    async def list_entries(self, name: str) -> list[dict[str, Any]]:
        return await self._read(list_entries(self.dialect, name))

    async def add_entry(self, name: str, entry: str, kind: str, note: str) -> dict[str, Any]:
        now = time.time()
        await self._write(lambda: add_entry(self.dialect, name, entry, kind, note, now), lists_changed=True)
        return list_entry({"entry": entry, "kind": kind, "note": note, "ts": now})

    async def remove_entry(self, name: str, entry: str) -> bool:
        return bool(await self._write(lambda: remove_entry(self.dialect, name, entry), lists_changed=True))

    # -- feedback ----------------------------------------------------------------------------

    async def add_report(self, scan_id: str, verdict: str, source: str, comment: str = "",
                         *, gateway_id: str = "") -> dict[str, Any] | None:
        """Record a report on a scan; None when the scan is unknown."""
        now, report_id = time.time(), secrets.token_hex(8)
        gateway = gateway_id or self.gateway_id
        return await self._write(lambda: add_report(self.dialect, report_id, scan_id, verdict, source,
                                                    comment, gateway, now))

    async def add_override(self, scan_id: str, action: str, source: str,
                           *, gateway_id: str = "") -> dict[str, Any] | None:
        """Record an override of a scan's verdict; None when the scan is unknown."""
        now, override_id = time.time(), secrets.token_hex(8)
        gateway = gateway_id or self.gateway_id
        return await self._write(lambda: add_override(self.dialect, override_id, scan_id, action, source,
                                                      gateway, now))

    async def feedback_reports(self, since: float | None = None, limit: int = 1_000_000) -> list[dict[str, Any]]:
        return await self._read(feedback_reports(self.dialect, since, limit))

    # -- counters ----------------------------------------------------------------------------

    async def incr_counter(self, name: str, amount: int = 1) -> None:
        await self._write(lambda: incr_counter(self.dialect, name, amount))

    async def counters(self) -> dict[str, int]:
        return await self._read(counters(self.dialect))

    # -- maintenance -------------------------------------------------------------------------

    async def apply_retention(self, days: int, rows: int) -> int:
        """Delete what is older than ``days`` or beyond the newest ``rows`` scans; return scans removed."""
        cutoff = time.time() - days * 86_400 if days > 0 else None
        return int(await self._write(lambda: self._retention(cutoff, rows)))

    def _retention(self, cutoff: float | None, rows: int) -> Program[int]:
        return apply_retention(self.dialect, cutoff, rows)
