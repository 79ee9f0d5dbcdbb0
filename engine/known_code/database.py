"""The known-code database: hashes of library code, names and versions for display, no code.

A database is built from library files (:func:`build_database`) and saved in one binary file
(:meth:`KnownCodeDatabase.save`) that the package ships (``engine/data/known_code.bin``, built
from the benign libraries of the labelled corpus by ``malwaresnipper known-code build``) and that
users can make from their own files. The file holds:

* a JSON header: format and fingerprint versions, the libraries (name, version, source), the
  files (library, path, banner name, size) and what the build left out and why;
* per file, the 64-bit hash of its whole canonical form (the "unmodified" test);
* the sorted unique 64-bit chunk hashes, and for each chunk the files that hold it;
* the sorted 64-bit hashes of the exact texts of its files (format 2), each with the file the
  matcher names for that text: a script whose bytes are a library file's bytes (the usual case:
  the same CDN file on every site) is "unmodified" after one hash of its text, without the
  canonical form. Only texts that the full match finds unmodified at build time enter this table,
  so the shortcut gives the full match's answer exactly.

Only files whose lexing a real parser confirms enter it (:mod:`.verify`). Building is
deterministic: the same inputs give the same bytes (files are sorted; no time stamps).
"""

from __future__ import annotations

import itertools
import json
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MalwareSnipperError
from .canonical import FINGERPRINT_VERSION, Unfingerprintable, fingerprint, hash64
from .verify import Verification, verify

MAGIC = b"MSKNOWNCODE\x00"
#: 2 added the exact-text table; a format-1 file still loads (without the shortcut).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
#: Scripts shorter than this (characters) are not looked up, and files shorter than this, or
#: with less canonical code than :data:`MIN_FILE_CHARS`, do not enter a database: too little code
#: to name a library, and cheap to scan anyway.
MIN_SCRIPT_CHARS = 200
MIN_FILE_CHARS = 128
_SERIALS = itertools.count(1)
_BANNER = re.compile(
    r"^\s*(?:/\*!?|//!?)\s*\**\s*(?:@license\s+)?([A-Za-z][\w.\- ]{0,40}?)\s+"
    r"(?:JavaScript Library\s+)?v?(\d+\.\d+(?:\.\d+)?(?:-[\w.]+)?)\b"
)


class KnownCodeError(MalwareSnipperError):
    """A known-code database cannot be read (missing, damaged or of another version)."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One library file to learn, with the names shown when a script matches it."""

    text: str
    library: str
    version: str
    path: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class LibraryFile:
    """A file of the database, as a match reports it."""

    library: str
    version: str
    path: str
    source: str
    #: Name and version from the file's own licence banner ("jQuery v3.7.1"), if it has one.
    banner: str = ""

    @property
    def display(self) -> str:
        """"jQuery v3.7.1" from the banner, else "jquery 3.7.1"."""
        return self.banner or " ".join(p for p in (self.library, self.version) if p)


def banner_name(text: str) -> str:
    """"jQuery v3.7.1" from a banner comment at the very top of ``text``, or ""."""
    match = _BANNER.match(text[:400])
    if not match or match.group(1).lower() in ("copyright", "license", "version", "the"):
        return ""
    return f"{match.group(1).strip()} v{match.group(2)}"


