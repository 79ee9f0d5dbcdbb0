"""Threat-intelligence feed formats: one pure parser per format, bytes in, list entries out.

Each parser reads the whole body of one download (or file) and returns a :class:`FeedParse`:
the entries (keyed as every list reader keys them, through
:func:`~malwaresnipper.engine.lists.normalise_entry`), and the lines it could not read. Each
entry's :class:`~malwaresnipper.engine.lists.ListHit` names the feed (``"feed urlhaus"``), so an
indicator built from it says which feed listed the address.

A body that is not the format at all (an HTML error page, JSON where CSV was expected, no
entries) raises :class:`FeedFormatError`, and so does one with more unreadable lines than the
feed's error budget: the caller then keeps its last good copy. Nothing here does I/O.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..engine.lists import (
    ALLOWLISTED,
    DEFAULT_CLASSIFICATION,
    ListEntries,
    ListHit,
    normalise_entry,
    normalize_domain,
)

#: ``[[feeds]] format`` values.
FEED_FORMATS = ("urlhaus_csv", "openphish", "phishtank_json", "phishtank_csv", "threatfox_json",
                "hosts", "domains", "urls", "sha256")
FEED_KINDS = ("block", "allow")
#: The first few unreadable lines are quoted in the error or status; the rest are only counted.
_QUOTED_ERRORS = 5
_HOSTS_SKIP = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
                         "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
                         "ip6-allhosts", "0.0.0.0"})
_URLHAUS_THREATS = {"malware_download": "malware", "phishing": "phishing"}
#: ThreatFox IOC types an address or script check can match, and the entry kind each becomes.
_THREATFOX_TYPES = {"url": "url", "domain": "domain", "ip:port": "ip", "sha256_hash": "sha256"}


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


def check_source(source: str, *, allow_http_loopback: bool = False) -> str:
    """``"url"`` or ``"file"``: what a feed's ``source`` is. ValueError when it is neither an
    ``https://`` URL nor a file path (``http://`` only to a loopback address, when allowed: a
    feed fetched in clear text could be rewritten on the way)."""
    if not source.strip():
        raise ValueError("give an https:// URL or a file path")
    if "://" not in source:
        return "file"
    try:
        parts = urlsplit(source)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not host:
        raise ValueError(f"{source[:100]!r} names no host")
    if parts.scheme == "https":
        return "url"
    if parts.scheme == "http" and allow_http_loopback and host in _LOOPBACK_HOSTS:
        return "url"
    if parts.scheme == "http":
        raise ValueError(f"{source[:100]!r} is plain http: use https:// (http:// is allowed only to "
                         "127.0.0.1 or [::1] with allow_http_loopback = true)")
    raise ValueError(f"{source[:100]!r}: only https:// URLs and file paths are feed sources")


class FeedFormatError(ValueError):
    """The body is not a usable copy of the feed (the message says why)."""


@dataclass
class FeedParse:
    """What one body of a feed holds."""

    entries: ListEntries
    #: rows read as entries (before duplicates merge)
    rows: int = 0
    #: rows skipped on purpose (a ThreatFox md5 IOC, an offline URLhaus URL is still kept)
    skipped: int = 0
    #: unreadable rows: how many, and the first few as ``"line N: reason"``
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


class _Collector:
    """Entries of one parse, each hit naming the feed; counts the rows it could not read."""

    def __init__(self, name: str, kind: str, classification: str, max_errors: int) -> None:
        self.source = f"feed {name}"
        self.name = name
        self.kind = kind
        self.default = ALLOWLISTED if kind == "allow" else classification
        self.max_errors = max_errors
        self.buckets: dict[str, dict[str, ListHit]] = {"domain": {}, "url": {}, "sha256": {}}
        self.hits: dict[str, ListHit] = {}
        self.result = FeedParse(ListEntries())

    def add(self, text: str, line: int | None, *, classification: str | None = None,
            expect: str | None = None) -> None:
        """Add one entry (``expect``: the only kind this format may hold)."""
        try:
            normal = normalise_entry(text)
        except ValueError as exc:
            self.error(line, str(exc))
            return
        if expect is not None and normal.kind != expect:
            self.error(line, f"{text.strip()[:100]!r} is a {normal.kind}, not a {expect}")
            return
        cls = ALLOWLISTED if self.kind == "allow" else (classification or self.default)
        # One hit per classification, not one per line: the snapshot holding these entries is
        # pickled to every scan worker, and a million distinct hits take seconds to pickle.
        hit = self.hits.get(cls)
        if hit is None:
            hit = self.hits[cls] = ListHit(cls, self.source)
        self.buckets[normal.kind].setdefault(normal.key, hit)
        self.result.rows += 1

    def error(self, line: int | None, reason: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < _QUOTED_ERRORS:
            self.result.error_samples.append(f"line {line}: {reason}" if line is not None else reason)
        if self.result.errors > self.max_errors:
            raise FeedFormatError(
                f"feed {self.name}: more than {self.max_errors} unreadable rows (the error budget); "
                f"first: {'; '.join(self.result.error_samples)}")

    def finish(self, what: str) -> FeedParse:
        if not self.result.rows:
            detail = f" ({'; '.join(self.result.error_samples)})" if self.result.error_samples else ""
            raise FeedFormatError(f"feed {self.name}: no entries found in this {what}{detail}")
        self.result.entries = ListEntries(self.buckets["domain"], self.buckets["url"], self.buckets["sha256"])
        return self.result


def _text(data: bytes, name: str, what: str) -> str:
    """The body as text; an HTML page (a portal, an error page) is refused by name."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FeedFormatError(f"feed {name}: line {line}: not UTF-8 text") from None
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in head:
        raise FeedFormatError(f"feed {name}: the body is an HTML page, not {what}")
    return text


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-empty, non-comment lines with their numbers."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "!")):
            yield lineno, stripped


