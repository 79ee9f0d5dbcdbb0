"""Threat-intelligence feeds that refresh themselves (``[[feeds]]`` in the settings).

Each feed is downloaded (an ``https://`` URL from the operator's settings, never from a client)
or read (a file path) every ``refresh_s`` seconds by one asyncio task per feed, with an aiohttp
client: conditional requests (``If-None-Match`` / ``If-Modified-Since``), a size cap read while
streaming, redirects followed by hand so that none leaves ``https``. The body is parsed in a
thread by :mod:`.feed_formats`; a good one is saved under ``<data_dir>/feeds/`` and swapped in
through the one :class:`~.lists.ListService`, which publishes a new snapshot to the scan workers
and to the proxy's request-time checks (every feed's entries together, in one assignment).

A refresh that fails (network, HTTP status, size cap, truncated body, a body that is not the
format, more unreadable rows than ``max_errors``) changes nothing in force: the last good copy
stays, from memory or, after a restart, from disk. The failure is logged, counted in
``/metrics`` (``malwaresnipper_feed_refresh_failures_total{feed=...}``) and shown in the health
answer's ``feeds`` section and by ``malwaresnipper feeds status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ..engine.lists import ListEntries, ListHit, merge
from ..settings import FeedSettings, Settings
from .feed_formats import FeedFormatError, FeedParse, check_source, parse_feed
from .metrics import Metrics, escape_label

log = logging.getLogger(__name__)

#: Redirects followed per download (each one checked like the configured source).
MAX_REDIRECTS = 5
#: Bodies at least this large are parsed in a separate process, smaller ones in a thread.
PARSE_IN_PROCESS_BYTES = 2_000_000
#: Keys per chunk sent back by the parser process (see :func:`_parse_packed`).
_CHUNK_KEYS = 20_000
#: After a failed refresh, the next try comes after this (doubling, at most ``refresh_s``).
FIRST_RETRY_S = 30.0
_USER_AGENT = "MalwareSnipper-feeds/1"

#: What describes a saved copy (as opposed to the counters of the process that saved it).
_COPY_FIELDS = ("etag", "last_modified", "fetched_at", "sha256", "file_stamp")

OnEntries = Callable[[ListEntries, ListEntries], None]


class FeedFetchError(Exception):
    """A download that produced no usable body (the message says why)."""


@dataclass
class FeedState:
    """What is known of one feed; saved beside its last good copy as ``<name>.json``."""

    name: str
    format: str
    kind: str
    source: str
    #: the last good copy: its validators, when it was fetched, its digest and entry count
    etag: str = ""
    last_modified: str = ""
    fetched_at: float = 0.0
    sha256: str = ""
    entries: int = 0
    unreadable_rows: int = 0
    #: the last refresh attempt and what went wrong in it ('' when it worked or said 304)
    checked_at: float = 0.0
    last_error: str = ""
    failures: int = 0
    consecutive_failures: int = 0
    refreshes: int = 0
    not_modified: int = 0
    #: what is in force: "none", "saved copy" (loaded from disk at start) or "download"
    in_force: str = "none"
    #: for file sources: the file's (mtime_ns, size) when last read
    file_stamp: str = ""

    def public(self) -> dict[str, Any]:
        """The health answer's view (no validators: they say nothing to an operator)."""
        out = asdict(self)
        # no source: health answers without a token, and a feed URL may carry an API key
        for key in ("source", "etag", "last_modified", "file_stamp", "consecutive_failures"):
            out.pop(key)
        out["stale"] = bool(self.last_error)
        return out


