"""Lexical facts about a URL: the url layer's heuristics and the URL model read the same values.

:func:`extract_url_features` never raises: garbage in gives a :class:`UrlFeatures` holding what
could be read, with ``parse_error`` saying what could not. It is built for bulk use (tens of
thousands of URLs when a model is trained), so it counts with ``str`` methods that run in C and
looks registrable domains up through a cache.

:meth:`UrlFeatures.vector` is the numeric view with stable feature names. Renaming or changing a
feature changes what a trained model means: bump ``FEATURE_VERSION`` in ``features/__init__.py``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from dataclasses import dataclass, fields
from functools import lru_cache
from types import MappingProxyType

import ahocorasick

from .. import psl
from ..lists import bundled_brand_domains, bundled_brand_labels, owned_by

#: Words that phishing hosts and paths use to look like a sign-in or account page.
CREDENTIAL_WORDS: tuple[str, ...] = (
    "login", "log-in", "logon", "signin", "sign-in", "verify", "verification", "validate",
    "secure", "account", "update", "banking", "webscr", "confirm", "password", "passwd",
    "authenticat", "unlock", "suspend", "recover", "billing", "wallet", "webmail", "ebayisapi",
    "credential", "reactivat",
)

#: TLDs with a high share of abuse in public reports (Spamhaus, Interisle): the Freenom free TLDs
#: and cheap new gTLDs. Being on one is a weak signal, never a verdict on its own.
RISKY_TLDS: frozenset[str] = frozenset(
    """tk ml ga cf gq xyz top club online site icu buzz cyou rest fit work zip mov cam monster sbs
    cfd bar click link loan win bid date download racing review stream trade party science men gdn
    kim country cricket accountant faith webcam host space press pw su surf quest best uno shop
    live store tokyo ink lol mom beauty hair skin makeup autos boats yachts homes motorcycles
    """.split()
)

#: The Freenom TLDs: free to register, overwhelmingly abused.
FREE_TLDS: frozenset[str] = frozenset({"tk", "ml", "ga", "cf", "gq"})

#: URL shorteners: the link hides where it goes.
SHORTENERS: frozenset[str] = frozenset(
    """bit.ly bitly.com tinyurl.com goo.gl ow.ly is.gd buff.ly rebrand.ly cutt.ly shorturl.at rb.gy
    tiny.cc s.id v.gd t.ly bl.ink adf.ly shorte.st bc.vc ouo.io x.co tr.im soo.gd clck.ru u.to
    surl.li urlz.fr han.gl qrco.de tiny.one shorturl.com cli.re lnkd.in 0i.is 2no.co iplogger.org
    grabify.link bit.do cutt.us""".split()
)

#: Free hosting and site-builder platforms: anyone can publish a page there in minutes, so
#: phishing pages do. Matched on the host's domain (``x.000webhostapp.com``).
FREE_HOSTING: frozenset[str] = frozenset(
    """000webhostapp.com weebly.com wixsite.com yolasite.com webcindario.com 16mb.com
    firebaseapp.com web.app glitch.me herokuapp.com netlify.app vercel.app pages.dev workers.dev
    repl.co github.io gitlab.io blogspot.com wordpress.com azurewebsites.net cprapid.com
    temporary.link temp-site.link myftpupload.com mybluehost.me umbler.net beget.tech xsph.ru
    swtest.ru wcomhost.com pastehtml.com ngrok.io ngrok-free.app trycloudflare.com surge.sh
    square.site godaddysites.com webflow.io carrd.co mystrikingly.com jimdosite.com tilda.ws
    ucoz.ru ucoz.net narod.ru sites.google.com forms.gle ipfs.io""".split()
)

#: Dynamic-DNS zones: a free name that points at any machine, often a compromised one.
DYNAMIC_DNS: frozenset[str] = frozenset(
    """duckdns.org ddns.net hopto.org zapto.org sytes.net myftp.biz myftp.org bounceme.net
    servebeer.com serveirc.com myvnc.com redirectme.net ddnsking.com gotdns.ch freeddns.org
    dynv6.net dns-cloud.net freemyip.com dynu.net mooo.com chickenkiller.com nsupdate.info
    dyndns.org dynalias.com 3utilities.com serveftp.com ddns.me kozow.com loseyourip.com
    freeddns.uk ydns.eu no-ip.org no-ip.biz no-ip.info noip.me webhop.me""".split()
)

#: Folders of popular CMSs that hold code and assets: a page served from inside one (or from a
#: made-up folder under ``/.well-known/``) is how phishing kits sit on hacked web sites.
_CMS_PAGE = re.compile(
    r"/wp-(?:content|includes)/(?:[^?#]*/)?(?:[^/?#]*\.(?:php|html?|aspx?)|)$"
    r"|/\.well-known/(?!acme-challenge/|pki-validation/)[^/]+/",
    re.I,
)
_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+\.[a-z]{2,}", re.I)

#: Path extensions that download programs or scripts a user might run.
RISKY_EXTENSIONS: frozenset[str] = frozenset(
    "exe scr apk jar vbs vbe hta msi bat cmd ps1 dll bin pif lnk wsf jse iso dmg".split()
)

#: Labels that mean "a domain name follows" when they appear inside a subdomain.
_TLD_WORDS = frozenset({"com", "net", "org", "co", "gov", "edu", "info", "biz"})

_DIGITS = "0123456789"
_SPECIALS = "-_.~!$&'()*+,;=:@%"
_TOKEN = re.compile(r"[a-z0-9]+")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]{0,20}):")


@dataclass(frozen=True)
class UrlFeatures:
    """What can be read from a URL's text alone.

    Frozen; built by :func:`extract_url_features` through :func:`_make`, which fills the
    instance dict in one step (a frozen dataclass's generated ``__init__`` costs ~13 µs for these
    ~55 fields, more than all the parsing).
    """

    url: str
    scheme: str = ""
    host: str = ""
    host_unicode: str = ""
    registrable_domain: str = ""
    domain_label: str = ""
    public_suffix: str = ""
    tld: str = ""
    subdomain: str = ""
    subdomain_depth: int = 0
    port: int | None = None
    userinfo: str = ""
    path: str = ""
    query: str = ""
    is_ip: bool = False
    ip_kind: str = ""
    ip_private: bool = False
    punycode: bool = False
    non_ascii_host: bool = False
    mixed_script: bool = False
    url_length: int = 0
    host_length: int = 0
    path_length: int = 0
    query_length: int = 0
    host_entropy: float = 0.0
    domain_label_entropy: float = 0.0
    path_entropy: float = 0.0
    host_digit_ratio: float = 0.0
    path_digit_ratio: float = 0.0
    url_digit_ratio: float = 0.0
    special_char_count: int = 0
    percent_count: int = 0
    host_hyphen_count: int = 0
    host_dot_count: int = 0
    path_depth: int = 0
    query_param_count: int = 0
    double_slash_in_path: bool = False
    tld_in_subdomain: bool = False
    tld_in_path: bool = False
    risky_tld: bool = False
    free_tld: bool = False
    shortener: bool = False
    free_hosting: str = ""
    dynamic_dns: str = ""
    cms_folder_page: bool = False
    email_in_url: bool = False
    brand_domain: bool = False
    brand_in_subdomain: tuple[str, ...] = ()
    brand_in_domain_label: tuple[str, ...] = ()
    brand_in_path: tuple[str, ...] = ()
    credential_words_host: tuple[str, ...] = ()
    credential_words_path: tuple[str, ...] = ()
    file_extension: str = ""
    risky_extension: bool = False
    parse_error: str = ""

    @property
    def at_in_authority(self) -> bool:
        """``http://paypal.com@evil.example/``: the part before ``@`` is not the host."""
        return bool(self.userinfo)

    def vector(self) -> dict[str, float]:
        """Numeric features with stable names, for the URL model."""
        return {
            "url_length": float(self.url_length),
            "host_length": float(self.host_length),
            "path_length": float(self.path_length),
            "query_length": float(self.query_length),
            "scheme_https": float(self.scheme == "https"),
            "scheme_http": float(self.scheme == "http"),
            "scheme_other": float(self.scheme not in ("http", "https")),
            "subdomain_depth": float(self.subdomain_depth),
            "host_dot_count": float(self.host_dot_count),
            "host_hyphen_count": float(self.host_hyphen_count),
            "host_entropy": self.host_entropy,
            "domain_label_length": float(len(self.domain_label)),
            "domain_label_entropy": self.domain_label_entropy,
            "path_entropy": self.path_entropy,
            "host_digit_ratio": self.host_digit_ratio,
            "path_digit_ratio": self.path_digit_ratio,
            "url_digit_ratio": self.url_digit_ratio,
            "special_char_count": float(self.special_char_count),
            "percent_count": float(self.percent_count),
            "path_depth": float(self.path_depth),
            "query_param_count": float(self.query_param_count),
            "is_ip": float(self.is_ip),
            "ip_obfuscated": float(self.ip_kind in ("integer", "hex", "octal", "mixed")),
            "ip_private": float(self.ip_private),
            "punycode": float(self.punycode),
            "non_ascii_host": float(self.non_ascii_host),
            "mixed_script": float(self.mixed_script),
            "at_in_authority": float(self.at_in_authority),
            "has_port": float(self.port is not None),
            "double_slash_in_path": float(self.double_slash_in_path),
            "tld_in_subdomain": float(self.tld_in_subdomain),
            "tld_in_path": float(self.tld_in_path),
            "risky_tld": float(self.risky_tld),
            "free_tld": float(self.free_tld),
            "tld_length": float(len(self.tld)),
            "shortener": float(self.shortener),
            "free_hosting": float(bool(self.free_hosting)),
            "dynamic_dns": float(bool(self.dynamic_dns)),
            "cms_folder_page": float(self.cms_folder_page),
            "email_in_url": float(self.email_in_url),
            "brand_domain": float(self.brand_domain),
            "brand_in_subdomain": float(len(self.brand_in_subdomain)),
            "brand_in_domain_label": float(len(self.brand_in_domain_label)),
            "brand_in_path": float(len(self.brand_in_path)),
            "credential_words_host": float(len(self.credential_words_host)),
            "credential_words_path": float(len(self.credential_words_path)),
            "risky_extension": float(self.risky_extension),
            "ext_php": float(self.file_extension == "php"),
            "ext_html": float(self.file_extension in ("html", "htm")),
            "parse_error": float(bool(self.parse_error)),
        }