# -- one parser per format -----------------------------------------------------------------------


def parse_plain(data: bytes, *, name: str, kind: str, expect: str, max_errors: int,
                classification: str = DEFAULT_CLASSIFICATION) -> FeedParse:
    """One ``expect`` entry (domain, url or sha256) per line; ``#`` comments; OpenPhish is ``url``."""
    what = {"domain": "a domain list", "url": "a URL list", "sha256": "a sha256 list"}[expect]
    out = _Collector(name, kind, classification, max_errors)
    for lineno, line in _lines(_text(data, name, what)):
        token = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if len(token.split()) != 1:
            out.error(lineno, f"expected one entry per line, got {line[:100]!r}")
            continue
        out.add(token, lineno, expect=expect)
    return out.finish(what)


def parse_hosts(data: bytes, *, name: str, kind: str, max_errors: int,
                classification: str = DEFAULT_CLASSIFICATION) -> FeedParse:
    """A hosts file (``0.0.0.0 evil.com other.com``): the names, not the address."""
    out = _Collector(name, kind, classification, max_errors)
    for lineno, line in _lines(_text(data, name, "a hosts file")):
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2:
            out.error(lineno, f"expected 'address name...', got {line[:100]!r}")
            continue
        for token in tokens[1:]:
            if token.lower() in _HOSTS_SKIP:
                continue
            if normalize_domain(token) is None:
                out.error(lineno, f"{token[:100]!r} is not a host name")
                continue
            out.add(token, lineno, expect="domain")
    return out.finish("hosts file")


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """CSV rows (``#`` lines skipped) with their line numbers; rows of these feeds are one line each."""
    for lineno, line in _lines(text):
        try:
            yield lineno, next(csv.reader([line], skipinitialspace=True))
        except (csv.Error, StopIteration) as exc:
            yield lineno, [f"\x00{exc}"]


def parse_urlhaus_csv(data: bytes, *, name: str, kind: str, max_errors: int) -> FeedParse:
    """URLhaus's CSV dump: ``id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter``
    (the header is a comment); the ``threat`` column gives the classification."""
    out = _Collector(name, kind, "malware", max_errors)
    text = _text(data, name, "URLhaus CSV")
    url_col, threat_col = 2, 5
    for line in text.splitlines()[:20]:
        body = line.lstrip("#").strip()
        if body.startswith("id,") and "url" in body:
            names = [n.strip() for n in next(csv.reader([body]))]
            url_col = names.index("url")
            threat_col = names.index("threat") if "threat" in names else -1
            break
    for lineno, row in _csv_rows(text):
        if row and row[0].startswith("\x00"):
            out.error(lineno, f"bad CSV row: {row[0][1:]}")
        elif url_col >= len(row) or "://" not in row[url_col]:
            out.error(lineno, f"no URL in column {url_col + 1} of {','.join(row)[:100]!r}")
        else:
            threat = row[threat_col].strip().lower() if 0 <= threat_col < len(row) else ""
            out.add(row[url_col], lineno, classification=_URLHAUS_THREATS.get(threat, "malware"), expect="url")
    return out.finish("URLhaus CSV")