@dataclass
class KnownCodeDatabase:
    """Hashes of known library code; see the module docstring for the file layout."""

    files: list[LibraryFile]
    #: 64-bit hash of each file's whole canonical form, parallel to :attr:`files`.
    code_hashes: np.ndarray
    #: Sorted unique chunk hashes.
    chunk_hashes: np.ndarray
    #: Files holding chunk ``i``: ``posting_files[posting_ptr[i]:posting_ptr[i + 1]]``.
    posting_ptr: np.ndarray
    posting_files: np.ndarray
    #: Canonical characters of each file (to say how much of it a script covers).
    file_chars: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    fingerprint_version: str = FINGERPRINT_VERSION
    #: Sorted 64-bit hashes (:func:`.canonical.hash64`) of exact file texts the matcher finds
    #: unmodified, and for each the index of the file it names (see the module docstring).
    text_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    text_files: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))

    def __post_init__(self) -> None:
        #: Names this database in caches for the life of the process (ids can be reused).
        self.serial = next(_SERIALS)
        self._by_code: dict[int, int] = {}
        for index, code in enumerate(self.code_hashes.tolist()):
            self._by_code.setdefault(int(code), index)
        self._by_text: dict[int, int] = dict(zip(self.text_hashes.tolist(), self.text_files.tolist(), strict=True))

    # -- queries ------------------------------------------------------------------------------

    def file_with_code(self, code_hash: int) -> LibraryFile | None:
        """The file whose whole code is ``code_hash`` (the first one, if several share it)."""
        index = self._by_code.get(code_hash)
        return None if index is None else self.files[index]

    def code_for_text(self, text_hash: int) -> int | None:
        """The canonical-form hash of the file whose exact text hashes to ``text_hash``, or None."""
        index = self._by_text.get(text_hash)
        return None if index is None else int(self.code_hashes[index])

    def known_chunks(self, hashes: np.ndarray) -> np.ndarray:
        """For each hash, its index in :attr:`chunk_hashes`, or -1."""
        if not len(self.chunk_hashes):
            return np.full(len(hashes), -1, dtype=np.int64)
        pos = np.searchsorted(self.chunk_hashes, hashes)
        pos = np.minimum(pos, len(self.chunk_hashes) - 1)
        return np.where(self.chunk_hashes[pos] == hashes, pos, -1)

    def best_file(self, chunk_indexes: np.ndarray, weights: np.ndarray) -> tuple[int, float]:
        """The file holding the most weight of the given chunks (index -1 = unknown, ignored)."""
        known = chunk_indexes >= 0
        chunk_indexes, weights = chunk_indexes[known], weights[known]
        if not len(chunk_indexes):
            return -1, 0.0
        starts = self.posting_ptr[chunk_indexes].astype(np.int64)
        counts = self.posting_ptr[chunk_indexes + 1].astype(np.int64) - starts
        # Every (chunk, file) posting of these chunks, gathered without a Python loop.
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
        files = self.posting_files[np.arange(int(counts.sum())) + offsets]
        totals = np.bincount(files, weights=np.repeat(weights, counts), minlength=len(self.files))
        best = int(np.argmax(totals))
        return best, float(totals[best])

    # -- file format --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        header = {
            "format": "malwaresnipper-known-code",
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint_version,
            "files": [[f.library, f.version, f.path, f.source, f.banner] for f in self.files],
            "file_chars": self.file_chars.astype(int).tolist(),
            "counts": {"files": len(self.files), "chunks": len(self.chunk_hashes),
                       "postings": len(self.posting_files), "texts": len(self.text_hashes)},
            "excluded": dict(sorted(self.excluded.items())),
            "inputs": self.inputs,
        }
        blob = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        blob += b" " * (-len(blob) % 8)
        return b"".join((
            MAGIC, struct.pack("<I", len(blob)), blob,
            self.code_hashes.astype("<u8").tobytes(),
            self.chunk_hashes.astype("<u8").tobytes(),
            self.posting_ptr.astype("<u4").tobytes(),
            self.posting_files.astype("<u4").tobytes(),
            self.text_hashes.astype("<u8").tobytes(),
            self.text_files.astype("<u4").tobytes(),
        ))

    def save(self, path: str | Path) -> int:
        """Write the database atomically; returns its size in bytes."""
        path = Path(path)
        data = self.to_bytes()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return len(data)

    @classmethod
    def load(cls, path: str | Path) -> KnownCodeDatabase:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KnownCodeError(f"{path}: cannot read the known-code database: {exc}") from None
        try:
            return cls.from_bytes(data)
        except KnownCodeError as exc:
            raise KnownCodeError(f"{path}: {exc}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> KnownCodeDatabase:
        if not data.startswith(MAGIC):
            raise KnownCodeError("not a known-code database (build one with 'malwaresnipper known-code build')")
        try:
            (size,) = struct.unpack_from("<I", data, len(MAGIC))
            start = len(MAGIC) + 4
            header = json.loads(data[start:start + size])
            if header.get("format_version") not in READABLE_FORMATS:
                raise KnownCodeError(f"format version {header.get('format_version')}, expected {FORMAT_VERSION}")
            if header.get("fingerprint") != FINGERPRINT_VERSION:
                raise KnownCodeError(
                    f"built with fingerprint {header.get('fingerprint')!r}, this version computes "
                    f"{FINGERPRINT_VERSION!r}: rebuild it with 'malwaresnipper known-code build'"
                )
            counts = header["counts"]
            offset = start + size
            arrays = []
            texts = int(counts.get("texts", 0)) if header["format_version"] >= 2 else 0
            for dtype, count in (("<u8", counts["files"]), ("<u8", counts["chunks"]),
                                 ("<u4", counts["chunks"] + 1), ("<u4", counts["postings"]),
                                 ("<u8", texts), ("<u4", texts)):
                width = np.dtype(dtype).itemsize
                arrays.append(np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(dtype[1:]))
                offset += width * count
            if offset != len(data):
                raise KnownCodeError(f"{len(data) - offset} unexpected bytes at the end")
            files = [LibraryFile(*entry) for entry in header["files"]]
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise KnownCodeError(f"damaged known-code database: {exc}") from None
        code_hashes, chunk_hashes, posting_ptr, posting_files, text_hashes, text_files = arrays
        if (len(files) != len(code_hashes) or int(posting_ptr[-1]) != len(posting_files)
                or (len(text_files) and int(text_files.max()) >= len(files))):
            raise KnownCodeError("damaged known-code database: inconsistent tables")
        return cls(
            files=files, code_hashes=code_hashes, chunk_hashes=chunk_hashes, posting_ptr=posting_ptr,
            posting_files=posting_files, file_chars=np.asarray(header["file_chars"], dtype=np.int64),
            excluded=dict(header.get("excluded", {})), inputs=list(header.get("inputs", [])),
            fingerprint_version=header["fingerprint"], text_hashes=text_hashes, text_files=text_files,
        )


def build_database(
    sources: Iterable[SourceFile],
    *,
    inputs: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    check: Callable[[str], Verification] = verify,
) -> KnownCodeDatabase:
    """Fingerprint, verify and index ``sources``. Deterministic: sorted by (library, version, path).

    ``check`` is the parser check (:func:`.verify.verify`); evaluations pass a memoised one.
    """
    entries: list[tuple[LibraryFile, int, list[int], int]] = []
    kept: list[tuple[str, int]] = []  # (text, code hash) of the files that entered, for the text table
    excluded: dict[str, int] = {}
    ordered = sorted(sources, key=lambda s: (s.library, s.version, s.path, s.source, s.text))
    seen: set[tuple[str, str, str, int]] = set()
    for count, source in enumerate(ordered, 1):
        if progress is not None:
            progress(count)
        try:
            fp = fingerprint(source.text)
        except Unfingerprintable as exc:
            excluded[str(exc)] = excluded.get(str(exc), 0) + 1
            continue
        result = check(source.text)
        if not result.ok:
            reason = "parser disagrees: " + result.reason.split(" at ")[0]
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        if len(source.text) < MIN_SCRIPT_CHARS or len(fp.canonical) < MIN_FILE_CHARS:
            excluded["too little code"] = excluded.get("too little code", 0) + 1
            continue
        kept.append((source.text, fp.code_hash))
        key = (source.library, source.version, source.path, fp.code_hash)
        if key in seen:
            continue
        seen.add(key)
        file = LibraryFile(source.library, source.version, source.path, source.source, banner_name(source.text))
        entries.append((file, fp.code_hash, list(fp.chunk_hashes), len(fp.canonical)))

    # Files with a banner first, so that a hash shared by several files names the best one.
    entries.sort(key=lambda e: (not e[0].banner, e[0].library, e[0].version, e[0].path, e[1]))
    postings: dict[int, list[int]] = {}
    for index, (_, _, chunks, _) in enumerate(entries):
        for chunk in dict.fromkeys(chunks):
            postings.setdefault(chunk, []).append(index)
    chunk_hashes = np.array(sorted(postings), dtype=np.uint64)
    lengths = [len(postings[int(h)]) for h in chunk_hashes.tolist()]
    posting_ptr = np.zeros(len(chunk_hashes) + 1, dtype=np.uint32)
    np.cumsum(lengths, out=posting_ptr[1:])
    posting_files = np.array(
        [i for h in chunk_hashes.tolist() for i in postings[int(h)]], dtype=np.uint32
    )
    db = KnownCodeDatabase(
        files=[e[0] for e in entries],
        code_hashes=np.array([e[1] for e in entries], dtype=np.uint64),
        chunk_hashes=chunk_hashes,
        posting_ptr=posting_ptr,
        posting_files=posting_files,
        file_chars=np.array([e[3] for e in entries], dtype=np.int64),
        excluded=excluded,
        inputs=list(inputs or []),
    )
    return _with_text_table(db, kept)


def _with_text_table(db: KnownCodeDatabase, texts: list[tuple[str, int]]) -> KnownCodeDatabase:
    """``db`` with the exact-text table of the ``texts`` that the full match finds unmodified.

    Each text is matched against ``db`` alone, the way a scan would (probe, canonical form,
    whole-code hash); the table keeps the file that match names. With more databases loaded, a
    scan's probe can only find more, and the matcher still asks every database for the code hash
    in order, so the shortcut always gives the full match's answer.
    """
    from .matcher import KnownCode, Status

    known = KnownCode([db])
    table: dict[int, int] = {}
    for text, code_hash in texts:
        text_hash = hash64(text)
        if text_hash in table or len(text) < MIN_SCRIPT_CHARS:
            continue
        if known.match(text).status is Status.UNMODIFIED:
            table[text_hash] = db._by_code[code_hash]  # the file file_with_code names
    ordered = sorted(table)
    db.text_hashes = np.array(ordered, dtype=np.uint64)
    db.text_files = np.array([table[h] for h in ordered], dtype=np.uint32)
    db._by_text = dict(table)
    return db


# -- inputs --------------------------------------------------------------------------------------

def corpus_sources(paths: Iterable[str | Path]) -> Iterable[SourceFile]:
    """Benign ``library`` rows of labelled JS corpora (JSON Lines, gzipped or not).

    Site code (``site_code``) is left out on purpose: it is one site's own code, not a library
    that other sites load, and knowing it would only teach the database one site.
    """
    import gzip

    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row.get("label") != "benign" or row.get("category") != "library" or row.get("format", "js") != "js":
                    continue
                library, version = _name_and_version(row.get("source", ""), row.get("source_commit"))
                yield SourceFile(row["content"], library, version, row.get("source_path", ""), row.get("source", ""))


def _name_and_version(source: str, commit: str | None) -> tuple[str, str]:
    """``npm:@scope/pkg@1.2.3`` -> (``@scope/pkg``, ``1.2.3``); ``github:o/r`` -> (``o/r``, commit)."""
    kind, _, rest = source.partition(":")
    if kind == "npm" and "@" in rest[1:]:
        name, _, version = rest.rpartition("@")
        return name, version
    return (rest or source), (commit or "")[:12]


def file_sources(paths: Iterable[str | Path], *, library: str, version: str) -> Iterable[SourceFile]:
    """JavaScript files (``.js``, ``.mjs``, ``.cjs``; folders are walked) of one library."""
    for path in paths:
        path = Path(path)
        candidates = sorted(p for p in path.rglob("*") if p.suffix in (".js", ".mjs", ".cjs")) if path.is_dir() else [path]
        for file in candidates:
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise KnownCodeError(f"{file}: cannot read: {exc}") from None
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            rel = file.relative_to(path).as_posix() if path.is_dir() else file.name
            yield SourceFile(text.removeprefix("\ufeff"), library, version, rel, f"file:{file.name}")
