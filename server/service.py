"""ScanService: the one place both the proxy and the extension path go through.

``submit`` records the scan (committed before it returns, so whoever answers "accepted" can
rely on it), publishes ``SCAN_STARTED``, runs the engine in the ScanPool, publishes
``SCAN_UPDATE`` as layers finish (those already overtaken folded: ``scanner.relay``) and
``SCAN_COMPLETE`` at the end, and completes the record. The same
URL with the same content within ``[proxy] dedupe_window_s`` gets the earlier job back (its
verdict, or the scan still in flight) instead of a rescan.

A site whose scans keep running past the pool's timeout (``SITE_TIMEOUTS`` kills of scans that
had run at least half of it, within
``SITE_QUARANTINE_S``) is quarantined for ``SITE_QUARANTINE_S``: :meth:`ScanService.quarantined`
names it, and the proxy in block mode refuses its pages without scanning them (fail closed for
that site: waiting would let them through on the block budget or starve the pool). The pool's
round-robin per site (``scanner.py``) keeps such a site from delaying the others meanwhile.

The allow/block lists are the :class:`~.lists.ListService`'s (``service.lists``): it publishes
them as a versioned snapshot, which is pushed to the pool's workers and which the proxy checks
requests against. Every job carries the list version it was submitted under, and a job is reused
(deduplicated) only under that same version.

What the proxy needs of this service is the :class:`ScanClient` protocol; its scans fail with the
pool's typed errors (:class:`~.scanner.ScanTimeout`, :class:`~.scanner.ScanFailed`, both
:class:`~.scanner.ScanError`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from .. import __version__
from ..engine.capture import Capture, sha256_text
from ..engine.engine import Progress
from ..engine.lists import ListSnapshot, url_key
from ..engine.verdict import ScriptVerdict, Verdict, with_malicious_scripts
from ..settings import Settings
from .events import EVENT_SCHEMA_VERSION, EventBus, InMemoryEventBus
from .lists import ListService
from .metrics import Metrics
from .scanner import ScanPool, ScanTimeout, site_of
from .store import NewScan, ScanResult, ScanStore, StoreUnavailable, iso_ts, open_store
from .store_sql import MAX_COMMENT

log = logging.getLogger(__name__)

METHODS = ("PROXY", "EXTENSION")
RETENTION_INTERVAL_S = 600.0
#: How long an acknowledged submission may wait for the store's commit before it is refused (503).
STORE_WAIT_S = 10.0
#: A proxied response waits at most this long for its scan's record; then the scan goes on anyway.
PROXY_STORE_WAIT_S = 2.0
MAX_DEDUPE_ENTRIES = 10_000
#: Scans of one site killed by the pool's timeout within SITE_QUARANTINE_S that quarantine it.
SITE_TIMEOUTS = 2
SITE_QUARANTINE_S = 600.0


class ScanJob:
    """A submitted scan: its id now, its verdict later."""

    def __init__(self, scan_id: str, *, lists_version: int, deduplicated: bool = False,
                 future: asyncio.Future[Verdict] | None = None, blocks_until: float | None = None) -> None:
        self.scan_id = scan_id
        #: the list version it was submitted under: it is reused only while that version is in force
        self.lists_version = lists_version
        self.deduplicated = deduplicated
        #: until when (``time.monotonic()``) a response waits for this verdict (see ScanService.submit)
        self.blocks_until = blocks_until
        self._future: asyncio.Future[Verdict] = future or asyncio.get_running_loop().create_future()
        self.submitted = time.time()

    async def verdict(self, timeout: float | None = None) -> Verdict:
        """The verdict; ``asyncio.TimeoutError`` on timeout, the pool's :class:`~.scanner.ScanError` if the scan failed."""
        return await asyncio.wait_for(asyncio.shield(self._future), timeout)

    def done(self) -> bool:
        return self._future.done()

    def _as_duplicate(self) -> ScanJob:
        return ScanJob(self.scan_id, lists_version=self.lists_version, deduplicated=True, future=self._future)