class Feed:
    """One configured feed: its settings, state and the entries of its last good copy."""

    def __init__(self, settings: FeedSettings, folder: Path, base_dir: str) -> None:
        self.settings = settings
        self.is_url = check_source(settings.source, allow_http_loopback=settings.allow_http_loopback) == "url"
        path = Path(settings.source).expanduser()
        self.path = path if path.is_absolute() or not base_dir else Path(base_dir) / path
        self.body_path = folder / f"{settings.name}.data"
        self.state_path = folder / f"{settings.name}.json"
        self.state = FeedState(settings.name, settings.format, settings.kind, settings.source)
        self.entries = ListEntries()

    def parser(self, body: bytes) -> functools.partial[FeedParse]:
        """The parse of ``body`` as a picklable call (it may run in another process)."""
        s = self.settings
        return functools.partial(parse_feed, s.format, body, name=s.name, kind=s.kind, max_errors=s.max_errors)

    def saved_state(self) -> dict[str, Any] | None:
        """The state saved beside the last good copy, if it is this feed's (same source and format)."""
        try:
            saved = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("source") != self.settings.source \
                or saved.get("format") != self.settings.format:
            return None  # the feed was reconfigured: its old copy is another feed's
        return {k: v for k, v in saved.items() if k in FeedState.__dataclass_fields__ and k not in ("name", "kind")}

    def load_saved_state(self) -> None:
        """Take the saved state as this feed's (its counters too); nothing is in force yet."""
        saved = self.saved_state()
        if saved is not None:
            self.state = FeedState(**{**asdict(self.state), **saved, "in_force": "none"})

    def save_state(self) -> None:
        _write_atomically(self.state_path, json.dumps(asdict(self.state), indent=1).encode())


