"""Allowlists, blocklists and protected brands: reading the list formats people already have.

One loader reads every supported format, one entry kind per line, and detects what each entry is:

* plain lists: one domain, URL or sha256 per line; ``#`` starts a comment;
* hosts files: ``0.0.0.0 evil.com`` / ``127.0.0.1 evil.com other.com`` (the address is ignored);
* adblock-style domain rules: ``||evil.com^``;
* CSV such as URLhaus's dump (``# id,dateadded,url,url_status,...`` then quoted rows) or a
  ``rank,domain`` top list: the ``url``/``domain``/``host`` column named by a header line (which
  may be commented out, as URLhaus does), else the first field that looks like a URL, else the
  first field that is a domain. A ``threat`` column gives the entry's classification.

A comment ``# classification: phishing`` sets the classification of the entries after it (a
blocklist entry is "malware" unless the list says otherwise). A line that is none of these is a
:class:`ConfigError` naming the file and the line: a list that half-loads would silently stop
protecting.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from . import psl
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import EngineConfig

DEFAULT_CLASSIFICATION = "malware"
ALLOWLISTED = "allowlisted"
#: Where API-managed entries come from, as a :class:`ListHit` says.
API_ALLOWLIST = "API allowlist"
API_BLOCKLIST = "API blocklist"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_HOSTS_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0", "255.255.255.255"})
_HOSTS_SKIP = frozenset(
    {"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
     "ip6-loopback", "0.0.0.0"}
)
_CLASSIFICATION_DIRECTIVE = re.compile(r"^#\s*classification\s*[:=]\s*([a-z_]+)\s*$", re.I)
_THREATS = {"malware_download": "malware", "malware": "malware", "phishing": "phishing",
            "cryptominer": "cryptominer", "skimmer": "skimmer", "exploit_kit": "exploit_kit"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class ListHit:
    """Why an entry is on a list: its classification and where it came from.

    ``source`` (the file name, or "API blocklist") is one shared string per file and ``line`` a
    number, so a list of a million entries does not carry a million "file:line" strings.
    """

    classification: str
    source: str
    line: int | None = None

    @property
    def where(self) -> str:
        """``"block.txt:12"`` for a file entry, the source alone otherwise."""
        return f"{self.source}:{self.line}" if self.line is not None else self.source


@dataclass(frozen=True)
class ListEntries:
    """The entries of one or more lists, by kind. Keys are normalised (see the ``normalize_*``)."""

    domains: Mapping[str, ListHit] = field(default_factory=dict)
    urls: Mapping[str, ListHit] = field(default_factory=dict)
    sha256: Mapping[str, ListHit] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.domains) + len(self.urls) + len(self.sha256)

    def match_domain(self, host: str) -> tuple[str, ListHit] | None:
        """The entry matching ``host`` or one of its parent domains (``evil.com`` matches
        ``a.b.evil.com``); an IP-literal host matches only itself."""
        if not self.domains or not host:
            return None
        host = host.lower().rstrip(".")
        if _IPV4.match(host) or ":" in host:
            hit = self.domains.get(host.strip("[]"))
            return (host, hit) if hit else None
        name = host
        while True:
            hit = self.domains.get(name)
            if hit is not None:
                return name, hit
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def match_url(self, url: str) -> tuple[str, ListHit] | None:
        if not self.urls:
            return None
        key = url_key(url)
        hit = self.urls.get(key)
        return (key, hit) if hit else None

    def match_sha256(self, digest: str | None) -> ListHit | None:
        if not self.sha256 or not digest:
            return None
        return self.sha256.get(digest.lower())

    def match_address(self, url: str, host: str) -> AddressHit | None:
        """The entry naming ``url``: a URL entry, else a domain entry for ``host`` or one of its
        parent domains. How both the engine and the proxy's request-time check read a list."""
        hit = self.match_url(url)
        if hit is not None:
            return AddressHit("url", *hit)
        hit = self.match_domain(host)
        return AddressHit("domain", *hit) if hit is not None else None


class AddressHit(NamedTuple):
    """A list entry that names an address: its kind (``"url"`` or ``"domain"``), key and hit."""

    kind: str
    key: str
    hit: ListHit


