"""Match a script against known library code: unmodified, known with foreign code, or unknown.

* **unmodified**: the script's whole canonical form is that of one known file. Only comments,
  whitespace, quote style and a version string can differ, none of which changes behaviour, so
  the engine may treat the script as known-benign and skip the expensive analysis. Any code
  added, removed or changed anywhere (one statement of 15 tokens is plenty) changes the form.
  A truncated script is never unmodified: its unseen rest could hold anything.
* **foreign**: most of the script's chunks are known, the rest is not: a library with code
  appended, prepended or inserted (how Magecart skimmers hide). The unknown chunks are returned
  as character spans, so the engine scans that code alone. The script is first checked against
  a real parser (:mod:`.verify`): foreign code could otherwise be written so that the browser
  reads what follows it differently from the lexer. Known chunks in another order than in their
  library are accepted as known (reordering library code adds none); a script made only of known
  chunks that is not one known file is "unknown" (scanned in full).
* **unknown**: everything else, with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

import numpy as np

from .canonical import Fingerprint, Unfingerprintable, fingerprint, hash64, statement_offsets
from .database import MIN_SCRIPT_CHARS, KnownCodeDatabase, LibraryFile
from .verify import ParserUnavailable, verify

log = logging.getLogger(__name__)

BUNDLED_DATABASE = Path(__file__).resolve().parents[1] / "data" / "known_code.bin"
#: "foreign" needs this much known code (canonical characters) ...
MIN_KNOWN_CHARS = 1024
#: ... making up at least this share of the script's code (a bundle with a library inside is
#: "foreign" too: its own code is analysed without the library's).
MIN_KNOWN_SHARE = 0.1
#: Texts longer than this are first probed in :data:`PROBE_WINDOWS` windows of
#: :data:`PROBE_CHARS` characters (see :meth:`KnownCode._probe`).
PROBE_ABOVE = 24_000
PROBE_WINDOWS = 4
PROBE_CHARS = 4_000
#: A run of known chunks shorter than this (canonical characters) counts as foreign: a few
#: generic statements (``return this}``) inside foreign code say nothing.
MIN_KNOWN_RUN = 256


class Status(str, Enum):
    UNMODIFIED = "unmodified"
    FOREIGN = "foreign"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class KnownCodeMatch:
    """What the known-code database says about one script."""

    status: Status
    library: LibraryFile | None = None
    #: Character spans ``[start, end)`` of the script that are not known code (status foreign).
    foreign: tuple[tuple[int, int], ...] = ()
    #: Characters of the script in known chunks, and in foreign ones.
    known_chars: int = 0
    foreign_chars: int = 0
    #: Why the script is unknown (for details and tests).
    reason: str = ""

    @property
    def placement(self) -> str:
        """Where the foreign code sits: "appended", "prepended", "inserted in 2 places", ..."""
        if not self.foreign:
            return ""
        total = self.known_chars + self.foreign_chars
        parts = []
        inner = [s for s in self.foreign if s[0] > 0 and s[1] < total]
        if self.foreign[0][0] == 0:
            parts.append("prepended")
        if inner:
            parts.append("inserted" + (f" in {len(inner)} places" if len(inner) > 1 else ""))
        if self.foreign[-1][1] >= total and (self.foreign[-1][0] > 0 or len(self.foreign) == 1):
            parts.append("appended")
        return " and ".join(parts) if parts else "inserted"

    @property
    def description(self) -> str:
        """"jQuery v3.7.1 (unmodified)", "jQuery v3.7.1 with 2.1 KB of foreign code appended"."""
        if self.library is None:
            return ""
        if self.status is Status.UNMODIFIED:
            return f"{self.library.display} (unmodified)"
        return f"{self.library.display} with {human_size(self.foreign_chars)} of foreign code {self.placement}"

    def foreign_text(self, text: str) -> str:
        """The foreign spans of ``text``, one after the other (separated by a line break)."""
        return "\n".join(text[start:end] for start, end in self.foreign)


def human_size(chars: int) -> str:
    if chars < 1000:
        return f"{chars} B"
    if chars < 1_000_000:
        return f"{chars / 1000:.1f} KB"
    return f"{chars / 1_000_000:.1f} MB"


class KnownCode:
    """One or more known-code databases behind one :meth:`match`."""

    def __init__(self, databases: Sequence[KnownCodeDatabase]) -> None:
        self.databases = list(databases)

    @classmethod
    def load(cls, paths: Sequence[str | Path], *, bundled: bool = True) -> KnownCode:
        """The bundled database (unless ``bundled`` is False) plus the files at ``paths``."""
        wanted = ([BUNDLED_DATABASE] if bundled else []) + [Path(p) for p in paths]
        return cls([_load_cached(str(p)) for p in wanted])

    @property
    def files(self) -> int:
        return sum(len(db.files) for db in self.databases)

    def match(self, text: str, *, truncated: bool = False) -> KnownCodeMatch:
        """Look ``text`` up; never raises: a failure is "unknown" (the script is scanned in full)."""
        try:
            return self._match(text, truncated)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop a script's analysis
            log.warning("known-code match failed: %r", exc)
            return KnownCodeMatch(Status.UNKNOWN, reason=f"match failed: {type(exc).__name__}")

    def _match(self, text: str, truncated: bool) -> KnownCodeMatch:
        if not self.databases:
            return KnownCodeMatch(Status.UNKNOWN, reason="no known-code database")
        if len(text) < MIN_SCRIPT_CHARS:
            return KnownCodeMatch(Status.UNKNOWN, reason="too short")
        if not truncated:
            # The same bytes as a known file (a CDN copy): one hash of the text, no canonical form.
            text_hash = hash64(text)
            for db in self.databases:
                code_hash = db.code_for_text(text_hash)
                if code_hash is not None:
                    file = self._file_with_code(code_hash)
                    if file is not None:
                        return KnownCodeMatch(Status.UNMODIFIED, file, known_chars=len(text))
        if len(text) > PROBE_ABOVE and not self._probe(text):
            return KnownCodeMatch(Status.UNKNOWN, reason="no known code in the probed windows")
        try:
            fp = fingerprint(text)
        except Unfingerprintable as exc:
            return KnownCodeMatch(Status.UNKNOWN, reason=str(exc))
        if not truncated:
            file = self._file_with_code(fp.code_hash)
            if file is not None:
                return KnownCodeMatch(Status.UNMODIFIED, file, known_chars=len(text))
        return self._partial(text, fp, truncated)

    def _file_with_code(self, code_hash: int) -> LibraryFile | None:
        """The first database's file whose whole canonical form hashes to ``code_hash``."""
        for db in self.databases:
            file = db.file_with_code(code_hash)
            if file is not None:
                return file
        return None

    def _probe(self, text: str) -> bool:
        """Whether some windows of a long text hold a known chunk (cheap; only says "look closer").

        Most long scripts are nobody's library; fingerprinting a few windows instead of the whole
        text keeps their cost low. A window may start inside a string or comment and be misread:
        that can only hide known code, and a "no" here means a full scan, never a skip.
        """
        for i in range(PROBE_WINDOWS):
            offset = (len(text) - PROBE_CHARS) * i // (PROBE_WINDOWS - 1)
            start = text.find("\n", offset, offset + PROBE_CHARS // 2) + 1 or offset
            try:
                chunks = fingerprint(text[start:start + PROBE_CHARS]).chunk_hashes[1:-1]
            except Unfingerprintable:
                continue
            if not chunks:
                return True  # one long statement (a data table, a big string): no verdict here
            hashes = np.fromiter(chunks, dtype=np.uint64, count=len(chunks))
            if any((db.known_chunks(hashes) >= 0).any() for db in self.databases):
                return True
        return False

    def _partial(self, text: str, fp: Fingerprint, truncated: bool) -> KnownCodeMatch:
        hashes = np.fromiter(fp.chunk_hashes, dtype=np.uint64, count=len(fp.chunk_hashes))
        weights = np.asarray(fp.chunk_chars, dtype=np.float64)
        indexes = [db.known_chunks(hashes) for db in self.databases]
        known = np.logical_or.reduce([ix >= 0 for ix in indexes])
        known = _drop_short_runs(known, weights)
        known_chars = float(weights[known].sum())
        if known_chars < MIN_KNOWN_CHARS or known_chars < MIN_KNOWN_SHARE * float(weights.sum()):
            return KnownCodeMatch(Status.UNKNOWN, reason="little or no known code")
        if known.all() and not truncated:
            return KnownCodeMatch(Status.UNKNOWN, reason="known code in an arrangement of no known file")
        # Skipping known parts next to foreign code needs the parser's word that both lex alike.
        try:
            check = verify(text)
        except ParserUnavailable as exc:
            return KnownCodeMatch(Status.UNKNOWN, reason=str(exc))
        if not check.ok:
            return KnownCodeMatch(Status.UNKNOWN, reason=f"parser disagrees with the lexer: {check.reason}")
        starts = statement_offsets(text)
        if len(starts) != sum(fp.chunk_statements):
            return KnownCodeMatch(Status.UNKNOWN, reason="statement offsets do not line up")
        bounds = np.concatenate(([0], np.cumsum(fp.chunk_statements)))
        chunk_start = [starts[i] for i in bounds[:-1].tolist()]
        chunk_end = chunk_start[1:] + [len(text)]
        spans: list[tuple[int, int]] = []
        for i in np.flatnonzero(~known).tolist():
            if spans and spans[-1][1] == chunk_start[i]:
                spans[-1] = (spans[-1][0], chunk_end[i])
            else:
                spans.append((chunk_start[i], chunk_end[i]))
        spans = [(s, e) for s, e in spans if e > s]
        if truncated and (not spans or spans[-1][1] < len(text)):
            # The unseen rest is foreign as far as anyone knows: the script's end is scanned too.
            spans.append((chunk_start[-1], len(text)))
        best: tuple[float, LibraryFile | None] = (0.0, None)
        for db, ix in zip(self.databases, indexes, strict=False):
            file_index, weight = db.best_file(np.where(known, ix, -1), weights)
            if file_index >= 0 and weight > best[0]:
                best = (weight, db.files[file_index])
        foreign_chars = sum(e - s for s, e in spans)
        return KnownCodeMatch(
            Status.FOREIGN, best[1], tuple(spans), known_chars=len(text) - foreign_chars, foreign_chars=foreign_chars,
        )


def _drop_short_runs(known: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``known`` with runs of known chunks lighter than :data:`MIN_KNOWN_RUN` set to False."""
    out = known.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], known.astype(np.int8), [0]))))
    for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=False):
        if weights[start:end].sum() < MIN_KNOWN_RUN:
            out[start:end] = False
    return out


class _MatchCache:
    """Per-process LRU of matches, keyed by the databases and the script text itself.

    A gateway sees the same library files on page after page; a repeat then costs a lookup.
    Keys hold the text, not a hash of it (no collision can hand one script another's match);
    texts are bounded in characters. Emptied with the feature cache (cold benchmarks stay cold).
    """

    MIN_CHARS = 512
    MAX_CHARS = 8_000_000

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[tuple[int, ...], bool, str], KnownCodeMatch] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[tuple[int, ...], bool, str]) -> KnownCodeMatch | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[tuple[int, ...], bool, str], match: KnownCodeMatch) -> None:
        text = key[2]
        if not self.MIN_CHARS <= len(text) <= self.MAX_CHARS // 4:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = match
            self._chars += len(text)
            while self._chars > self.MAX_CHARS and self._entries:
                old, _ = self._entries.popitem(last=False)
                self._chars -= len(old[2])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0


_CACHE = _MatchCache()


def cached_match(known: KnownCode, text: str, *, truncated: bool = False) -> KnownCodeMatch:
    """:meth:`KnownCode.match` through the per-process cache."""
    key = (tuple(db.serial for db in known.databases), truncated, text)
    found = _CACHE.get(key)
    if found is None:
        found = known.match(text, truncated=truncated)
        _CACHE.put(key, found)
    return found


def _register_cache() -> None:
    from ..features.javascript import on_clear_cache

    on_clear_cache(_CACHE.clear)


_register_cache()


@lru_cache(maxsize=16)
def _load_cached(path: str) -> KnownCodeDatabase:
    """Each database file is read once per process (worker processes share nothing)."""
    return KnownCodeDatabase.load(path)
