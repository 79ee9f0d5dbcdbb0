"""How a response body becomes a :class:`Capture` (whether to scan it is :mod:`.scanplan`'s call).

Kept free of mitmproxy types (plain strings and bytes in) so it is easy to test and identical on
mitmproxy 11 and 12.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..engine.capture import Capture, CaptureLimits, Source
from .decode import DecodeError, decode_content, decode_text, sniff
from .scanplan import ScanPlan

_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.I | re.S)


def wants_buffering(plan: ScanPlan, content_length: int | None, cap: int) -> str | None:
    """None when the body should be buffered for a scan, else why it streams through unscanned."""
    if plan.kind is None:
        return plan.reason
    if content_length is not None and content_length > cap:
        return "too_large"
    return None


@dataclass(frozen=True, slots=True)
class DecodedBody:
    kind: str  # "html" or "js"
    text: str
    charset: str
    #: what the scan could not see (a corrupt coding's tail), shown as truncations in the verdict
    notes: tuple[str, ...] = ()


def decode_body(
    raw: bytes,
    *,
    plan: ScanPlan,
    content_encoding: Iterable[str] | str | None,
    url_path: str,
    cap: int,
) -> DecodedBody | None:
    """The body as text when ``plan`` says the browser runs or renders it, else None.

    Raises DecodeError (incl. BodyTooLarge), also when a corrupt coding leaves nothing to read.
    """
    if plan.kind is None:
        return None
    decoded = decode_content(raw, content_encoding, cap)
    if decoded.error is not None and not decoded.data:
        raise DecodeError(decoded.error)
    kind = plan.kind
    if kind == "sniff":
        kind = sniff(decoded.data[:1024], url_path=url_path, document=plan.document)
        if kind is None:
            return None
    text = decode_text(decoded.data, plan.charset, kind=kind)
    notes: tuple[str, ...] = ()
    if decoded.error is not None:
        notes = (f"{decoded.error}: only the {len(decoded.data)} bytes decoded before it were scanned",)
    return DecodedBody(kind, text.text, text.charset, notes)


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
    capture = _build(url, body, headers=headers, content_type=content_type, limits=limits,
                     known_scripts=known_scripts, page_url=page_url, extra=extra)
    if body.notes:
        capture = dataclasses.replace(capture, truncations=capture.truncations + body.notes)
    return capture


def _build(url: str, body: DecodedBody, *, headers: list[tuple[str, str]], content_type: str | None,
           limits: CaptureLimits, known_scripts: list[dict[str, object]] | None, page_url: str | None,
           extra: Mapping[str, object] | None) -> Capture:
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
    )