@dataclass(frozen=True)
class ListSnapshot:
    """The API-managed allow and block entries, and the version they were published under.

    One value for every reader: the list service publishes it, the proxy's request-time checks
    read it (with the config files' entries, which every reader loads with :func:`load_list_file`),
    the scan workers' reputation layers receive it, and every cached verdict carries the version it
    was computed under, so that none outlives a list change. Versions only grow.
    """

    version: int = 0
    allow: ListEntries = field(default_factory=ListEntries)
    block: ListEntries = field(default_factory=ListEntries)

    @classmethod
    def from_strings(cls, allow: Iterable[str], block: Iterable[str], *, version: int = 0) -> ListSnapshot:
        """A snapshot of API entries (each a domain, URL or sha256); ValueError names the bad one."""
        return cls(version, entries_from_strings(allow, classification=ALLOWLISTED, source=API_ALLOWLIST),
                   entries_from_strings(block, source=API_BLOCKLIST))


def first_address_hit(lists: Iterable[ListEntries], url: str, host: str) -> AddressHit | None:
    """The first of ``lists`` with an entry naming ``url`` or its host (see :meth:`ListEntries.match_address`)."""
    for entries in lists:
        if len(entries):
            hit = entries.match_address(url, host)
            if hit is not None:
                return hit
    return None


def merge(parts: Iterable[ListEntries]) -> ListEntries:
    """One :class:`ListEntries` holding every part's entries (the first listing of an entry wins)."""
    domains: dict[str, ListHit] = {}
    urls: dict[str, ListHit] = {}
    hashes: dict[str, ListHit] = {}
    for part in parts:
        for src, dst in ((part.domains, domains), (part.urls, urls), (part.sha256, hashes)):
            for key, hit in src.items():
                dst.setdefault(key, hit)
    return ListEntries(domains, urls, hashes)


# -- normalisation -------------------------------------------------------------------------------


def normalize_domain(text: str) -> str | None:
    """``"*.Evil.COM."`` -> ``"evil.com"``; internationalised names become punycode; an IPv4
    address stays as is, an IPv6 address is written compressed without brackets (as a URL's
    host is read). None when ``text`` is not a host name."""
    name = text.strip().lower()
    if name.startswith("*."):
        name = name[2:]
    name = name.strip(".")
    if not name or len(name) > 253:
        return None
    if _IPV4.match(name):
        return name if all(int(p) < 256 for p in name.split(".")) else None
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name.strip("[]")).compressed
        except ValueError:
            return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit():
        return name
    return None


def normalize_url(url: str) -> str:
    """The URL in the corpus's ``url_norm`` form: scheme and host lower-cased, default port
    dropped, empty path made ``/``, fragment dropped, ``&amp;`` made ``&``, ``http://`` added
    when there is no scheme. Never raises (an unparsable URL comes back stripped)."""
    url = url.strip().replace("&amp;", "&")
    if "://" not in url.split("?", 1)[0] and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url):
        url = "http://" + url
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return url.split("#", 1)[0]
    if scheme not in ("http", "https"):
        return url.split("#", 1)[0]
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def url_key(url: str) -> str:
    """How URL entries are matched: the normalised URL without its http/https scheme, because a
    feed's ``http://`` URL is the same resource the proxy sees over https."""
    return _key_of_normalized(normalize_url(url))


def _key_of_normalized(norm: str) -> str:
    for prefix in ("http://", "https://"):
        if norm.startswith(prefix):
            return "//" + norm[len(prefix) :]
    return norm


class NormalEntry(NamedTuple):
    """A list entry in its one normal form."""

    #: ``"domain"``, ``"url"`` or ``"sha256"``
    kind: str
    #: how it is written back (stored, listed): lower-case punycode domain, normalised URL, lower-case hex
    text: str
    #: how it is matched (:class:`ListEntries` keys): a URL without its http/https scheme
    key: str


def normalise_entry(text: str) -> NormalEntry:
    """The one normalisation of a list entry, whoever reads it: list files, the API, the list
    service (the proxy's request-time checks) and the engine. The kind is detected: a 64-hex
    sha256, a URL (anything with a ``/``), else a domain (``||evil.com^`` adblock rules too).

    Raises :class:`ValueError` with a message a user can act on when it is none of those.
    """
    entry = text.strip()
    if entry.startswith("||"):
        entry = entry[2:].rstrip("^")
    if not entry:
        raise ValueError("empty entry")
    if _SHA256.match(entry):
        digest = entry.lower()
        return NormalEntry("sha256", digest, digest)
    if "://" in entry or "/" in entry:
        norm = normalize_url(entry)
        try:
            host = urlsplit(norm).hostname
        except ValueError:
            host = None
        if not host:
            raise ValueError(f"not a valid URL: {entry[:100]!r}")
        return NormalEntry("url", norm, _key_of_normalized(norm))
    name = normalize_domain(entry)
    if name is None:
        raise ValueError(f"not a domain, URL or sha256: {entry[:100]!r}")
    return NormalEntry("domain", name, name)