def parse_phishtank_csv(data: bytes, *, name: str, kind: str, max_errors: int) -> FeedParse:
    """PhishTank's ``online-valid.csv``: a header row naming a ``url`` column, then one phish per row."""
    out = _Collector(name, kind, "phishing", max_errors)
    rows = _csv_rows(_text(data, name, "PhishTank CSV"))
    first = next(rows, None)
    header = [n.strip().lower() for n in first[1]] if first else []
    if "url" not in header:
        raise FeedFormatError(f"feed {name}: the first row is not a PhishTank CSV header with a 'url' column")
    url_col = header.index("url")
    for lineno, row in rows:
        if url_col >= len(row) or row[0].startswith("\x00"):
            out.error(lineno, f"bad PhishTank row {','.join(row)[:100]!r}")
        else:
            out.add(row[url_col], lineno, expect="url")
    return out.finish("PhishTank CSV")


def _json(data: bytes, name: str, what: str) -> Any:
    text = _text(data, name, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedFormatError(f"feed {name}: not {what}: {exc.msg} at line {exc.lineno} "
                              f"(a truncated download?)") from None


def parse_phishtank_json(data: bytes, *, name: str, kind: str, max_errors: int) -> FeedParse:
    """PhishTank's ``online-valid.json``: a list of objects with a ``url``."""
    out = _Collector(name, kind, "phishing", max_errors)
    doc = _json(data, name, "PhishTank JSON")
    if not isinstance(doc, list):
        raise FeedFormatError(f"feed {name}: PhishTank JSON is a list of phishes, got {type(doc).__name__}")
    for index, item in enumerate(doc):
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str):
            out.error(None, f"item #{index + 1} has no 'url' string")
        else:
            out.add(url, None, expect="url")
    return out.finish("PhishTank JSON")


def _threatfox_items(doc: Any) -> Iterable[Any]:
    """ThreatFox's export (``{"<id>": [ {...} ]}``) or API answer (``{"data": [ {...} ]}``)."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return doc["data"]
    if isinstance(doc, dict):
        return [item for value in doc.values() if isinstance(value, list) for item in value]
    if isinstance(doc, list):
        return doc
    return []


def parse_threatfox_json(data: bytes, *, name: str, kind: str, max_errors: int) -> FeedParse:
    """ThreatFox IOCs: ``url``, ``domain``, ``ip:port`` (the address) and ``sha256_hash`` entries;
    the other IOC types (md5, sha1) cannot name what the gateway sees and are skipped, counted."""
    out = _Collector(name, kind, "malware", max_errors)
    doc = _json(data, name, "ThreatFox JSON")
    if not isinstance(doc, (dict, list)):
        raise FeedFormatError(f"feed {name}: ThreatFox JSON is an object of IOCs, got {type(doc).__name__}")
    for index, item in enumerate(_threatfox_items(doc)):
        if not isinstance(item, dict):
            out.error(None, f"IOC #{index + 1} is not an object")
            continue
        value = item.get("ioc_value", item.get("ioc"))
        ioc_type = item.get("ioc_type")
        if not isinstance(value, str) or not isinstance(ioc_type, str):
            out.error(None, f"IOC #{index + 1} has no ioc_value/ioc_type strings")
            continue
        kind_of = _THREATFOX_TYPES.get(ioc_type)
        if kind_of is None:
            out.result.skipped += 1
            continue
        if kind_of == "ip":
            value = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
            out.add(value, None, expect="domain")
        else:
            out.add(value, None, expect=kind_of)
    return out.finish("ThreatFox JSON")


Parser = Callable[..., FeedParse]


def parse_feed(fmt: str, data: bytes, *, name: str, kind: str, max_errors: int) -> FeedParse:
    """Parse ``data`` as feed format ``fmt`` (one of :data:`FEED_FORMATS`)."""
    if fmt == "openphish":
        return parse_plain(data, name=name, kind=kind, expect="url", max_errors=max_errors, classification="phishing")
    if fmt in ("domains", "urls", "sha256"):
        expect = {"domains": "domain", "urls": "url", "sha256": "sha256"}[fmt]
        return parse_plain(data, name=name, kind=kind, expect=expect, max_errors=max_errors)
    parsers: dict[str, Parser] = {
        "urlhaus_csv": parse_urlhaus_csv, "phishtank_csv": parse_phishtank_csv,
        "phishtank_json": parse_phishtank_json, "threatfox_json": parse_threatfox_json, "hosts": parse_hosts,
    }
    if fmt not in parsers:
        raise ValueError(f"unknown feed format {fmt!r}")
    return parsers[fmt](data, name=name, kind=kind, max_errors=max_errors)


