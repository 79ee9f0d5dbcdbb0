"""The gateway's fast path for repeats: the same URL with the same bytes reuses its verdict.

The scan service already reuses verdicts for identical captures, but reaching it costs a decode,
a Capture and a content hash per response. Here the key is the URL plus a hash of the raw body
bytes (Python's keyed SipHash: fast, and not predictable by a page), so a repeat costs one hash
and a dict lookup. Entries live ``window_s`` (``[proxy] dedupe_window_s``) and the table is
bounded. Allow/block list changes are still honoured at request time, before this table is used.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class Remembered:
    kind: str  # "html" or "js"
    scan_id: str | None
    verdict: Any  # engine Verdict
    at: float


class RecentVerdicts:
    def __init__(self, window_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, int, int], Remembered] = OrderedDict()
        self.hits = 0

    @staticmethod
    def key(url: str, raw: bytes) -> tuple[str, int, int]:
        return (url, len(raw), hash(raw))

    def get(self, key: tuple[str, int, int]) -> Remembered | None:
        item = self._items.get(key)
        if item is None:
            return None
        if time.monotonic() - item.at > self.window_s:
            del self._items[key]
            return None
        self.hits += 1
        return item

    def put(self, key: tuple[str, int, int], kind: str, scan_id: str | None, verdict: Any) -> None:
        if self.window_s <= 0:
            return
        self._items[key] = Remembered(kind, scan_id, verdict, time.monotonic())
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
