"""The Capture: everything the engine knows about one page, whichever path produced it.

The proxy builds a Capture from a live response, the extension from what it saw in the browser,
the CLI from a local file. The engine sees only this type, so every layer works the same for all
three. A Capture is immutable and validated: :meth:`Capture.build` turns raw inputs into one or
raises :class:`~malwaresnipper.engine.errors.CaptureError` with a message a client can act on, and
it fits oversized pages and scripts into the configured caps (:mod:`.fit`: comments and
whitespace set aside first, noted in ``reductions``; then the head and the tail kept, each cut
noted in ``truncations``, which makes the verdict incomplete and so never BENIGN).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import ada_url

from .errors import CaptureError

#: Schemes a Capture may carry. http(s) pages come from the proxy and the extension; data: and
#: javascript: URLs are scanned lexically; file: is what the CLI uses for local files.
ALLOWED_SCHEMES = frozenset({"http", "https", "data", "javascript", "file", "about", "blob"})
MAX_URL_CHARS = 65_536
#: Titles are cut to this many characters (a page title is one line of a list or an event, and a
#: page could otherwise repeat a megabyte in every event about it); the proxy cuts the same way.
MAX_TITLE_CHARS = 300
#: Largest DOM count a browser could report (no real page has a hundred million elements).
MAX_DOM_COUNT = 100_000_000
#: A UTF-16 surrogate code point on its own: JSON and DOM strings can hold one, UTF-8 cannot.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: C0 controls, space and DEL: never in a URL a browser serialises (it percent-encodes them), and
#: the WHATWG parser drops or rewrites some of them (tab, newline) so the text would not say
#: what the browser fetched.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


class Source(str, Enum):
    """Where a capture came from."""

    PROXY = "proxy"
    EXTENSION = "extension"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class CaptureLimits:
    """Size caps applied when a Capture is built (characters, not bytes)."""

    max_page_chars: int = 5_000_000
    max_script_chars: int = 5_000_000
    max_scripts: int = 200
    max_dom_items: int = 500


@dataclass(frozen=True, slots=True)
class Script:
    """One script of a page: inline text, or an external URL plus its text when known."""

    text: str | None = None
    url: str | None = None
    inline: bool = True
    original_chars: int = 0
    truncated: bool = False
    sha256: str | None = None

    @property
    def location(self) -> str:
        """How evidence names this script to a user."""
        return f"script {self.url}" if self.url else "inline script"


@dataclass(frozen=True, slots=True)
class FormFact:
    """A form as the browser (or our HTML parser) saw it."""

    action: str = ""
    method: str = "get"
    has_password: bool = False
    has_card: bool = False
    input_count: int = 0
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class IframeFact:
    """An iframe: where it points and whether a user could see it."""

    src: str = ""
    hidden: bool = False
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class DomFacts:
    """Facts about the rendered page computed in the browser by the extension.

    The proxy path has no rendered DOM; the dom layer derives the same facts from the HTML.
    """

    forms: tuple[FormFact, ...] = ()
    iframes: tuple[IframeFact, ...] = ()
    meta_refresh: str | None = None
    element_count: int = 0
    link_count: int = 0
    external_link_count: int = 0
    resource_count: int = 0
    external_resource_count: int = 0
    right_click_disabled: bool = False
    auto_download: str | None = None
    text_excerpt: str = ""


@dataclass(frozen=True, slots=True)
class Capture:
    """One page (or one script, or one URL) to scan. Build it with :meth:`build`."""

    url: str
    source: Source = Source.PROXY
    html: str | None = None
    title: str | None = None
    scripts: tuple[Script, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    dom: DomFacts | None = None
    truncations: tuple[str, ...] = ()
    page_url: str | None = None
    #: the address is a placeholder (``eval`` of corpus pages and scripts, which have none): the
    #: URL model skips it and the dom layer compares nothing with the page's own site
    synthetic_url: bool = False
    #: what was set aside to fit the caps without losing anything that matters (comments ...)
    reductions: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        """The lower-cased host of ``url`` ('' when it has none)."""
        try:
            return (urlsplit(self.url).hostname or "").lower()
        except ValueError:
            return ""

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower() if ":" in self.url else ""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def total_chars(self) -> int:
        """Characters of content carried (HTML plus script texts): what throughput counts."""
        return len(self.html or "") + sum(len(s.text or "") for s in self.scripts)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        url: str,
        *,
        source: Source | str = Source.PROXY,
        html: str | bytes | None = None,
        title: str | None = None,
        scripts: Iterable[Script | str | Mapping[str, Any]] = (),
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
        dom: DomFacts | Mapping[str, Any] | None = None,
        page_url: str | None = None,
        limits: CaptureLimits | None = None,
        synthetic_url: bool = False,
        truncations: Iterable[str] = (),
        reductions: Iterable[str] = (),
    ) -> Capture:
        """Validate raw inputs and apply the size caps.

        ``scripts`` items may be a :class:`Script`, a string (inline text) or a mapping with
        ``text``, ``url`` and ``inline``. ``truncations`` and ``reductions`` carry what the
        caller already cut or set aside (the proxy decoding a huge body). Raises
        :class:`CaptureError` for invalid inputs.
        """
        limits = limits or CaptureLimits()
        url = validate_url(url)
        try:
            source = Source(source)
        except ValueError:
            raise CaptureError(
                f"source must be one of {[s.value for s in Source]}, not {source!r}"
            ) from None
        cut: list[str] = [str(t) for t in truncations]
        reduced: list[str] = [str(r) for r in reductions]

        if isinstance(html, (bytes, bytearray)):
            html = bytes(html).decode("utf-8", errors="replace")
        html = _optional_str(html, "html")
        if html is not None and len(html) > limits.max_page_chars:
            from .fit import fit_html  # imported here: fit needs the features package, which needs us

            fitted = fit_html(html, limits.max_page_chars)
            html = fitted.text
            reduced += fitted.reductions
            cut += fitted.truncations

        built_scripts: list[Script] = []
        if isinstance(scripts, (str, bytes, Mapping)):
            raise CaptureError("scripts must be a list")
        for index, raw in enumerate(scripts):
            if index >= limits.max_scripts:
                cut.append(f"only the first {limits.max_scripts} scripts were kept")
                break
            script = _script_from(raw, index)
            built_scripts.append(_cap_script(script, limits, cut, reduced))

        title = _optional_str(title, "title")
        return cls(
            url=url,
            source=source,
            html=html,
            title=title[:MAX_TITLE_CHARS] if title is not None else None,
            scripts=tuple(built_scripts),
            headers=_headers_from(headers),
            content_type=_optional_str(content_type, "content_type"),
            dom=_dom_from(dom, limits) if dom is not None else None,
            truncations=tuple(cut),
            page_url=validate_url(page_url) if page_url else None,
            synthetic_url=bool(synthetic_url),
            reductions=tuple(reduced),
        )


def validate_url(url: object) -> str:
    """Return ``url`` stripped, or raise :class:`CaptureError` saying why it is not a URL.

    The one URL check of the project (the API asks it too). An http(s) URL must be one a browser
    would load, by the WHATWG URL parser (``ada_url``: the host is a valid domain, IPv4 or IPv6
    address, the port is in range), and be written as a browser writes it, so that the text the
    engine reads names the host the browser would contact: no control characters or spaces, no
    backslash or second ``@`` before the path (the WHATWG parser and ``urlsplit`` disagree on
    those, ``http://evil.example\\@bank.example/``). One ``@`` (user info) is legal; the url
    layer flags it.
    """
    if not isinstance(url, str):
        raise CaptureError(f"url must be a string, not {type(url).__name__}")
    url = url.strip()
    if not url:
        raise CaptureError("url is empty")
    if len(url) > MAX_URL_CHARS:
        raise CaptureError(f"url is longer than {MAX_URL_CHARS} characters")
    if LONE_SURROGATE.search(url):
        raise CaptureError(f"url holds an unpaired UTF-16 surrogate: {url[:80]!r}")
    if ":" not in url:
        raise CaptureError(f"not a URL (no scheme): {url[:80]!r}")
    scheme, rest = url.split(":", 1)
    scheme = scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise CaptureError(f"unsupported URL scheme {scheme!r} (expected http or https)")
    if scheme in ("http", "https"):
        _check_http_url(url, rest)
    return url


def _check_http_url(url: str, rest: str) -> None:
    forbidden = _URL_FORBIDDEN.search(url)
    if forbidden:
        raise CaptureError(f"not a valid URL: character {forbidden.group()!r} at position {forbidden.start()} "
                           f"(percent-encode it): {url[:80]!r}")
    if not rest.startswith("//"):
        raise CaptureError(f"not a valid URL (no host): {url[:80]!r}")
    authority = re.split("[/?#]", rest[2:], maxsplit=1)[0]
    if "\\" in authority:
        raise CaptureError(f"not a valid URL (a backslash before the path): {url[:80]!r}")
    if authority.count("@") > 1:
        raise CaptureError(f"not a valid URL (more than one '@' before the path): {url[:80]!r}")
    if not authority.rpartition("@")[2]:
        raise CaptureError(f"not a valid URL (no host): {url[:80]!r}")
    try:
        # check_url: the parser's verdict without building the components (a tenth of parse_url)
        valid = ada_url.check_url(url)
        urlsplit(url).port  # noqa: B018 - what Capture.host reads must parse as well
    except ValueError:
        valid = False
    if not valid:
        raise CaptureError(f"not a valid URL (a browser would refuse its host or port): {url[:80]!r}")


def sha256_text(text: str) -> str:
    """The sha256 of a script as the network sent it (UTF-8; invalid surrogates replaced)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _optional_str(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise CaptureError(f"{name} must be a string, not {type(value).__name__}")


def _script_from(raw: Script | str | Mapping[str, Any], index: int) -> Script:
    if isinstance(raw, Script):
        return raw
    if isinstance(raw, str):
        return Script(text=raw, inline=True)
    if isinstance(raw, Mapping):
        text = raw.get("text", raw.get("content"))
        url = raw.get("url", raw.get("src"))
        if text is not None and not isinstance(text, str):
            raise CaptureError(f"scripts[{index}].text must be a string")
        if url is not None:
            if not isinstance(url, str):
                raise CaptureError(f"scripts[{index}].url must be a string")
            url = url.strip() or None
        if text is None and url is None:
            raise CaptureError(f"scripts[{index}] needs text or url")
        inline = raw.get("inline", url is None)
        if not isinstance(inline, bool):
            raise CaptureError(f"scripts[{index}].inline must be true or false")
        return Script(text=text, url=url, inline=inline)
    raise CaptureError(f"scripts[{index}] must be a string or an object, not {type(raw).__name__}")


def _cap_script(script: Script, limits: CaptureLimits, truncations: list[str], reduced: list[str]) -> Script:
    text = script.text
    original = len(text) if text is not None else script.original_chars
    truncated = script.truncated
    digest = script.sha256
    if text is not None:
        digest = digest or sha256_text(text)
        if len(text) > limits.max_script_chars:
            from .fit import fit_script

            fitted = fit_script(text, limits.max_script_chars, script.url or "an inline script")
            text = fitted.text
            reduced += fitted.reductions
            truncations += fitted.truncations
            truncated = truncated or bool(fitted.truncations)
    return Script(
        text=text,
        url=script.url,
        inline=script.inline,
        original_chars=original,
        truncated=truncated,
        sha256=digest,
    )


def _headers_from(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    try:
        for key, value in items:
            if not isinstance(key, str) or not isinstance(value, str):
                raise CaptureError("headers must map strings to strings")
            out.append((key, value))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CaptureError):
            raise
        raise CaptureError("headers must be an object of strings or a list of pairs") from None
    return tuple(out)


def _int(value: object, name: str) -> int:
    """A count or a size the browser measured: a whole number from 0 to :data:`MAX_DOM_COUNT`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaptureError(f"dom.{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CaptureError(f"dom.{name} must be a finite number")
    if not 0 <= value <= MAX_DOM_COUNT:
        raise CaptureError(f"dom.{name} must be between 0 and {MAX_DOM_COUNT}, not {value!r}")
    return int(value)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise CaptureError(f"dom.{name} must be true or false")
    return value


def _dom_from(dom: DomFacts | Mapping[str, Any], limits: CaptureLimits) -> DomFacts:
    if isinstance(dom, DomFacts):
        return dom
    if not isinstance(dom, Mapping):
        raise CaptureError("dom must be an object")
    forms_raw = dom.get("forms", [])
    iframes_raw = dom.get("iframes", [])
    if not isinstance(forms_raw, list) or not isinstance(iframes_raw, list):
        raise CaptureError("dom.forms and dom.iframes must be lists")
    forms = []
    for i, f in enumerate(forms_raw[: limits.max_dom_items]):
        if not isinstance(f, Mapping):
            raise CaptureError(f"dom.forms[{i}] must be an object")
        forms.append(
            FormFact(
                action=str(f.get("action") or ""),
                method=str(f.get("method") or "get").lower(),
                has_password=_bool(f.get("has_password", False), f"forms[{i}].has_password"),
                has_card=_bool(f.get("has_card", False), f"forms[{i}].has_card"),
                input_count=_int(f.get("input_count", 0), f"forms[{i}].input_count"),
                hidden=_bool(f.get("hidden", False), f"forms[{i}].hidden"),
            )
        )
    iframes = []
    for i, f in enumerate(iframes_raw[: limits.max_dom_items]):
        if not isinstance(f, Mapping):
            raise CaptureError(f"dom.iframes[{i}] must be an object")
        width, height = f.get("width"), f.get("height")
        iframes.append(
            IframeFact(
                src=str(f.get("src") or ""),
                hidden=_bool(f.get("hidden", False), f"iframes[{i}].hidden"),
                width=None if width is None else _int(width, f"iframes[{i}].width"),
                height=None if height is None else _int(height, f"iframes[{i}].height"),
            )
        )
    meta_refresh = dom.get("meta_refresh")
    auto_download = dom.get("auto_download")
    text_excerpt = dom.get("text_excerpt", "")
    for name, value in (("meta_refresh", meta_refresh), ("auto_download", auto_download)):
        if value is not None and not isinstance(value, str):
            raise CaptureError(f"dom.{name} must be a string")
    if not isinstance(text_excerpt, str):
        raise CaptureError("dom.text_excerpt must be a string")
    return DomFacts(
        forms=tuple(forms),
        iframes=tuple(iframes),
        meta_refresh=meta_refresh,
        element_count=_int(dom.get("element_count", 0), "element_count"),
        link_count=_int(dom.get("link_count", 0), "link_count"),
        external_link_count=_int(dom.get("external_link_count", 0), "external_link_count"),
        resource_count=_int(dom.get("resource_count", 0), "resource_count"),
        external_resource_count=_int(
            dom.get("external_resource_count", 0), "external_resource_count"
        ),
        right_click_disabled=_bool(dom.get("right_click_disabled", False), "right_click_disabled"),
        auto_download=auto_download,
        text_excerpt=text_excerpt[:20_000],
    )