def extract_url_features(url: str) -> UrlFeatures:
    """Lexical features of ``url``. Never raises."""
    try:
        return _extract(url)
    except Exception as exc:  # noqa: BLE001 - a features bug must not break a scan or a training run
        text = url if isinstance(url, str) else repr(url)
        return UrlFeatures(url=text[:4096], url_length=len(text), parse_error=f"{type(exc).__name__}: {exc}"[:200])


def feature_names() -> list[str]:
    """The names :meth:`UrlFeatures.vector` returns, in order."""
    return list(UrlFeatures(url="").vector())


def entropy(text: str) -> float:
    """Shannon entropy in bits per character (0 for empty text)."""
    n = len(text)
    if n < 2:
        return 0.0
    # Distinct characters, then one C-level count each: faster than Counter for short text.
    counts = map(text.count, set(text))
    if n < len(_XLOGX):
        total = sum(map(_XLOGX.__getitem__, counts))
    else:
        total = sum(c * math.log2(c) for c in counts)
    return max(0.0, math.log2(n) - total / n)


#: c * log2(c) for small counts: entropy is computed for every host and path, so look it up.
_XLOGX: list[float] = [0.0] + [c * math.log2(c) for c in range(1, 4096)]
_DIGIT_BYTES = _DIGITS.encode()
_SPECIAL_BYTES = _SPECIALS.encode()