class ScanClient(Protocol):
    """What the proxy needs of the scan service (:class:`ScanService` is the implementation)."""

    lists: ListService
    proxy_address: tuple[str, int] | None

    async def submit(self, capture: Capture, *, method: str, page_scan_id: str | None = None,
                     blocks_until: float | None = None) -> ScanJob: ...

    async def record_unscanned(self, capture: Capture, reason: str, *, method: str = "PROXY",
                               detail: str = "", page_scan_id: str | None = None) -> str: ...

    async def add_list_entry(self, name: str, entry: str, kind: str, note: str = "") -> dict[str, Any]: ...

    async def add_report(self, scan_id: str, verdict: str, source: str, comment: str = "") -> dict[str, Any] | None: ...

    async def add_override(self, scan_id: str, action: str, source: str) -> dict[str, Any] | None: ...
    async def fold_script(self, page_scan_id: str, script: ScriptVerdict, *, blocked: bool,
                          wait_s: float = 10.0) -> Verdict | None: ...

    async def link_resource(self, page_scan_id: str, resource_scan_id: str, kind: str, *, url: str = "",
                            size: int | None = None, sha256: str | None = None) -> None: ...

    def quarantined(self, url: str) -> str | None: ...

    @property
    def queue_depth(self) -> int: ...

    def site_depth(self, host: str) -> int: ...

    async def count(self, name: str, amount: int = 1) -> None: ...


def make_pool(settings: Settings) -> ScanPool:
    """The process pool that runs the engine off the event loop."""
    return ScanPool(
        settings.engine, workers=settings.proxy.workers, timeout_s=settings.proxy.scan_timeout_ms / 1000.0
    )


def script_verdict(capture: Capture, scan_id: str | None, verdict: Verdict) -> ScriptVerdict:
    """What a page's verdict says of a MALICIOUS script of it (a script capture and its verdict)."""
    script = capture.scripts[0] if capture.scripts else None
    return ScriptVerdict(url=capture.url, sha256=(script.sha256 or "") if script else "", scan_id=scan_id,
                         classification=verdict.classification,
                         headline=verdict.indicators[0].title if verdict.indicators else "")


def body_sha256(capture: Capture) -> str:
    """The sha256 a lookup finds a scan by: a page's HTML, or a lone external script's text
    (the network's bytes as UTF-8, as the reputation layer hashes scripts); '' for a URL alone."""
    if capture.html is not None:
        return sha256_text(capture.html)
    if len(capture.scripts) == 1 and not capture.scripts[0].inline and capture.scripts[0].sha256:
        return capture.scripts[0].sha256
    return ""