def parse_entry(text: str) -> tuple[str, str]:
    """``(kind, key)`` of one list entry (see :func:`normalise_entry`)."""
    entry = normalise_entry(text)
    return entry.kind, entry.key


def entries_from_strings(
    items: Iterable[str], *, classification: str = DEFAULT_CLASSIFICATION, source: str = "api"
) -> ListEntries:
    """Entries from API input (each string a domain, URL or sha256); ValueError names the bad one."""
    buckets: dict[str, dict[str, ListHit]] = {"domain": {}, "url": {}, "sha256": {}}
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"entry #{index + 1} must be a string, not {type(item).__name__}")
        try:
            kind, key = parse_entry(item)
        except ValueError as exc:
            raise ValueError(f"entry #{index + 1}: {exc}") from None
        buckets[kind].setdefault(key, ListHit(classification, source))
    return ListEntries(buckets["domain"], buckets["url"], buckets["sha256"])


# -- files ---------------------------------------------------------------------------------------


def load_list_file(path: str | Path, *, default_classification: str = DEFAULT_CLASSIFICATION) -> ListEntries:
    """Read one list file in any supported format (see the module docstring).

    Raises :class:`ConfigError` ``"<file>:<line>: <what is wrong>"`` for the first bad line, or
    ``"<file>: <reason>"`` when the file cannot be read.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: list file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read list file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{bad_line}: not UTF-8 text") from None
    lines = text.splitlines()
    if _is_csv(path, lines):
        return _load_csv(path, lines, default_classification)
    buckets: dict[str, dict[str, ListHit]] = {"domain": {}, "url": {}, "sha256": {}}
    classification = default_classification
    source = str(path)
    hits: dict[str, ListHit] = {}  # the last hit per classification: a hosts line's names share it
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") or stripped.startswith("!"):
            directive = _CLASSIFICATION_DIRECTIVE.match(stripped)
            if directive:
                classification = directive.group(1).lower()
            continue
        try:
            found = _plain_line(stripped, classification)
        except ValueError as exc:
            raise ConfigError(f"{path}:{lineno}: {exc}") from None
        for kind, key, cls in found:
            hit = hits.get(cls)
            if hit is None or hit.line != lineno:
                hit = hits[cls] = ListHit(cls, source, lineno)
            buckets[kind].setdefault(key, hit)
    return ListEntries(buckets["domain"], buckets["url"], buckets["sha256"])


def config_lists(config: EngineConfig) -> tuple[ListEntries, ListEntries]:
    """The ``(allow, block)`` entries of the config's list files (``[reputation]``), loaded the one
    way every reader loads them: the reputation layer, and the proxy's request-time checks."""
    rep = config.reputation
    allow = merge(load_list_file(config.resolve(p), default_classification=ALLOWLISTED) for p in rep.allowlist_files)
    block = merge(load_list_file(config.resolve(p)) for p in rep.blocklist_files)
    return allow, block