def _count_bytes(data: bytes, members: bytes) -> int:
    """How many bytes of ``data`` are in ``members`` (C speed: translate deletes them)."""
    return len(data) - len(data.translate(None, members))


def _ratio(text: str) -> float:
    if not text:
        return 0.0
    data = text.encode("utf-8", "surrogatepass")
    return _count_bytes(data, _DIGIT_BYTES) / len(text)


def _extract(url: str) -> UrlFeatures:
    if not isinstance(url, str):
        url = str(url)
    raw = url.strip()
    if "\t" in raw or "\n" in raw or "\r" in raw:
        raw = raw.translate(_STRIP_WS)  # browsers drop these before parsing, so do we
    raw_bytes = raw.encode("utf-8", "surrogatepass")
    specials = _count_bytes(raw_bytes, _SPECIAL_BYTES)
    url_digits = _count_bytes(raw_bytes, _DIGIT_BYTES) / len(raw) if raw else 0.0
    scheme_match = _SCHEME.match(raw)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    sep = raw.find("://", 0, 40)
    if scheme and sep < 0:
        # data:, javascript:, blob:, about: ... carry no host; only the text can be read.
        body = raw[len(scheme) + 1 :]
        return _make(
            url=raw, scheme=scheme, url_length=len(raw), path=body[:4096], path_length=len(body),
            special_char_count=specials, percent_count=raw.count("%"), url_digit_ratio=url_digits,
        )
    if sep < 0:
        scheme, rest = "http", raw  # "www.example.com/x": feeds list URLs without a scheme
    else:
        scheme, rest = (scheme or raw[:sep].lower()), raw[sep + 3 :]
    # Split like WHATWG: the authority ends at the first "/", "?", "#" (or "\\" for http).
    end = len(rest)
    for ch in "/?#\\":
        pos = rest.find(ch, 0, end)
        if pos >= 0:
            end = pos
    netloc, tail = rest[:end], rest[end:]
    tail = tail.split("#", 1)[0]
    path, _, query = tail.partition("?")
    if not path:
        path = "/"
    userinfo, _, hostport = netloc.rpartition("@")
    host, port = _split_port(hostport)
    parse_error = ""
    if port == -1:
        parse_error = "invalid port"
        port = None
    host = host.lower().rstrip(".")
    if "%" in host:
        parse_error = parse_error or "percent-encoded host"
    host_fields = _host_fields(host)
    punycode = host_fields["host"]
    host = punycode if isinstance(punycode, str) and punycode else host  # the form that goes over the wire
    path_depth = path.count("/") - (1 if path.endswith("/") and len(path) > 1 else 0)
    lower_path = path.lower()
    last_segment = lower_path.rsplit("/", 1)[-1]
    ext = ""
    dot = last_segment.rfind(".")
    if dot >= 0 and 0 < len(last_segment) - dot - 1 <= 5 and last_segment[dot + 1 :].isalnum():
        ext = last_segment[dot + 1 :]
    path_and_query = lower_path + "?" + query.lower() if query else lower_path
    cred_path, brands_path = _path_words(path_and_query)
    state = dict(host_fields)
    state.update({
        "url": raw,
        "scheme": scheme,
        "host": host,
        "port": port,
        "userinfo": userinfo,
        "path": path,
        "query": query,
        "url_length": len(raw),
        "path_length": len(path),
        "query_length": len(query),
        "path_entropy": entropy(path) if len(path) > 1 else 0.0,
        "path_digit_ratio": _ratio(path) if len(path) > 1 else 0.0,
        "url_digit_ratio": url_digits,
        "special_char_count": specials,
        "percent_count": raw.count("%"),
        "path_depth": max(0, path_depth),
        "query_param_count": (query.count("&") + 1) if query else 0,
        "double_slash_in_path": "//" in path,
        "tld_in_path": _tld_in_path(lower_path),
        "cms_folder_page": bool(_CMS_PAGE.search(path)) if "/wp-" in path or "/.well-known/" in path else False,
        "email_in_url": bool(_EMAIL.search(query)) if ("@" in query or "%40" in query) else False,
        "brand_in_path": () if host_fields["brand_domain"] else brands_path,
        "credential_words_path": cred_path,
        "file_extension": ext,
        "risky_extension": ext in RISKY_EXTENSIONS,
        "parse_error": parse_error,
    })
    return _from_state(state)


