"""The gateway's fast path for repeats: the same URL with the same bytes reuses its verdict.

The scan service already reuses verdicts for identical captures, but reaching it costs a decode,
a Capture and a content hash per response. Here a repeat costs a dict lookup and one comparison
of the raw body bytes with the remembered ones (``memcmp``: many times faster than hashing the
body, and exact, so a page cannot craft a body that passes for another). The table is indexed by
URL and body length, one body per slot (the latest), so no input can make lookups walk a chain;
entries live ``window_s`` (``[proxy] dedupe_window_s``) and the table is bounded in entries and
in the bytes it keeps alive.

The same bytes being scanned right now are shared too: the scan in flight is found by the same
key. Every entry, finished or in flight, carries the list version it was computed under and is
reused only while that version is in force: a list change (a sha256 blocklisted through the API,
say) ends the reuse of every verdict computed before it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_ENTRIES = 20_000
#: Raw bodies kept for the comparison; beyond this the oldest entries go.
MAX_BYTES = 32 * 1024 * 1024


class BodyKey:
    """A response by URL and raw body: equal only when the bytes are equal.

    Hashes on the URL and the length alone (no pass over the body); a dict that holds several
    keys of one URL and length tells them apart by comparing the bytes.
    """

    __slots__ = ("url", "raw", "slot", "_hash")

    def __init__(self, url: str, raw: bytes) -> None:
        self.url = url
        self.raw = raw
        self.slot = (url, len(raw))
        self._hash = hash(self.slot)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BodyKey) and self.slot == other.slot and self.raw == other.raw

    def __repr__(self) -> str:
        return f"BodyKey({self.url!r}, {len(self.raw)} bytes)"


@dataclass(frozen=True, slots=True)
class Remembered:
    kind: str  # "html" or "js"
    scan_id: str | None
    verdict: Any  # engine Verdict
    at: float
    raw: bytes = b""
    #: the list version the verdict was computed under
    lists_version: int = 0


class RecentVerdicts:
    """Recent verdicts and scans in flight, by URL and raw body (see the module docstring)."""

    def __init__(self, window_s: float, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], Remembered] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[BodyKey, tuple[int, asyncio.Task[Any]]] = {}
        self.hits = 0

    @staticmethod
    def key(url: str, raw: bytes) -> BodyKey:
        return BodyKey(url, raw)

    def get(self, key: BodyKey, *, lists_version: int) -> Remembered | None:
        """The verdict remembered for these bytes, if computed under ``lists_version``."""
        item = self._items.get(key.slot)
        if item is None or item.raw != key.raw:
            return None
        if time.monotonic() - item.at > self.window_s or item.lists_version != lists_version:
            self._drop(key.slot)
            return None
        self.hits += 1
        return item

    def put(self, key: BodyKey, kind: str, scan_id: str | None, verdict: Any, *, lists_version: int) -> None:
        """Remember a verdict computed under ``lists_version``."""
        if self.window_s <= 0 or len(key.raw) > self.max_bytes:
            return
        self._drop(key.slot)
        self._items[key.slot] = Remembered(kind, scan_id, verdict, time.monotonic(), key.raw, lists_version)
        self._bytes += len(key.raw)
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped.raw)

    def _drop(self, slot: tuple[str, int]) -> None:
        old = self._items.pop(slot, None)
        if old is not None:
            self._bytes -= len(old.raw)

    def in_flight(self, key: BodyKey, *, lists_version: int) -> asyncio.Task[Any] | None:
        """The scan of these bytes running now, if started under ``lists_version``."""
        running = self._inflight.get(key)
        return running[1] if running is not None and running[0] == lists_version else None

    def scanning(self, key: BodyKey, task: asyncio.Task[Any], *, lists_version: int) -> None:
        """``task`` scans these bytes under ``lists_version`` (findable until it ends)."""
        self._inflight[key] = (lists_version, task)

        def finished(t: asyncio.Task[Any]) -> None:
            running = self._inflight.get(key)
            if running is not None and running[1] is t:
                del self._inflight[key]

        task.add_done_callback(finished)
