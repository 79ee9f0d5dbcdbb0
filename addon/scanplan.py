"""What to scan: the decision the browser makes about running or rendering a response.

An attacker chooses the response headers, so the gateway cannot go by what a response says it
is; it must go by what the browser will do with it. The browser decides from two things:

* the **request's** ``Sec-Fetch-Dest``, which the browser sets and a page cannot (it is a
  forbidden header name for ``fetch()``): a ``<script src>`` is ``script``, a navigation
  ``document``, an ``<iframe>`` ``iframe``, an ``<img>`` ``image``, ``fetch()`` ``empty``;
* the **response's** MIME type as Fetch extracts it from every ``Content-Type`` value (the last
  valid one wins, :mod:`~malwaresnipper.addon.mime`), and ``X-Content-Type-Options: nosniff``.

The rules, checked against Chromium in tests/integration/test_proxy_evasion.py:

* **script-like** destinations run the body as JavaScript whatever its type (JSON, CSS, a font,
  XML, a ZIP, a PDF, HTML, text, no type at all) unless the type is ``image/*``, ``audio/*``,
  ``video/*`` or ``text/csv``, or ``nosniff`` is set and the type is not a JavaScript type
  (Fetch's "blocked due to MIME type" and "blocked due to nosniff"). Such bodies are scanned
  as **scripts**.
* **document** destinations render HTML and every XML type (``image/svg+xml``,
  ``application/xhtml+xml``, ``text/xml``, ``+xml``), which can hold ``<script>``: scanned as
  **pages**. A missing, unparsable or generic type is sniffed for markup.
* destinations that never run or render a document (``image``, ``font``, ``style``, ...) are
  not scanned whatever the type says (an SVG in an ``<img>`` runs no script).
* no ``Sec-Fetch-Dest`` (curl, old clients), ``empty`` (``fetch()``) or one we do not know:
  HTML and XML types as pages, JavaScript types as scripts, generic types sniffed.
* **error responses of sub-resources** (status 400 and up), which browsers neither render nor
  run: a request without ``Sec-Fetch-Dest`` (Chromium sends none to a plain-HTTP site) whose
  ``Accept`` asks for an image first is an ``<img>`` or the favicon, so its error page (a
  server's HTML "404 Not Found") is not scanned as a page; and a sub-resource's error answer of
  no type or a generic one is not sniffed. An attacker cannot use this to hide a page: a
  navigation's ``Accept`` asks for HTML first, the browser's ``Sec-Fetch-Dest`` wins when sent,
  and a successful (2xx/3xx) answer is planned as before whatever the ``Accept``.

:func:`plan_scan` is the one decision: ``responseheaders`` asks it whether to buffer the body
and ``response`` asks it how to read the body, so the two hooks cannot disagree. Because the
decision depends on the destination, a response whose plan would differ for another
destination gets ``Vary: Sec-Fetch-Dest`` (:func:`depends_on_destination`): otherwise the
browser's HTTP cache could hand an ``<img>``'s unscanned HTML to a later ``<iframe>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .mime import MimeType, extract_mime_type, split_header_values

#: Fetch's script-like destinations (plus Chromium's shared storage worklet).
SCRIPT_DESTS = frozenset({"script", "worker", "sharedworker", "serviceworker", "audioworklet",
                          "paintworklet", "sharedstorageworklet"})
#: Destinations that display a document (XSLT output too).
DOCUMENT_DESTS = frozenset({"document", "iframe", "frame", "fencedframe", "embed", "object", "xslt"})
#: Destinations of a document shown inside another (what a page's resources list as frames).
FRAME_DESTS = frozenset({"iframe", "frame", "fencedframe", "embed", "object"})
#: Destinations whose body is never run as script nor rendered as a document.
INERT_DESTS = frozenset({"image", "font", "style", "audio", "video", "track", "manifest", "report", "json"})
#: Types servers use when they do not know better: the body decides (sniffing).
GENERIC_TYPES = frozenset({"text/plain", "application/octet-stream", "application/unknown", "unknown/unknown"})


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """How to treat one response."""

    #: "html" (a page), "js" (a script), "sniff" (decide from the body) or None (not scanned)
    kind: str | None
    #: why, in words a counter can carry: "script", "page", "sniff", "not_run", "not_rendered", ...
    reason: str
    #: the MIME type the browser uses (None: missing or unparsable)
    mime: MimeType | None
    #: the request's Sec-Fetch-Dest ("" when absent)
    dest: str

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of the extracted type (a label, not yet an encoding)."""
        return self.mime.charset if self.mime is not None else None

    @property
    def document(self) -> bool:
        return self.dest in DOCUMENT_DESTS

    @property
    def signature(self) -> str:
        """What the scanned text depends on besides the bytes (kind, navigation, charset label)."""
        return f"{self.kind}|{int(self.document)}|{self.charset or ''}"


