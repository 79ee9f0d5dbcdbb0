"""Which responses the gateway scans, and how a response body becomes a :class:`Capture`.

Kept free of mitmproxy types (plain strings and bytes in) so it is easy to test and identical on
mitmproxy 11 and 12.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..engine.capture import Capture, CaptureLimits, Source
from .decode import (
    BodyTooLarge,
    HTML_TYPES,
    JS_TYPES,
    SNIFF_TYPES,
    body_kind,
    decode_content,
    decode_text,
    is_binary_type,
    mime_type,
)

_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.I | re.S)


def wants_buffering(content_type: str | None, content_length: int | None, cap: int) -> str | None:
    """None when the body should be buffered for a scan, else why it streams through unscanned."""
    if content_length is not None and content_length > cap:
        return "too_large"
    if is_binary_type(content_type):
        return "not_html_js"
    mime = mime_type(content_type)
    if mime in HTML_TYPES or mime in JS_TYPES or mime in SNIFF_TYPES:
        return None
    # Other text types (xml, svg, ...) are not HTML or JS either.
    return "not_html_js"


def body_looks_like_script(content_type: str | None, url_path: str, fetch_dest: str) -> bool:
    """Whether a body not read yet will be handled as a script (to refuse it with an inert script
    rather than a block page)."""
    return body_kind(content_type, b"", url_path=url_path, fetch_dest=fetch_dest) == "js"


@dataclass(frozen=True, slots=True)
class DecodedBody:
    kind: str  # "html" or "js"
    text: str
    charset: str
    #: set aside (comments, whitespace) and cut while decoding a body too big to hold (bigbody.py)
    reductions: tuple[str, ...] = ()
    truncations: tuple[str, ...] = ()


def decode_body(
    raw: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    url_path: str,
    fetch_dest: str,
    cap: int,
    work_cap: int | None = None,
    keep_chars: int = 5_000_000,
) -> DecodedBody | None:
    """The body as text when it is HTML or JS, else None. Raises DecodeError.

    A body that decodes to more than ``cap`` bytes raises BodyTooLarge, unless ``work_cap`` is
    given: then up to ``work_cap`` decoded bytes are streamed through the reducer and at most
    ``keep_chars`` characters kept (:mod:`.bigbody`).
    """
    mime = mime_type(content_type)
    if mime not in HTML_TYPES and mime not in JS_TYPES and mime not in SNIFF_TYPES:
        return None
    try:
        data = decode_content(raw, content_encoding, cap)
    except BodyTooLarge:
        if work_cap is None:
            raise
        from .bigbody import decode_big_body

        big = decode_big_body(raw, content_type=content_type, content_encoding=content_encoding,
                              url_path=url_path, fetch_dest=fetch_dest, work_cap=work_cap, keep_chars=keep_chars)
        return DecodedBody(big.kind, big.text, big.charset, big.reductions, big.truncations) if big else None
    kind = body_kind(content_type, data[:1024], url_path=url_path, fetch_dest=fetch_dest)
    if kind is None:
        return None
    decoded = decode_text(data, content_type, kind=kind)
    return DecodedBody(kind, decoded.text, decoded.charset)


def page_title(html: str) -> str | None:
    match = _TITLE.search(html[:65_536])
    if not match:
        return None
    title = " ".join(match.group(1).split())
    return title[:300] or None


def build_capture(
    url: str,
    body: DecodedBody,
    *,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    content_type: str | None,
    limits: CaptureLimits,
    known_scripts: list[dict[str, object]] | None = None,
    page_url: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> Capture:
    """A proxy Capture: a page with its HTML, or one external script. Raises CaptureError."""
    headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if body.kind == "html":
        return Capture.build(
            url,
            source=Source.PROXY,
            html=body.text,
            title=page_title(body.text),
            scripts=known_scripts or (),
            headers=headers,
            content_type=content_type,
            limits=limits,
            extra=extra,
            reductions=body.reductions,
            truncations=body.truncations,
        )
    return Capture.build(
        url,
        source=Source.PROXY,
        scripts=[{"url": url, "text": body.text, "inline": False}],
        headers=headers,
        content_type=content_type,
        page_url=page_url if page_url and page_url.startswith(("http://", "https://")) else None,
        limits=limits,
        extra=extra,
        reductions=body.reductions,
        truncations=body.truncations,
    )