_STRIP_WS = str.maketrans("", "", "\t\n\r")
_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(UrlFeatures)}


def _from_state(state: dict[str, object]) -> UrlFeatures:
    """A :class:`UrlFeatures` from a dict holding every field (no copying, no keyword passing)."""
    obj = object.__new__(UrlFeatures)
    object.__setattr__(obj, "__dict__", state)
    return obj


def _make(**values: object) -> UrlFeatures:
    """A :class:`UrlFeatures` from field values (missing ones take their defaults)."""
    state = dict(_DEFAULTS)
    state.update(values)
    obj = object.__new__(UrlFeatures)
    object.__setattr__(obj, "__dict__", state)
    return obj
_CREDENTIAL_RE = re.compile("|".join(re.escape(w) for w in CREDENTIAL_WORDS))


def _split_port(hostport: str) -> tuple[str, int | None]:
    """``host:8080`` -> (host, 8080); an IPv6 literal keeps its colons; -1 means a bad port."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport[1:], None
        host, rest = hostport[1:end], hostport[end + 1 :]
        if rest.startswith(":") and rest[1:]:
            return host, int(rest[1:]) if rest[1:].isdigit() and int(rest[1:]) < 65536 else -1
        return host, None
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return hostport, None
    if not port:
        return host, None
    if port.isdigit() and int(port) < 65536:
        return host, int(port)
    return host, -1


#: The :class:`UrlFeatures` fields that depend on the host alone, with their defaults (no host).
_NO_HOST: dict[str, object] = {
    name: _DEFAULTS[name]
    for name in (
        "host", "host_unicode", "registrable_domain", "domain_label", "public_suffix", "tld", "subdomain",
        "subdomain_depth", "is_ip", "ip_kind", "ip_private", "punycode", "non_ascii_host", "mixed_script",
        "host_length", "host_entropy", "domain_label_entropy", "host_digit_ratio", "host_hyphen_count",
        "host_dot_count", "tld_in_subdomain", "risky_tld", "free_tld", "shortener", "free_hosting",
        "dynamic_dns", "brand_domain", "brand_in_subdomain", "brand_in_domain_label", "credential_words_host",
    )
}


@lru_cache(maxsize=32_768)
def _host_fields(host: str) -> MappingProxyType[str, object]:
    """The host-only :class:`UrlFeatures` fields of ``host`` (cached: traffic repeats hosts)."""
    values = dict(_NO_HOST)
    if host:
        values.update(_read_host(host))
    return MappingProxyType(values)


def _read_host(host: str) -> dict[str, object]:
    ip_kind, ip_private = ip_literal_kind(host)
    if ip_kind:
        return {
            "host": host, "host_unicode": host, "registrable_domain": host, "is_ip": True, "ip_kind": ip_kind,
            "ip_private": ip_private, "host_length": len(host), "host_entropy": entropy(host),
            "host_digit_ratio": _ratio(host), "host_hyphen_count": host.count("-"),
            "host_dot_count": host.count("."),
        }
    non_ascii = not host.isascii()
    if non_ascii:
        host_unicode = host
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    else:
        host_unicode = decode_punycode(host) if "xn--" in host else host
    punycode = "xn--" in host
    reg = psl.registrable_domain(host)
    # The registrable domain is one label plus the public suffix: no second PSL lookup needed.
    suffix = reg.split(".", 1)[1] if "." in reg else psl.public_suffix(host)
    label = reg[: -len(suffix) - 1] if suffix and reg.endswith("." + suffix) and reg != suffix else reg
    subdomain = host[: -len(reg) - 1] if host.endswith("." + reg) else ""
    sub_labels = subdomain.split(".") if subdomain else []
    tld = host.rsplit(".", 1)[-1] if "." in host else host
    brand_domain = owned_by(host, bundled_brand_domains()) is not None
    brand_labels = bundled_brand_labels()
    brand_sub: tuple[str, ...] = ()
    brand_label: tuple[str, ...] = ()
    if not brand_domain:
        brand_sub = tuple(sorted(set(_TOKEN.findall(subdomain)) & brand_labels)) if subdomain else ()
        found = set(_TOKEN.findall(label)) & brand_labels
        found.update(_brand_substrings(label))
        brand_label = tuple(sorted(found))
    return {
        "host": host,
        "host_unicode": host_unicode,
        "registrable_domain": reg,
        "domain_label": label,
        "public_suffix": suffix,
        "tld": tld,
        "subdomain": subdomain,
        "subdomain_depth": len(sub_labels),
        "punycode": punycode,
        "non_ascii_host": non_ascii or punycode and not host_unicode.isascii(),
        "mixed_script": is_mixed_script(host_unicode) if not host_unicode.isascii() else False,
        "host_length": len(host),
        "host_entropy": entropy(host),
        "domain_label_entropy": entropy(label),
        "host_digit_ratio": _ratio(host),
        "host_hyphen_count": host.count("-"),
        "host_dot_count": host.count("."),
        "tld_in_subdomain": any(part in _TLD_WORDS for part in sub_labels),
        "risky_tld": tld in RISKY_TLDS,
        "free_tld": tld in FREE_TLDS,
        "shortener": reg in SHORTENERS or host in SHORTENERS,
        "free_hosting": owned_by(host, FREE_HOSTING) or "",
        "dynamic_dns": owned_by(host, DYNAMIC_DNS) or "",
        "brand_domain": brand_domain,
        "brand_in_subdomain": brand_sub,
        "brand_in_domain_label": brand_label,
        "credential_words_host": tuple(dict.fromkeys(_CREDENTIAL_RE.findall(host))) if not brand_domain else (),
    }


@lru_cache(maxsize=1)
def _brand_automaton() -> ahocorasick.Automaton:
    """Brand labels of 6+ letters, found anywhere in a label ("paypalsecure") in one C pass."""
    automaton = ahocorasick.Automaton()
    for label in bundled_brand_labels():
        if len(label) >= 6:
            automaton.add_word(label, label)
    automaton.make_automaton()
    return automaton


def _brand_substrings(label: str) -> set[str]:
    """Brands that start or end a token of ``label`` ("paypalsecure", "my-securepaypal"), not
    those buried inside a word ("cbsinteractive" is not Interac)."""
    automaton = _brand_automaton()
    found: set[str] = set()
    if not len(automaton):
        return found
    for token in _TOKEN.findall(label):
        for end, brand in automaton.iter(token):
            if end == len(token) - 1 or end + 1 == len(brand):
                found.add(brand)
    return found


@lru_cache(maxsize=1)
def _path_automaton() -> ahocorasick.Automaton:
    """Credential words (anywhere) and brand labels (whole words) for one C pass over a path."""
    automaton = ahocorasick.Automaton()
    for word in CREDENTIAL_WORDS:
        automaton.add_word(word, (True, word))
    for label in bundled_brand_labels():
        automaton.add_word(label, (False, label))
    automaton.make_automaton()
    return automaton


def _path_words(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(credential words, brand names as whole words) found in a lower-cased path and query."""
    if len(text) < 4:
        return (), ()
    words: dict[str, None] = {}
    brands: set[str] = set()
    size = len(text)
    for end, (credential, word) in _path_automaton().iter(text):
        if credential:
            words[word] = None
        else:
            start = end - len(word) + 1
            if (start == 0 or not text[start - 1].isalnum()) and (end + 1 == size or not text[end + 1].isalnum()):
                brands.add(word)
    return tuple(words), tuple(sorted(brands))