def header_values(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every value of header ``name``, in order, isomorphic-decoded as Fetch reads header bytes."""
    name = name.lower()
    return [value.decode("latin-1") for key, value in fields if key.lower() == name]


def is_nosniff(values: Sequence[str]) -> bool:
    """Fetch "determine nosniff" over the ``X-Content-Type-Options`` values."""
    if not values:
        return False
    first = split_header_values(", ".join(values))[0]
    return first.lower() == "nosniff"


def first_accepted(accept: str) -> str:
    """The first media range of an ``Accept`` header, lower case ('' when there is none)."""
    return accept.split(",", 1)[0].split(";", 1)[0].strip().lower()


def plan_scan(content_types: Sequence[str], *, fetch_dest: str = "", nosniff: bool = False,
              accept: str = "", status: int = 200) -> ScanPlan:
    """The scan decision for a response (see the module docstring)."""
    dest = (fetch_dest or "").strip().lower()
    mime = extract_mime_type(content_types)
    if status >= 400 and dest not in DOCUMENT_DESTS:
        wanted = first_accepted(accept)
        if not dest and wanted.startswith("image/"):
            return ScanPlan(None, "image_error", mime, dest)
        # Without a destination, only an Accept that does not ask for a document says "sub-resource".
        subresource = bool(dest) or (wanted not in ("", "*/*") and wanted not in ("text/html", "application/xhtml+xml"))
        if subresource and dest not in SCRIPT_DESTS and (mime is None or mime.essence in GENERIC_TYPES):
            return ScanPlan(None, "error_response", mime, dest)
    if dest in SCRIPT_DESTS:
        if mime is not None and (mime.is_image() or mime.type in ("audio", "video") or mime.essence == "text/csv"):
            return ScanPlan(None, "not_run", mime, dest)
        if nosniff and (mime is None or not mime.is_javascript()):
            return ScanPlan(None, "not_run", mime, dest)
        return ScanPlan("js", "script", mime, dest)
    if dest in INERT_DESTS:
        return ScanPlan(None, "not_rendered", mime, dest)
    if mime is None or mime.essence in GENERIC_TYPES:
        return ScanPlan("sniff", "sniff", mime, dest)
    if mime.is_html() or mime.is_xml():
        return ScanPlan("html", "page", mime, dest)
    if mime.is_javascript():
        return ScanPlan("js", "script", mime, dest)
    return ScanPlan(None, "not_html_js", mime, dest)


_PROBE_DESTS = ("", "script", "document", "image")


def depends_on_destination(content_types: Sequence[str], *, nosniff: bool = False) -> bool:
    """True when another destination would scan this response differently (needs ``Vary``)."""
    return _depends_on_destination(tuple(content_types), nosniff)


@lru_cache(maxsize=1024)
def _depends_on_destination(content_types: tuple[str, ...], nosniff: bool) -> bool:
    # one plan per probed destination for every browser response: remembered per header value
    kinds = {plan_scan(content_types, fetch_dest=dest, nosniff=nosniff).kind for dest in _PROBE_DESTS}
    return len(kinds) > 1