def _load_csv(path: Path, lines: list[str], classification: str) -> ListEntries:
    """A CSV list, read by one ``csv.reader`` (rows never span lines in these feeds)."""
    buckets: dict[str, dict[str, ListHit]] = {"domain": {}, "url": {}, "sha256": {}}
    source = str(path)
    state: dict[str, Any] = {"lineno": 0, "classification": classification}
    columns = _CsvReader()

    def data_lines() -> Iterator[str]:
        for lineno, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                directive = _CLASSIFICATION_DIRECTIVE.match(stripped)
                if directive:
                    state["classification"] = directive.group(1).lower()
                else:
                    columns.header_from_comment(stripped)
                continue
            state["lineno"] = lineno
            yield stripped

    reader = csv.reader(data_lines(), skipinitialspace=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ConfigError(f"{path}:{state['lineno']}: bad CSV row: {exc}") from None
        lineno = int(state["lineno"])
        try:
            found = columns.fields(fields, str(state["classification"]))
        except ValueError as exc:
            raise ConfigError(f"{path}:{lineno}: {exc}") from None
        for kind, key, cls in found:
            buckets[kind].setdefault(key, ListHit(cls, source, lineno))
    return ListEntries(buckets["domain"], buckets["url"], buckets["sha256"])


def _is_csv(path: Path, lines: list[str]) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith('"')
    return False


def _plain_line(line: str, classification: str) -> list[tuple[str, str, str]]:
    """One line of a plain list or hosts file."""
    if " #" in line or "\t#" in line:
        line = re.split(r"\s#", line, maxsplit=1)[0].strip()
    tokens = line.split()
    if len(tokens) >= 2 and (tokens[0] in _HOSTS_ADDRESSES or _IPV4.match(tokens[0]) or ":" in tokens[0]):
        found = []
        for token in tokens[1:]:
            if token.lower() in _HOSTS_SKIP:
                continue
            name = normalize_domain(token)
            if name is None:
                raise ValueError(f"hosts-file line names {token[:100]!r}, which is not a host name")
            found.append(("domain", name, classification))
        return found
    if len(tokens) != 1:
        raise ValueError(
            f"expected one domain, URL or sha256 per line (or a hosts-file line), got {line[:100]!r}"
        )
    kind, key = parse_entry(tokens[0])
    return [(kind, key, classification)]


class _CsvReader:
    """Rows of a CSV list; learns its columns from a header line, commented or not."""

    def __init__(self) -> None:
        self.entry_column: int | None = None
        self.threat_column: int | None = None

    def _learn(self, fields: list[str]) -> bool:
        names = [f.strip().lower() for f in fields]
        for wanted in ("url", "domain", "host", "hostname", "sha256", "sha256_hash"):
            if wanted in names:
                self.entry_column = names.index(wanted)
                self.threat_column = names.index("threat") if "threat" in names else None
                return True
        return False

    def header_from_comment(self, line: str) -> None:
        body = line.lstrip("#").strip()
        if "," in body:
            self._learn(next(csv.reader([body])))

    def fields(self, fields: list[str], classification: str) -> list[tuple[str, str, str]]:
        """The entry of one parsed row ([] for a header row); ValueError says what is wrong."""
        if self.entry_column is None and self._learn(fields):
            return []  # an uncommented header line
        cls = classification
        if self.threat_column is not None and self.threat_column < len(fields):
            threat = fields[self.threat_column].strip().lower()
            cls = _THREATS.get(threat, cls)
        if self.entry_column is not None:
            if self.entry_column >= len(fields):
                raise ValueError(
                    f"row has {len(fields)} columns, the entry column is #{self.entry_column + 1}"
                )
            kind, key = parse_entry(fields[self.entry_column])
            return [(kind, key, cls)]
        for value in fields:
            if "://" in value:
                kind, key = parse_entry(value)
                return [(kind, key, cls)]
        for value in fields:
            value = value.strip()
            if "." in value and not value.replace(".", "").isdigit() and normalize_domain(value):
                kind, key = parse_entry(value)
                return [(kind, key, cls)]
        raise ValueError(f"no URL or domain column in CSV row {','.join(fields)[:100]!r}")


# -- protected brands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Brand:
    """A protected brand: the label look-alikes are measured against and the domains it owns."""

    label: str
    primary: str
    domains: frozenset[str]
    common_word: bool = False


def parse_brands(text: str, source: str) -> list[Brand]:
    """Brands from ``brands.txt``-format text (see ``engine/data/brands.txt``)."""
    brands: list[Brand] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        common = line.startswith("~")
        names = []
        for token in line.lstrip("~").split():
            name = normalize_domain(token)
            if name is None:
                raise ConfigError(f"{source}:{lineno}: {token[:100]!r} is not a domain")
            names.append(name)
        primary = names[0]
        suffix = psl.public_suffix(primary)
        label = primary[: -len(suffix) - 1] if suffix and primary.endswith("." + suffix) else primary
        label = label.rsplit(".", 1)[-1]
        brands.append(Brand(label=label, primary=primary, domains=frozenset(names), common_word=common))
    return brands


def load_brands(path: str | Path) -> list[Brand]:
    """Brands from a user's file; :class:`ConfigError` names the file (and line) when bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read brands file: {exc}") from None
    return parse_brands(text, str(path))


@lru_cache(maxsize=1)
def bundled_brands() -> tuple[Brand, ...]:
    """The brands shipped in ``engine/data/brands.txt`` (read once per process)."""
    text = (Path(__file__).parent / "data" / "brands.txt").read_text(encoding="utf-8")
    return tuple(parse_brands(text, "engine/data/brands.txt"))


@lru_cache(maxsize=1)
def bundled_brand_labels() -> frozenset[str]:
    """Labels of bundled brands that are not common words (for URL features: brand in path...)."""
    return frozenset(b.label for b in bundled_brands() if not b.common_word and len(b.label) >= 4)


@lru_cache(maxsize=1)
def bundled_brand_domains() -> frozenset[str]:
    """Every domain a bundled brand owns."""
    return frozenset(d for b in bundled_brands() for d in b.domains)


def owned_by(host: str, domains: frozenset[str] | set[str]) -> str | None:
    """The domain in ``domains`` that ``host`` is or is a subdomain of, else None."""
    name = host.lower().rstrip(".")
    while name:
        if name in domains:
            return name
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]
    return None