def _tld_in_path(lower_path: str) -> bool:
    """``/www.paypal.com/signin``: a domain name inside the path."""
    if ".com" not in lower_path and ".net" not in lower_path and ".org" not in lower_path:
        return False
    return bool(re.search(r"[a-z0-9-]\.(?:com|net|org)(?:[/.?#]|$)", lower_path))


def ip_literal_kind(host: str) -> tuple[str, bool]:
    """What kind of IP literal ``host`` is, the way browsers parse it, and whether it is private.

    ``("ipv4", _)`` for dotted decimal; ``("integer"|"hex"|"octal"|"mixed", _)`` for the
    obfuscated forms browsers still accept (``http://3232235777/``, ``0xC0A80101``,
    ``0300.0250.1.1``); ``("ipv6", _)``; ``("", False)`` for a host name.
    """
    if ":" in host:
        try:
            addr6 = ipaddress.IPv6Address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return "", False
        return "ipv6", addr6.is_private or addr6.is_loopback or addr6.is_link_local
    last = host.rsplit(".", 1)[-1]
    if not (last.isdigit() or last.startswith("0x")):
        return "", False
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return "", False
    values: list[int] = []
    kinds: set[str] = set()
    for part in parts:
        if part.startswith(("0x", "0X")):
            digits = part[2:] or "0"
            try:
                values.append(int(digits, 16))
            except ValueError:
                return "", False
            kinds.add("hex")
        elif part.isdigit() and part.isascii():
            if len(part) > 1 and part[0] == "0":
                try:
                    values.append(int(part, 8))
                except ValueError:
                    return "", False
                kinds.add("octal")
            else:
                values.append(int(part))
                kinds.add("dec")
        else:
            return "", False
    if len(parts) == 4 and kinds == {"dec"}:
        kind = "ipv4"
    elif len(parts) == 1:
        kind = "integer" if kinds == {"dec"} else kinds.pop()
    else:
        kind = "mixed" if len(kinds) > 1 else ("ipv4" if kinds == {"dec"} else kinds.pop())
    # Fold the parts into one 32-bit number (the last part fills the remaining bytes).
    number = 0
    for value in values[:-1]:
        number = (number << 8) | (value & 0xFF)
    number = (number << (8 * (5 - len(values)))) | (values[-1] & ((1 << (8 * (5 - len(values)))) - 1))
    try:
        addr = ipaddress.IPv4Address(number & 0xFFFFFFFF)
    except ValueError:
        return kind, False
    return kind, addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_unspecified


def decode_punycode(host: str) -> str:
    """``xn--pypal-4ve.com`` -> ``pаypal.com``; labels that do not decode stay as they are."""
    out = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                pass
        out.append(label)
    return ".".join(out)


def char_script(ch: str) -> str:
    """The Unicode script of a letter, approximated by the first word of its name (LATIN, ...)."""
    if ch.isascii():
        return "LATIN"
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def is_mixed_script(host_unicode: str) -> bool:
    """True when one label mixes letters of two scripts (``pаypal`` with a Cyrillic ``а``)."""
    for label in host_unicode.split("."):
        if label.isascii():
            continue
        scripts = {char_script(ch) for ch in label if ch.isalpha()}
        scripts.discard("CJK")  # CJK mixes with Hiragana/Katakana legitimately
        if len(scripts) > 1 and not scripts <= {"HIRAGANA", "KATAKANA", "LATIN"}:
            return True
    return False