class FeedManager:
    """Refreshes the configured feeds (see the module docstring)."""

    def __init__(self, feeds: Iterable[FeedSettings], data_dir: Path, *, base_dir: str = "",
                 on_entries: OnEntries | None = None, metrics: Metrics | None = None) -> None:
        self.folder = data_dir / "feeds"
        self.feeds = {f.name: Feed(f, self.folder, base_dir) for f in feeds}
        self._on_entries = on_entries
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._process: ProcessPoolExecutor | None = None
        self._publish_lock = asyncio.Lock()
        self._refresh_locks = {name: asyncio.Lock() for name in self.feeds}
        if metrics is not None:
            metrics.collectors.append(self.metric_lines)

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> FeedManager:
        return cls(settings.feeds, settings.data_path, base_dir=settings.engine.base_dir, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, refresh: bool = True) -> None:
        """Put the saved copies in force, then (``refresh``) keep every feed fresh in the background."""
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True, mode=0o700)
        for feed in self.feeds.values():
            await self._load_saved(feed)
        await self._publish()
        if refresh:
            for feed in self.feeds.values():
                self._tasks.append(asyncio.create_task(self._keep_fresh(feed), name=f"feed {feed.settings.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._process is not None:
            process, self._process = self._process, None
            await asyncio.to_thread(process.shutdown, wait=True, cancel_futures=True)

    # -- reading ---------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Every feed's state (the health answer's ``feeds``)."""
        return [feed.state.public() for feed in self.feeds.values()]

    def metric_lines(self) -> list[str]:
        lines: list[str] = []
        series = (
            ("malwaresnipper_feed_entries", "gauge", "Entries in force from each feed.", lambda s: s.entries),
            ("malwaresnipper_feed_refreshes_total", "counter", "Feed refreshes that put a new copy in force.",
             lambda s: s.refreshes),
            ("malwaresnipper_feed_not_modified_total", "counter", "Feed refreshes answered 304 Not Modified.",
             lambda s: s.not_modified),
            ("malwaresnipper_feed_refresh_failures_total", "counter",
             "Feed refreshes that failed (the last good copy stayed in force).", lambda s: s.failures),
            ("malwaresnipper_feed_stale", "gauge", "1 while a feed's last refresh failed.",
             lambda s: int(bool(s.last_error))),
            ("malwaresnipper_feed_age_seconds", "gauge", "Age of the copy of each feed in force.",
             lambda s: round(time.time() - s.fetched_at, 3) if s.fetched_at else -1),
        )
        for metric, kind, help_text, read in series:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            for feed in self.feeds.values():
                lines.append(f'{metric}{{feed="{escape_label(feed.settings.name)}"}} {read(feed.state):g}')
        return lines

    # -- refreshing ------------------------------------------------------------------------------

    async def refresh(self, name: str) -> FeedState:
        """Refresh feed ``name`` now (download or read, parse, save, swap in); its state after.
        A failure is recorded in the state, never raised."""
        feed = self.feeds[name]
        async with self._refresh_locks[name]:
            feed.state.checked_at = time.time()
            try:
                changed = await self._refresh(feed)
            except asyncio.CancelledError:
                raise
            except (FeedFetchError, FeedFormatError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                self._failed(feed, _describe(exc))
            except Exception as exc:  # noqa: BLE001 - a feed must never take the gateway down
                log.exception("feed %s: refresh failed unexpectedly", name)
                self._failed(feed, _describe(exc))
            else:
                feed.state.last_error = ""
                feed.state.consecutive_failures = 0
                if changed:
                    await self._publish()
            await asyncio.to_thread(feed.save_state)
        return feed.state

    async def refresh_all(self) -> list[FeedState]:
        return list(await asyncio.gather(*(self.refresh(name) for name in self.feeds)))

    async def _keep_fresh(self, feed: Feed) -> None:
        """Refresh ``feed`` when its copy is due, forever (until cancelled). A feed with no copy
        in force is fetched at once; after a failure the next try backs off, at most ``refresh_s``."""
        first = True
        while True:
            state, every = feed.state, feed.settings.refresh_s
            if first and state.in_force == "none":
                delay = 0.0
            elif state.consecutive_failures:
                delay = state.checked_at + min(every, FIRST_RETRY_S * 2 ** (state.consecutive_failures - 1)) - time.time()
            else:
                delay = max(state.fetched_at, state.checked_at) + every - time.time()
            first = False
            if delay > 0:
                await asyncio.sleep(delay)
            await self.refresh(feed.settings.name)

    async def _refresh(self, feed: Feed) -> bool:
        """One refresh of ``feed``; True when a new copy is in force, False when it is unchanged."""
        if await self._adopt_newer_saved_copy(feed):
            feed.state.refreshes += 1
            log.info("feed %s: adopted the copy saved at %s", feed.settings.name,
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(feed.state.fetched_at)))
            return True
        if feed.is_url:
            got = await self._download(feed)
            if got is None:
                feed.state.not_modified += 1
                return False
            body, etag, last_modified = got
            stamp = ""
        else:
            read = await asyncio.to_thread(_read_file, feed.path, feed.settings.max_bytes, feed.state.file_stamp
                                           if feed.state.in_force != "none" else "")
            if read is None:
                feed.state.not_modified += 1
                return False
            body, stamp = read
            etag = last_modified = ""
        parsed = await self._parse(feed, body)
        digest = await asyncio.to_thread(_sha256, body)
        await asyncio.to_thread(_write_atomically, feed.body_path, body)
        feed.entries = parsed.entries
        state = feed.state
        state.etag, state.last_modified, state.file_stamp = etag, last_modified, stamp
        state.fetched_at, state.sha256 = time.time(), digest
        state.entries, state.unreadable_rows = len(parsed.entries), parsed.errors
        state.in_force = "download"
        state.refreshes += 1
        if parsed.errors:
            log.warning("feed %s: %d unreadable rows skipped (%s)", feed.settings.name, parsed.errors,
                        "; ".join(parsed.error_samples))
        log.info("feed %s: %d entries in force", feed.settings.name, state.entries)
        return True

    async def _download(self, feed: Feed) -> tuple[bytes, str, str] | None:
        """The feed's body, ETag and Last-Modified; None for 304 Not Modified."""
        s = feed.settings
        headers = {"User-Agent": _USER_AGENT}
        if feed.state.in_force != "none":  # validators only for a copy we hold
            if feed.state.etag:
                headers["If-None-Match"] = feed.state.etag
            if feed.state.last_modified:
                headers["If-Modified-Since"] = feed.state.last_modified
        url = s.source
        timeout = aiohttp.ClientTimeout(total=s.timeout_s)
        session = self._client()
        for _hop in range(MAX_REDIRECTS + 1):
            async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location", "")
                    url = urljoin(url, location)
                    try:
                        check_source(url, allow_http_loopback=s.allow_http_loopback)
                    except ValueError as exc:
                        raise FeedFetchError(f"redirected to a source not allowed: {exc}") from None
                    continue
                if resp.status == 304:
                    return None
                if resp.status != 200:
                    raise FeedFetchError(f"HTTP {resp.status} {resp.reason or ''}".strip())
                if resp.content_length is not None and resp.content_length > s.max_bytes:
                    raise FeedFetchError(f"the body is {resp.content_length} bytes, over max_bytes = {s.max_bytes}")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > s.max_bytes:
                        raise FeedFetchError(f"the body is over max_bytes = {s.max_bytes}")
                return b"".join(chunks), resp.headers.get("ETag", ""), resp.headers.get("Last-Modified", "")
        raise FeedFetchError(f"more than {MAX_REDIRECTS} redirects")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No cookies kept, no proxy from the environment: a feed is fetched the same way wherever
            # the gateway runs (and never through itself).
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._session

    def _failed(self, feed: Feed, reason: str) -> None:
        state = feed.state
        state.last_error = reason
        state.failures += 1
        state.consecutive_failures += 1
        keeping = {"none": "no copy in force", "saved copy": "keeping the saved copy",
                   "download": "keeping the last good copy"}[state.in_force]
        log.warning("feed %s: refresh failed: %s; %s", feed.settings.name, reason, keeping)

    async def _load_saved(self, feed: Feed) -> None:
        """At start: take the saved state and put the saved copy in force, if it is good."""
        await asyncio.to_thread(feed.load_saved_state)
        if feed.state.sha256 and not await self._use_saved_copy(feed, asdict(feed.state)):
            feed.state.etag = feed.state.last_modified = feed.state.file_stamp = feed.state.sha256 = ""
            feed.state.entries = 0

    async def _adopt_newer_saved_copy(self, feed: Feed) -> bool:
        """Put in force a copy saved since ours by another process (``malwaresnipper feeds update``)."""
        saved = await asyncio.to_thread(feed.saved_state)
        if (saved is None or not saved.get("sha256") or saved["sha256"] == feed.state.sha256
                or float(saved.get("fetched_at") or 0) <= feed.state.fetched_at):
            return False
        return await self._use_saved_copy(feed, saved)

    async def _use_saved_copy(self, feed: Feed, saved: dict[str, Any]) -> bool:
        """Parse the saved body (it must match ``saved``'s digest) and put it in force."""
        try:
            body = await asyncio.to_thread(feed.body_path.read_bytes)
            if await asyncio.to_thread(_sha256, body) != saved.get("sha256"):
                raise FeedFormatError("the saved copy does not match its recorded digest")
            parsed = await self._parse(feed, body)
        except (OSError, FeedFormatError) as exc:
            log.warning("feed %s: saved copy not used: %s", feed.settings.name, exc)
            return False
        feed.entries = parsed.entries
        for key in _COPY_FIELDS:
            setattr(feed.state, key, saved.get(key, getattr(feed.state, key)))
        feed.state.entries, feed.state.unreadable_rows = len(parsed.entries), parsed.errors
        feed.state.in_force = "saved copy"
        return True

    async def _parse(self, feed: Feed, body: bytes) -> FeedParse:
        """Parse ``body`` off the event loop: a small one in a thread, a large one in a process
        (a thread holding the GIL through one long C call, splitting 30 MB of lines say, would
        stall the loop for a tenth of a second)."""
        loop = asyncio.get_running_loop()
        if len(body) < PARSE_IN_PROCESS_BYTES:
            return await loop.run_in_executor(None, feed.parser(body))
        if self._process is None:
            self._process = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            parsed, chunks = await loop.run_in_executor(self._process, _parse_packed, feed.parser(body))
        except BrokenProcessPool:
            self._process = None
            raise FeedFetchError("the parser process died") from None
        return await loop.run_in_executor(None, _unpack, parsed, chunks)

    async def _publish(self) -> None:
        """Every feed's entries together, as one ``(allow, block)`` pair, to the list service."""
        if self._on_entries is None:
            return
        async with self._publish_lock:
            feeds = list(self.feeds.values())
            allow, block = await asyncio.to_thread(_combine, feeds)
            self._on_entries(allow, block)


def _combine(feeds: list[Feed]) -> tuple[ListEntries, ListEntries]:
    allow = merge(f.entries for f in feeds if f.settings.kind == "allow")
    block = merge(f.entries for f in feeds if f.settings.kind == "block")
    return allow, block


def _parse_packed(parse: functools.partial[FeedParse]) -> tuple[FeedParse, list[tuple[str, ListHit, bytes]]]:
    """In the parser process: the parse, its entries sent back as separately pickled chunks of
    keys. One pickle of a million entries would be unpickled here in one C call that holds the
    GIL, and so stalls the event loop, for a tenth of a second or more; chunks let it run between."""
    parsed = parse()
    chunks: list[tuple[str, ListHit, bytes]] = []
    for kind in ("domains", "urls", "sha256"):
        by_hit: dict[ListHit, list[str]] = {}
        for key, hit in getattr(parsed.entries, kind).items():
            by_hit.setdefault(hit, []).append(key)
        for hit, keys in by_hit.items():
            for start in range(0, len(keys), _CHUNK_KEYS):
                chunks.append((kind, hit, pickle.dumps(keys[start:start + _CHUNK_KEYS], pickle.HIGHEST_PROTOCOL)))
    parsed.entries = ListEntries()
    return parsed, chunks


def _unpack(parsed: FeedParse, chunks: list[tuple[str, ListHit, bytes]]) -> FeedParse:
    """In a thread: the entries :func:`_parse_packed` sent, one chunk at a time."""
    parts: dict[str, dict[str, ListHit]] = {"domains": {}, "urls": {}, "sha256": {}}
    hits: dict[ListHit, ListHit] = {}
    for kind, hit, data in chunks:
        parts[kind].update(dict.fromkeys(pickle.loads(data), hits.setdefault(hit, hit)))
    parsed.entries = ListEntries(parts["domains"], parts["urls"], parts["sha256"])
    return parsed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_file(path: Path, max_bytes: int, known_stamp: str) -> tuple[bytes, str] | None:
    """A file source's bytes and stamp; None when its stamp is ``known_stamp`` (unchanged)."""
    info = path.stat()
    stamp = f"{info.st_mtime_ns}:{info.st_size}"
    if stamp == known_stamp:
        return None
    if info.st_size > max_bytes:
        raise FeedFetchError(f"{path} is {info.st_size} bytes, over max_bytes = {max_bytes}")
    return path.read_bytes(), stamp


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees the old copy or the new."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"truncated download: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: file not found"
    text = str(exc) or type(exc).__name__
    return text[:500]


@contextlib.asynccontextmanager
async def running_feeds(settings: Settings, lists: Any, metrics: Metrics | None = None,
                        health_parts: dict[str, Callable[[], Any]] | None = None) -> Any:
    """The configured feeds kept fresh while inside, their entries put in force through ``lists``
    (a :class:`~.lists.ListService`); yields the :class:`FeedManager` (None with no feeds)."""
    if not settings.feeds:
        yield None
        return
    manager = FeedManager.for_settings(settings, on_entries=lists.use_feeds, metrics=metrics)
    if health_parts is not None:
        health_parts["feeds"] = manager.status
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()
