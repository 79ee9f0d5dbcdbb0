"""The allow and block lists in force, owned by one service.

Two sources. The config's list files (``[engine.reputation] allowlist_files`` and
``blocklist_files``) are loaded by whoever reads them with the same loader
(:func:`~malwaresnipper.engine.layers.reputation.config_lists`): each scan worker's reputation
layer, and the proxy, which hands its copy to this service for request-time checks. The entries
managed through the API live in the store and, in memory, here.

The API entries are published as one :class:`~malwaresnipper.engine.lists.ListSnapshot` whose
version grows on every change (made here, or on another gateway sharing the store). The same
snapshot goes to the scan workers and to the proxy's request-time checks, and every cached
verdict carries the version it was computed under, so a list change ends its reuse.

Every entry, wherever it comes from, is read by
:func:`~malwaresnipper.engine.lists.normalise_entry`: what the API stores, what the proxy matches
at request time and what the engine matches in a scan are the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..engine.lists import (
    ALLOWLISTED,
    API_ALLOWLIST,
    API_BLOCKLIST,
    DEFAULT_CLASSIFICATION,
    AddressHit,
    ListEntries,
    ListHit,
    ListSnapshot,
    first_address_hit,
    normalise_entry,
)
from .store import LIST_KINDS, LIST_NAMES, ScanStore

log = logging.getLogger(__name__)

#: How each API list's entries read in a verdict or a block page.
_HITS = {"allow": ListHit(ALLOWLISTED, API_ALLOWLIST), "block": ListHit(DEFAULT_CLASSIFICATION, API_BLOCKLIST)}

OnChange = Callable[[ListSnapshot], None]


class ListLookup(NamedTuple):
    """What the lists say about one address: a block hit beats an allow hit, as in the engine."""

    blocked: AddressHit | None = None
    allowed: AddressHit | None = None


class ListService:
    """The lists in force (see the module docstring)."""

    def __init__(self, files: tuple[ListEntries, ListEntries] | None = None) -> None:
        """``files``: the config files' ``(allow, block)`` entries, when this process checks
        requests against them (the proxy); ``malwaresnipper serve`` checks none."""
        self._files = files or (ListEntries(), ListEntries())
        self._items: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in LIST_NAMES}
        #: allowed for this run only (the store could not take them)
        self._for_now: set[str] = set()
        self._snapshot = ListSnapshot()
        self._store: ScanStore | None = None
        self._on_change: OnChange | None = None
        self._reload: asyncio.Task[None] | None = None
        self._dirty = False
        #: the ``[[feeds]]`` entries in force, ``(allow, block)`` (see :mod:`.feeds`)
        self._feeds = (ListEntries(), ListEntries())

    # -- reading ---------------------------------------------------------------------------------

    @property
    def snapshot(self) -> ListSnapshot:
        """The API-managed entries in force and their version."""
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    def use_files(self, files: tuple[ListEntries, ListEntries]) -> None:
        """Check requests against these config-file entries from now on."""
        self._files = files

    def lookup(self, url: str) -> ListLookup:
        """What the lists say about ``url`` (fast, no I/O: the proxy asks for every request)."""
        snapshot = self._snapshot
        (file_allow, file_block), allow, block = self._files, snapshot.allow, snapshot.block
        if not (len(file_block) or len(block) or len(file_allow) or len(allow)):
            return ListLookup()
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return ListLookup()
        blocked = first_address_hit((file_block, block), url, host)
        if blocked is not None:
            return ListLookup(blocked=blocked)
        return ListLookup(allowed=first_address_hit((file_allow, allow), url, host))

    def items(self, name: str) -> list[dict[str, Any]]:
        """The API entries of list ``name``, as stored."""
        return list(self._items[name].values())

    # -- the store ---------------------------------------------------------------------------------

    async def attach(self, store: ScanStore, on_change: OnChange | None = None) -> None:
        """Load the store's entries (see :attr:`snapshot`) and follow changes other gateways make
        to them; ``on_change`` gets every snapshot published after this one."""
        self._store = store
        await self._load()
        self._publish()
        self._on_change = on_change
        await store.watch_lists(self._changed_elsewhere)

    async def detach(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)
        self._store = self._on_change = None

    async def add(self, name: str, entry: str, kind: str, note: str = "") -> dict[str, Any]:
        """Store ``entry`` (normalised) on list ``name``; ValueError when it is not of ``kind``."""
        if name not in LIST_NAMES or kind not in LIST_KINDS:
            raise ValueError("unknown list or kind")
        normal = normalise_entry(entry)
        if normal.kind != kind:
            raise ValueError(f"{entry[:80]!r} is a {normal.kind}, not a {kind}")
        item = await self._attached().add_entry(name, normal.text, kind, note)
        self._items[name][normal.text] = item
        self._publish()
        return item

    async def remove(self, name: str, entry: str) -> str | None:
        """Remove ``entry`` (as written, or in its normal form) from list ``name``; the entry removed."""
        candidates = [entry.strip()]
        with contextlib.suppress(ValueError):  # not an entry at all: only as written
            candidates.append(normalise_entry(entry).text)
        store = self._attached()
        for candidate in dict.fromkeys(candidates):
            removed = await store.remove_entry(name, candidate)
            if self._items[name].pop(candidate, None) is not None or removed:
                self._publish()
                return candidate
        return None

    def use_feeds(self, allow: ListEntries, block: ListEntries) -> None:
        """Put these feed entries in force beside the API's, as one new snapshot (so a scan or a
        request check sees the old feeds or the new ones, never a mix)."""
        self._feeds = (allow, block)
        self._publish()

    def allow_for_now(self, host: str) -> None:
        """Allow ``host`` until the gateway stops (when the store cannot take the entry)."""
        self._for_now.add(host)
        self._publish()

    def _attached(self) -> ScanStore:
        if self._store is None:
            raise RuntimeError("the list service is not attached to a store")
        return self._store

    async def _load(self) -> None:
        fresh: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in LIST_NAMES}
        store = self._attached()
        for name in LIST_NAMES:
            for item in await store.list_entries(name):
                fresh[name][item["entry"]] = item
        self._items = fresh

    def _changed_elsewhere(self) -> None:
        """The store says a list changed (maybe on another gateway): reload, coalescing bursts."""
        self._dirty = True
        if self._reload is None or self._reload.done():
            self._reload = asyncio.create_task(self._reload_lists())

    async def _reload_lists(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._load()
            except Exception as exc:  # noqa: BLE001 - keep the lists we have; the next change retries
                log.warning("could not reload the allow/block lists: %r", exc)
                return
            self._publish()

    # -- publishing ------------------------------------------------------------------------------

    def _publish(self) -> None:
        """A new snapshot of the API entries, one version on."""
        allow = _entries(self._items["allow"], _HITS["allow"], extra=self._for_now)
        block = _entries(self._items["block"], _HITS["block"])
        feed_allow, feed_block = self._feeds
        allow, block = _over(allow, feed_allow), _over(block, feed_block)
        self._snapshot = ListSnapshot(self._snapshot.version + 1, allow, block)
        if self._on_change is not None:
            try:
                self._on_change(self._snapshot)
            except Exception:  # noqa: BLE001 - a listener's failure must not undo the change
                log.exception("a list-change listener failed")


def _over(api: ListEntries, feeds: ListEntries) -> ListEntries:
    """The API's entries over the feeds' (an API entry wins, as the first listing does in
    :func:`~malwaresnipper.engine.lists.merge`), built by dict copies rather than entry by entry:
    this runs on the event loop, and a feed may hold a million entries."""
    if not len(feeds):
        return api
    if not len(api):
        return feeds

    def over(api_part: Mapping[str, ListHit], feed_part: Mapping[str, ListHit]) -> Mapping[str, ListHit]:
        if not api_part:
            return feed_part
        out = dict(feed_part)
        out.update(api_part)
        return out

    return ListEntries(over(api.domains, feeds.domains), over(api.urls, feeds.urls), over(api.sha256, feeds.sha256))


def _entries(items: Mapping[str, Mapping[str, Any]], hit: ListHit, extra: set[str] | None = None) -> ListEntries:
    """Stored entries by kind and key; an entry stored before normalisation was one project-wide
    is normalised now, and one that is none of domain, URL or sha256 is skipped, with a warning."""
    buckets: dict[str, dict[str, ListHit]] = {"domain": {}, "url": {}, "sha256": {}}
    for text in [*items, *(extra or ())]:
        try:
            normal = normalise_entry(text)
        except ValueError as exc:
            log.warning("list entry %r ignored: %s", text[:100], exc)
            continue
        buckets[normal.kind].setdefault(normal.key, hit)
    return ListEntries(buckets["domain"], buckets["url"], buckets["sha256"])
