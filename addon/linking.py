"""Linking external scripts to the pages that loaded them.

A browser fetches a page, then its scripts, as separate requests. To let a page's verdict name
the script that made it malicious, and a script's scan point at its page, we remember:

* recent pages, by URL and by client connection (with their scan ids);
* recent script texts, by URL (bounded in total size).

A script request is linked to its page by, in order: the ``Referer`` header when it names a page
we saw, else the latest page on the same client connection (HTTP/2 multiplexes a page and its
scripts on one connection; HTTP/1.1 browsers reuse it), else the latest page of the ``Referer``'s
origin (a cross-origin script request carries only the page's origin under browsers' default
``strict-origin-when-cross-origin`` policy). ``Sec-Fetch-Dest: script`` tells us the
request is for a script even when the content type lies.

When a page arrives whose ``<script src>`` we have already seen (a reload, or another page of the
site), the script's text goes into the page's capture, so the engine's evidence for the page names
the script (``script https://...``). A script already judged MALICIOUS is the exception: its text
stays out of the page's capture and its verdict is folded into the page's instead
(:func:`~malwaresnipper.engine.verdict.with_malicious_scripts`), so that a page is judged (and, in
block mode, served with the script replaced) the same way whether or not the script's verdict was
known when the page arrived.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from ..engine.verdict import ScriptVerdict

MAX_PAGES = 2_000
MAX_SCRIPT_BYTES = 32 * 1024 * 1024
MAX_SCRIPTS_PER_PAGE = 20

_SCRIPT_SRC = re.compile(r"""<script\b[^>]*?\bsrc\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s>]+))""", re.I)
_BASE_HREF = re.compile(r"""<base\b[^>]*?\bhref\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s>]+))""", re.I)


@dataclass(frozen=True, slots=True)
class PageRef:
    url: str
    scan_id: str | None
    #: the page's scan id to come, while its submission is in flight (a monitor-mode page goes on
    #: before its record is committed, so its scripts can arrive first); None when not known
    submitted: asyncio.Future[str | None] | None = None

    async def wait_scan_id(self, timeout: float) -> str | None:
        """The page's scan id, waiting up to ``timeout`` for its submission to be recorded."""
        if self.scan_id is not None or self.submitted is None:
            return self.scan_id
        try:
            return await asyncio.wait_for(asyncio.shield(self.submitted), timeout)
        except TimeoutError:
            return None


def _strip_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` ('' when it has none)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}" if parts.netloc else ""


def script_urls(html: str, page_url: str, limit: int = MAX_SCRIPTS_PER_PAGE) -> list[str]:
    """Absolute URLs of the page's external scripts (http/https only), in page order."""
    base = page_url
    match = _BASE_HREF.search(html[:20_000])
    if match:
        base = urljoin(page_url, next(g for g in match.groups() if g))
    out: list[str] = []
    for m in _SCRIPT_SRC.finditer(html):
        raw = next(g for g in m.groups() if g).strip()
        try:
            url = urljoin(base, raw)
            if urlsplit(url).scheme not in ("http", "https"):
                continue
        except ValueError:
            continue
        url = _strip_fragment(url)
        if url not in out:
            out.append(url)
        if len(out) >= limit:
            break
    return out


class PageLinker:
    """Bounded memory of recent pages and script texts (see the module docstring)."""

    def __init__(self, max_pages: int = MAX_PAGES, max_script_bytes: int = MAX_SCRIPT_BYTES) -> None:
        self.max_pages = max_pages
        self.max_script_bytes = max_script_bytes
        self._pages: OrderedDict[str, PageRef] = OrderedDict()
        self._by_client: OrderedDict[str, PageRef] = OrderedDict()
        self._by_origin: OrderedDict[str, PageRef] = OrderedDict()
        self._scripts: OrderedDict[str, str] = OrderedDict()
        self._script_bytes = 0
        #: script URL -> its MALICIOUS verdict (the latest verdict of that URL said so)
        self._malicious: OrderedDict[str, ScriptVerdict] = OrderedDict()

    def page_seen(self, url: str, client_id: str, scan_id: str | None = None,
                  submitted: asyncio.Future[str | None] | None = None) -> None:
        ref = PageRef(_strip_fragment(url), scan_id, submitted if scan_id is None else None)
        for table, key in ((self._pages, ref.url), (self._by_client, client_id),
                           (self._by_origin, _origin(ref.url))):
            table[key] = ref
            table.move_to_end(key)
            while len(table) > self.max_pages:
                table.popitem(last=False)

    def page_for(self, *, referer: str | None, client_id: str | None) -> PageRef | None:
        """The page a script (or sub-resource) request belongs to, or None."""
        if referer:
            ref = self._pages.get(_strip_fragment(referer))
            if ref is not None:
                return ref
        if client_id is not None:
            ref = self._by_client.get(client_id)
            if ref is not None:
                return ref
        if referer:
            ref = self._by_origin.get(_origin(referer))
            if ref is not None:
                return ref
        if referer and urlsplit(referer).scheme in ("http", "https"):
            return PageRef(_strip_fragment(referer), None)
        return None

    def script_seen(self, url: str, text: str) -> None:
        url = _strip_fragment(url)
        old = self._scripts.pop(url, None)
        if old is not None:
            self._script_bytes -= len(old)
        if len(text) > self.max_script_bytes // 4:
            return
        self._scripts[url] = text
        self._script_bytes += len(text)
        while self._script_bytes > self.max_script_bytes and self._scripts:
            _, dropped = self._scripts.popitem(last=False)
            self._script_bytes -= len(dropped)

    def script_judged(self, url: str, verdict: ScriptVerdict | None) -> None:
        """Remember a script URL's latest verdict: ``verdict`` when MALICIOUS, None otherwise."""
        url = _strip_fragment(url)
        self._malicious.pop(url, None)
        if verdict is not None:
            self._malicious[url] = verdict
            while len(self._malicious) > self.max_pages:
                self._malicious.popitem(last=False)

    def malicious_scripts(self, html: str, page_url: str) -> list[ScriptVerdict]:
        """The page's external scripts whose latest verdict was MALICIOUS."""
        if not self._malicious:
            return []
        return [v for url in script_urls(html, page_url) if (v := self._malicious.get(url)) is not None]

    def known_scripts(self, html: str, page_url: str) -> list[dict[str, object]]:
        """The page's external scripts whose text we already have, as Capture script mappings
        (not those judged MALICIOUS: their verdicts are folded into the page's)."""
        if not self._scripts:
            return []
        out: list[dict[str, object]] = []
        for url in script_urls(html, page_url):
            if url in self._malicious:
                continue
            text = self._scripts.get(url)
            if text is not None:
                out.append({"url": url, "text": text, "inline": False})
        return out