def content_key(capture: Capture) -> str:
    """Hash of what the engine would see: same key, same verdict."""
    h = hashlib.sha256()
    h.update(capture.url.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update((capture.html or "").encode("utf-8", "surrogatepass"))
    for script in capture.scripts:
        h.update(b"\0s")
        h.update((script.url or "").encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update((script.sha256 or "").encode())
    if capture.dom is not None:
        h.update(b"\0d")
        h.update(repr(capture.dom).encode("utf-8", "surrogatepass"))
    h.update(b"\0t")
    h.update((capture.title or "").encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class ScanService:
    """Owns the ScanPool, the event bus and the store (see module docstring)."""

    def __init__(self, settings: Settings, *, pool: Any = None, store: ScanStore | None = None,
                 read_events: bool = True, lists: ListService | None = None) -> None:
        """``lists``: the proxy's list service (holding the config files' entries it checks
        requests against); by default one with the API entries only."""
        self.settings = settings
        self.gateway_id = settings.gateway_name
        self.store: ScanStore = store or open_store(settings.store, settings.data_path, gateway_id=self.gateway_id)
        self.bus: EventBus = make_bus(settings, self.store, read=read_events)
        self.metrics = Metrics()
        self._pool = pool
        self._dedupe: OrderedDict[str, ScanJob] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.lists = lists or ListService()
        self._retention_task: asyncio.Task[None] | None = None
        self.started_at = time.time()
        self.model_versions: dict[str, str] = {}
        self.events_url = ""
        #: Where the proxy listens, when one runs in this process (the addon sets it): shown by
        #: the dashboard's empty state so a user points the browser at the right port.
        self.proxy_address: tuple[str, int] | None = None
        #: more sections of :meth:`health`, by key (the feeds' status)
        self.health_parts: dict[str, Callable[[], Any]] = {}
        self._started = False
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = 0
        #: site -> times its scans were killed for running too long; site -> quarantined until
        self._site_timeouts: dict[str, list[float]] = {}
        self._quarantine: dict[str, float] = {}
        #: scans in flight by id: a script's verdict folded into its page waits for the page's
        self._running: dict[str, ScanJob] = {}
        #: one re-judgement at a time (each reads, folds and rewrites a page's record)
        self._fold_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pool(self) -> Any:
        return self._pool

    async def start(self) -> None:
        self.settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.store.open()
        await self.bus.start()
        if self._pool is None:
            self._pool = make_pool(self.settings)
        start_workers = getattr(self._pool, "start", None)
        if start_workers is not None:
            start_workers()  # spawn the workers now, not on the first scan
        # The store's entries, then every change (here or on another gateway sharing the store)
        # as a new snapshot: to the workers, and announced to the dashboards.
        await self.lists.attach(self.store, self._lists_changed)
        self._push_lists(self.lists.snapshot)
        self.metrics.gauge("malwaresnipper_scan_queue_depth", "Scans waiting for or running in a worker.",
                           lambda: self.queue_depth)
        self.metrics.gauge("malwaresnipper_events_dropped_total",
                           "Events not delivered because a client was too slow.", lambda: self.bus.dropped)
        self.metrics.gauge("malwaresnipper_events_published_total", "Events published.",
                           lambda: self.bus.published)
        self.metrics.gauge("malwaresnipper_event_clients", "Event stream subscribers.",
                           lambda: self.bus.subscriber_count)
        self._retention_task = asyncio.create_task(self._retention_loop())
        self.started_at = time.time()
        self._started = True

    async def stop(self) -> None:
        """Let running scans finish (briefly), then close the pool and flush the store."""
        if not self._started:
            return
        self._started = False
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._pool is not None:
            try:
                await self._pool.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the scan pool failed")
        await self.lists.detach()
        await self.bus.stop()
        await self.store.close()

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await self.store.apply_retention(
                    self.settings.store.retention_days, self.settings.store.retention_rows
                )
                if removed:
                    log.info("retention removed %d old scans", removed)
            except Exception:  # noqa: BLE001 - retention must never stop the service
                log.exception("retention failed")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    @property
    def queue_depth(self) -> int:
        """Scans waiting for or running in a worker."""
        return int(getattr(self._pool, "queue_depth", 0) or 0)

    def site_depth(self, host: str) -> int:
        """Scans of this host's site waiting for or running in a worker."""
        depth = getattr(self._pool, "site_depth", None)
        return int(depth(host)) if depth is not None else 0

    def health(self) -> dict[str, Any]:
        models = dict(getattr(self._pool, "model_versions", None) or {}) or dict(self.model_versions)
        health = {
            "status": "ok",
            "version": __version__,
            "engine_version": __version__,
            "models": models,
            "queue_depth": self.queue_depth,
            "uptime_s": round(time.time() - self.started_at, 3),
            "events_url": self.events_url,
            "gateway_id": self.gateway_id,
            "event_bus": self.bus.health(),
            "store": {"backend": self.settings.store.backend, "available": bool(self.store.available)},
            "proxy": {"host": self.proxy_address[0], "port": self.proxy_address[1]} if self.proxy_address else None,
        }
        for key, part in self.health_parts.items():
            health[key] = part()
        return health

    # -- scanning ----------------------------------------------------------------------------

    async def submit(
        self,
        capture: Capture,
        *,
        method: str,
        page_scan_id: str | None = None,
        blocks_until: float | None = None,
    ) -> ScanJob:
        """Record and start a scan (see module docstring). Returns once the record is committed.

        ``blocks_until``: a response waits for this verdict until then (``time.monotonic()``;
        ``math.inf``: however long it takes), and a MALICIOUS verdict arriving by then is
        recorded as blocked. None: nothing waits (monitor mode, the extension).
        """
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        key = content_key(capture)
        now = time.time()
        lists_version = self.lists.version
        earlier = self._dedupe.get(key)
        window = self.settings.proxy.dedupe_window_s
        if (earlier is not None and now - earlier.submitted <= window and not _failed(earlier)
                and earlier.lists_version == lists_version):
            self.metrics.dedupe_hits += 1
            return earlier._as_duplicate()
        job = ScanJob(self._new_scan_id(), lists_version=lists_version, blocks_until=blocks_until)
        await self._record_new(NewScan(
            scan_id=job.scan_id, ts=now, url=capture.url, domain=capture.host,
            title=capture.title, method=method, content_hash=key, gateway_id=self.gateway_id,
            body_sha256=body_sha256(capture),
        ))
        self._running[job.scan_id] = job
        if window > 0:
            self._dedupe[key] = job
            self._dedupe.move_to_end(key)
            self._prune_dedupe(now, window)
        base = {
            "type": "event",
            "schema": EVENT_SCHEMA_VERSION,
            "scan_id": job.scan_id,
            "url": capture.url,
            "method": method,
            "title": capture.title,
            "gateway_id": self.gateway_id,
        }
        self._publish(base, "SCAN_STARTED", 0, {"page_scan_id": page_scan_id})
        task = asyncio.create_task(self._run(job, capture, base, page_scan_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._running.pop(job.scan_id, None))
        return job

    # -- a page's verdict with its scripts' ----------------------------------------------------

    async def fold_script(self, page_scan_id: str, script: ScriptVerdict, *, blocked: bool,
                          wait_s: float = 10.0) -> Verdict | None:
        """Re-judge a page with the MALICIOUS verdict of a script it loads
        (:func:`~malwaresnipper.engine.verdict.with_malicious_scripts`).

        ``blocked``: the gateway replaced the script (block mode), so the page is recorded as
        "scripts blocked". Waits (up to ``wait_s``) for the page's own scan when it is still
        running. When the record changes, a ``SCAN_UPDATE`` with ``layer: "scripts"`` and
        ``rejudged: true`` carries the page's new level. Returns the page's verdict (None: no
        completed page scan of that id)."""
        job = self._running.get(page_scan_id)
        if job is not None:
            try:
                await asyncio.wait_for(asyncio.shield(job._future), wait_s)
            except Exception:  # noqa: BLE001 - timed out or failed: the record below says which
                return None
        async with self._fold_lock:
            record = await self.store.get_scan(page_scan_id)
            if record is None or record["status"] != "complete" or not record.get("verdict"):
                return None
            page = Verdict.from_dict(record["verdict"])
            folded = with_malicious_scripts(page, [script], suspicious=self.settings.engine.thresholds.suspicious)
            scripts_blocked = bool(record.get("scripts_blocked")) or blocked
            if folded is page and scripts_blocked == bool(record.get("scripts_blocked")):
                return page
            verdict_dict = folded.to_dict()
            indicators = verdict_dict["indicators"]
            await self.store.rejudge_scan(ScanResult(
                scan_id=page_scan_id, status="complete", risk_score=folded.risk_score,
                threat_level=folded.threat_level.value, classification=folded.classification,
                blocked=bool(record.get("blocked")), duration_ms=0.0, verdict=verdict_dict,
                indicators=indicators, scripts_blocked=scripts_blocked,
            ))
        base = {"type": "event", "schema": EVENT_SCHEMA_VERSION, "scan_id": page_scan_id, "url": record["url"],
                "method": record["method"], "title": record["title"], "gateway_id": record.get("gateway_id", "")}
        self._publish(base, "SCAN_UPDATE", 100, {
            "layer": "scripts", "rejudged": True,
            "risk_score": round(folded.risk_score, 4), "threat_level": folded.threat_level.value,
            "classification": folded.classification, "indicators": indicators,
            "scripts_blocked": scripts_blocked, "script_scan_id": script.scan_id,
        })
        if page.threat_level is not folded.threat_level:
            log.warning("malwaresnipper: page %s re-judged %s with its script %s (scan %s)", record["url"][:300],
                        folded.threat_level.value, script.url[:300], script.scan_id)
        return folded

    async def lookup(self, urls: list[str], sha256s: list[str],
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The newest completed verdicts known by URL (normalised: ``url_key``) and by body sha256:
        ``({url: verdict}, {sha256: verdict})``, unknown ones absent."""
        keys = {url: url_key(url) for url in urls}
        by_key, by_sha = await self.store.lookup_verdicts(list(dict.fromkeys(keys.values())), sha256s)
        return {url: by_key[key] for url, key in keys.items() if key in by_key}, by_sha

    async def _record_new(self, scan: NewScan) -> None:
        """Record an accepted scan; committed before returning, unless the store is down.

        While the store is unreachable its writes wait in a bounded queue. A proxied response
        must not wait for that: its scan goes on and the record is written when the store is
        back. A client that needs an acknowledgement (the API) gets :class:`StoreUnavailable`
        (503) instead, so nothing acknowledged is ever missing from the history.
        """
        proxied = scan.method == "PROXY"
        if not proxied and not self.store.available:
            # Refused outright, not queued: a client told 503 must not find the scan recorded later.
            raise StoreUnavailable("the history store is unreachable; the scan was not accepted")
        committed = await self._committed(self.store.insert_scan(scan), wait_s=PROXY_STORE_WAIT_S if proxied else STORE_WAIT_S)
        if not committed and not proxied:
            raise StoreUnavailable("the history store did not commit in time; the scan was not "
                                   "acknowledged (it may still be recorded)")

    async def _committed(self, write: Any, *, wait_s: float) -> bool:
        """Wait for ``write`` to commit, unless the store is down or slow: then False, and the
        write finishes (or its failure is logged) in the background."""
        fut = asyncio.ensure_future(write)
        if self.store.available:
            try:
                await asyncio.wait_for(asyncio.shield(fut), wait_s)
                return True
            except TimeoutError:
                pass
        fut.add_done_callback(_log_write_error)
        return False

    def _new_scan_id(self) -> str:
        """Unique across restarts (random per-process prefix) and cheap (no urandom per scan)."""
        self._id_counter += 1
        return f"{self._id_prefix}{self._id_counter:08x}"

    def _publish(self, base: dict[str, Any], status: str, progress: int, extra: dict[str, Any]) -> None:
        now = time.time()
        message = {**base, "ts": iso_ts(now), "status": status, "progress": progress, **extra}
        self.bus.publish(message, epoch=now)

    async def _run(self, job: ScanJob, capture: Capture, base: dict[str, Any], page_scan_id: str | None) -> None:
        def on_progress(step: Progress) -> None:
            self._publish(base, "SCAN_UPDATE", min(99, max(1, step.percent)),
                          {"layer": step.layer, "partial_score": round(float(step.partial_score), 4)})

        started = job.submitted
        try:
            verdict: Verdict = await self._pool.scan(capture, progress=on_progress)
        except asyncio.CancelledError:
            self._finish_failed(job, base, "the gateway stopped before this scan finished", "cancelled",
                                page_scan_id)
            raise
        except Exception as exc:  # noqa: BLE001 - ScanTimeout, ScanFailed, anything: recorded, not raised
            reason = "timeout" if isinstance(exc, ScanTimeout) else "failed"
            # only scans that ran long count against the site (a long wait in the queue is load)
            if isinstance(exc, ScanTimeout) and exc.ran_s >= self._pool_timeout_s() / 2:
                self._note_timeout(capture.host)
            self._finish_failed(job, base, f"{reason}: {type(exc).__name__}: {exc}"[:500], reason, page_scan_id, exc)
            return
        elapsed_ms = (time.time() - started) * 1000.0
        # Blocked only if a response was still waiting for it: one whose budget ran out went on
        # unblocked, and the record must say what really happened.
        blocked = verdict.is_malicious and job.blocks_until is not None and time.monotonic() <= job.blocks_until
        verdict_dict = verdict.to_dict()
        if verdict.model_versions:
            self.model_versions = dict(verdict.model_versions)
        indicators = verdict_dict["indicators"]
        # The record is queued before the event, so a client that reads the scan on
        # SCAN_COMPLETE finds it complete (one writer, first in first out).
        write = self.store.complete_scan(ScanResult(
            scan_id=job.scan_id, status="complete", risk_score=verdict.risk_score,
            threat_level=verdict.threat_level.value, classification=verdict.classification,
            blocked=blocked, duration_ms=elapsed_ms, verdict=verdict_dict, indicators=indicators,
        ))
        self._publish(base, "SCAN_COMPLETE", 100, {
            "risk_score": round(verdict.risk_score, 4),
            "threat_level": verdict.threat_level.value,
            "classification": verdict.classification,
            "indicators": indicators,
            "layers": {
                r.layer: {"score": round(r.score, 4), "confidence": round(r.confidence, 4),
                          "duration_ms": round(r.duration_ms, 3)}
                for r in verdict.layers
            },
            "duration_ms": round(elapsed_ms, 3),
            "blocked": blocked,
            "error": None,
            "page_scan_id": page_scan_id,
            "complete": verdict.complete,
            "incomplete_reasons": list(verdict.incomplete_reasons),
        })
        self.metrics.scan_done(verdict.threat_level.value, base["method"], elapsed_ms / 1000.0)
        try:
            await self._committed(write, wait_s=STORE_WAIT_S)
        except Exception:  # noqa: BLE001
            log.exception("could not record the verdict of scan %s", job.scan_id)
        # Resolved only once the record is committed (unless the store is down: a block decision
        # must not wait for it): whoever waited for the verdict (``?wait=true``, block mode) and
        # then reads the scan back finds it complete.
        if not job._future.done():
            job._future.set_result(verdict)
        if page_scan_id and verdict.is_malicious and capture.html is None and capture.scripts:
            # a script of a page came back MALICIOUS: its page is re-judged with it
            try:
                await self.fold_script(page_scan_id, script_verdict(capture, job.scan_id, verdict), blocked=blocked)
            except Exception:  # noqa: BLE001 - the script's own verdict stands; logged
                log.exception("could not re-judge page scan %s with script scan %s", page_scan_id, job.scan_id)

    async def link_resource(self, page_scan_id: str, resource_scan_id: str, kind: str, *, url: str = "",
                            size: int | None = None, sha256: str | None = None) -> None:
        """Record that a page's scan loaded a script's or frame's scan, so the page's record lists
        its resources and the resource's record names its pages (the urlscan-style view). A link
        is history, not protection: it never waits for a slow or unreachable store."""
        if page_scan_id == resource_scan_id:
            return
        write = self.store.link_resource(page_scan_id, resource_scan_id, kind, url=url, size=size, sha256=sha256)
        await self._committed(write, wait_s=PROXY_STORE_WAIT_S)

    async def record_unscanned(self, capture: Capture, reason: str, *, method: str = "PROXY",
                               detail: str = "", page_scan_id: str | None = None) -> str:
        """Record content that went on without a verdict (too large, undecodable, overloaded, ...).

        Block mode must leave a trace of every pass it could not judge: the history gets a scan
        with status ``unscanned`` and level UNKNOWN (never BENIGN), the event stream a
        ``SCAN_COMPLETE`` whose ``error`` says why, and ``/metrics`` counts it by ``reason``.
        Returns the scan id.
        """
        method = method.upper()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        now = time.time()
        scan_id = self._new_scan_id()
        message = f"unscanned: {reason}" + (f" ({detail})" if detail else "")
        await self._record_new(NewScan(
            scan_id=scan_id, ts=now, url=capture.url, domain=capture.host, title=capture.title,
            method=method, content_hash="", gateway_id=self.gateway_id,
        ))
        self.metrics.unscanned[reason] += 1
        write = self.store.complete_scan(ScanResult(
            scan_id=scan_id, status="unscanned", risk_score=0.0, threat_level="UNKNOWN",
            classification="unscanned", blocked=False, duration_ms=0.0, verdict=None, error=message[:500],
        ))
        write.add_done_callback(_log_write_error)
        base = {"type": "event", "schema": EVENT_SCHEMA_VERSION, "scan_id": scan_id, "url": capture.url,
                "method": method, "title": capture.title, "gateway_id": self.gateway_id}
        self._publish(base, "SCAN_STARTED", 0, {"page_scan_id": page_scan_id})
        self._publish(base, "SCAN_COMPLETE", 100, {
            "risk_score": 0.0, "threat_level": "UNKNOWN", "classification": "unscanned",
            "indicators": [], "layers": {}, "duration_ms": 0.0,
            "blocked": False, "error": message[:500], "page_scan_id": page_scan_id,
            "complete": False, "incomplete_reasons": [message[:500]],
        })
        return scan_id

    def _finish_failed(self, job: ScanJob, base: dict[str, Any], message: str, reason: str,
                       page_scan_id: str | None, exc: BaseException | None = None) -> None:
        elapsed_ms = (time.time() - job.submitted) * 1000.0
        self.metrics.scan_errors[reason] += 1
        write = self.store.complete_scan(ScanResult(
            scan_id=job.scan_id, status="failed", risk_score=0.0, threat_level="UNKNOWN",
            classification="error", blocked=False, duration_ms=elapsed_ms, verdict=None, error=message,
        ))
        write.add_done_callback(_log_write_error)
        self._publish(base, "SCAN_COMPLETE", 100, {
            "risk_score": 0.0, "threat_level": "UNKNOWN", "classification": "error",
            "indicators": [], "layers": {}, "duration_ms": round(elapsed_ms, 3),
            "blocked": False, "error": message, "page_scan_id": page_scan_id,
            "complete": False, "incomplete_reasons": [message],
        })
        if not job._future.done():
            job._future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(message))
            job._future.exception()  # retrieved: nobody may be waiting for it

    def _pool_timeout_s(self) -> float:
        return float(getattr(self._pool, "timeout_s", self.settings.proxy.scan_timeout_ms / 1000.0))

    def _note_timeout(self, host: str) -> None:
        site = site_of(host)
        now = time.time()
        recent = [t for t in self._site_timeouts.get(site, []) if now - t < SITE_QUARANTINE_S] + [now]
        self._site_timeouts[site] = recent[-SITE_TIMEOUTS:]
        if len(recent) >= SITE_TIMEOUTS:
            if site not in self._quarantine:
                log.warning("scans of %s keep running past the timeout: quarantined for %.0f s", site, SITE_QUARANTINE_S)
            self._quarantine[site] = now + SITE_QUARANTINE_S
        if len(self._site_timeouts) > MAX_DEDUPE_ENTRIES:
            self._site_timeouts.pop(next(iter(self._site_timeouts)))

    def quarantined(self, url: str) -> str | None:
        """Why pages of this URL's site are not scanned for now (their scans keep timing out), or None."""
        if not self._quarantine:
            return None
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return None
        site = site_of(host)
        until = self._quarantine.get(site)
        if until is None:
            return None
        if until <= time.time():
            del self._quarantine[site]
            return None
        return (f"scans of {site} ran past the {self.settings.proxy.scan_timeout_ms} ms scan timeout "
                f"{SITE_TIMEOUTS} times within {SITE_QUARANTINE_S / 60:.0f} minutes")

    def _prune_dedupe(self, now: float, window: float) -> None:
        while self._dedupe:
            key, job = next(iter(self._dedupe.items()))
            if now - job.submitted > window or len(self._dedupe) > MAX_DEDUPE_ENTRIES:
                self._dedupe.popitem(last=False)
            else:
                break

    async def snapshot(self) -> dict[str, Any]:
        """What a new event-stream client gets first: stats and the latest scans."""
        return {"stats": await self.stats(), "recent": await self.store.recent(50)}

    async def stats(self, window_s: float = 86_400, bucket_s: float = 3_600) -> dict[str, Any]:
        data = await self.store.stats(window_s, bucket_s)
        data["counters"] = await self.store.counters()
        return data

    async def count(self, name: str, amount: int = 1) -> None:
        """Bump a persisted counter (e.g. the proxy's ``unscanned_too_large``)."""
        await self.store.incr_counter(name, amount)

    # -- feedback: reports and overrides ---------------------------------------------------------

    async def add_report(self, scan_id: str, verdict: str, source: str, comment: str = "") -> dict[str, Any] | None:
        """Record a report ("this page is safe/dangerous") on a scan, count it and tell the
        dashboards; None when the scan is unknown."""
        item = await self.store.add_report(scan_id, verdict, source, comment[:MAX_COMMENT], gateway_id=self.gateway_id)
        if item is not None:
            self.metrics.reports[(verdict, source)] += 1
            self.bus.broadcast({"type": "feedback_changed", "scan_id": scan_id, "kind": "report"})
        return item

    async def add_override(self, scan_id: str, action: str, source: str) -> dict[str, Any] | None:
        """Record that the user went past a scan's verdict (proceed once/anyway, always allow),
        count it and tell the dashboards; None when the scan is unknown."""
        item = await self.store.add_override(scan_id, action, source, gateway_id=self.gateway_id)
        if item is not None:
            self.metrics.overrides[(action, source)] += 1
            self.bus.broadcast({"type": "feedback_changed", "scan_id": scan_id, "kind": "override"})
        return item

    # -- lists (the API's; see ListService) -------------------------------------------------------

    def list_items(self, name: str) -> list[dict[str, Any]]:
        return self.lists.items(name)

    async def add_list_entry(self, name: str, entry: str, kind: str, note: str = "") -> dict[str, Any]:
        """Add an entry (normalised); ValueError when it is not a ``kind`` or the list is unknown."""
        return await self.lists.add(name, entry, kind, note)

    async def remove_list_entry(self, name: str, entry: str) -> str | None:
        """Remove an entry (as written, or in its normal form); the entry removed, or None."""
        return await self.lists.remove(name, entry)

    def _lists_changed(self, snapshot: ListSnapshot) -> None:
        """A new list snapshot: to the workers, and announced to the dashboards. Jobs submitted
        under the old version are no longer reused (see submit)."""
        self._push_lists(snapshot)
        self.bus.broadcast({"type": "lists_changed"})

    def _push_lists(self, snapshot: ListSnapshot) -> None:
        """The workers get ``snapshot`` before their next scan."""
        if self._pool is None:
            return
        try:
            self._pool.update_lists(snapshot)
        except Exception:  # noqa: BLE001
            log.exception("could not push the lists to the scan pool")


def _log_write_error(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("could not write a scan record: %r", fut.exception())


def make_bus(settings: Settings, store: ScanStore, *, read: bool = True) -> EventBus:
    """The bus for ``[events] backend``: in-process (one gateway) or Redis Streams (several)."""
    events = settings.events
    if events.backend == "memory":
        return InMemoryEventBus(store)
    if events.backend == "redis":
        from .redis_bus import RedisEventBus

        return RedisEventBus(
            events.url, gateway_id=settings.gateway_name, stream=events.stream, group=events.group,
            max_len=events.max_len, buffer_events=events.buffer_events, read=read,
        )
    from ..engine.errors import ConfigError

    raise ConfigError(f"[events] backend = {events.backend!r} is not available (known: 'memory', 'redis')")


def _failed(job: ScanJob) -> bool:
    return job.done() and job._future.exception() is not None
