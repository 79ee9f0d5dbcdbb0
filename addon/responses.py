"""How a response body becomes a :class:`Capture` (whether to scan it is :mod:`.scanplan`'s call).

Kept free of mitmproxy types (plain strings and bytes in) so it is easy to test and identical on
mitmproxy 11 and 12.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..engine.capture import Capture, CaptureLimits, Source
from .decode import BodyTooLarge, DecodeError, decode_content, decode_text, sniff
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
    #: set aside (comments, whitespace) while decoding a body too big to hold (bigbody.py)
    reductions: tuple[str, ...] = ()
    #: what the scan could not see (a corrupt coding's tail, the middle or end of a huge body)
    truncations: tuple[str, ...] = ()


def decode_body(
    raw: bytes,
    *,
    plan: ScanPlan,
    content_encoding: Iterable[str] | str | None,
    url_path: str,
    cap: int,
    work_cap: int | None = None,
    keep_chars: int = 5_000_000,
) -> DecodedBody | None:
    """The body as text when ``plan`` says the browser runs or renders it, else None.

    Raises DecodeError, also when a corrupt coding leaves nothing to read. A body that decodes
    to more than ``cap`` bytes raises BodyTooLarge, unless ``work_cap`` is given: then up to
    ``work_cap`` decoded bytes are streamed through the reducer and at most ``keep_chars``
    characters kept (:mod:`.bigbody`).
    """
    if plan.kind is None:
        return None
    try:
        decoded = decode_content(raw, content_encoding, cap)
    except BodyTooLarge:
        if work_cap is None:
            raise
        from .bigbody import decode_big_body

        big = decode_big_body(raw, plan=plan, content_encoding=content_encoding, url_path=url_path,
                              work_cap=work_cap, keep_chars=keep_chars)
        return DecodedBody(big.kind, big.text, big.charset, big.reductions, big.truncations) if big else None
    if decoded.error is not None and not decoded.data:
        raise DecodeError(decoded.error)
    kind = resolve_kind(plan, decoded.data[:1024], url_path)
    if kind is None:
        return None
    text = decode_text(decoded.data, plan.charset, kind=kind)
    truncations: tuple[str, ...] = ()
    if decoded.error is not None:
        truncations = (f"{decoded.error}: only the {len(decoded.data)} bytes decoded before it were scanned",)
    return DecodedBody(kind, text.text, text.charset, (), truncations)


def resolve_kind(plan: ScanPlan, head: bytes, url_path: str) -> str | None:
    """``"html"`` or ``"js"``: the plan's kind, or what the first decoded bytes say when the plan
    leaves it to sniffing."""
    if plan.kind == "sniff":
        return sniff(head, url_path=url_path, document=plan.document)
    return plan.kind


def body_looks_like_script(plan: ScanPlan) -> bool:
    """Whether a body not read yet will be handled as a script (to refuse it with an inert script
    rather than a block page)."""
    return plan.kind == "js"


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
) -> Capture:
    """A proxy Capture: a page with its HTML, or one external script. Raises CaptureError."""
    headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    common = dict(source=Source.PROXY, headers=headers, content_type=content_type, limits=limits,
                  reductions=body.reductions, truncations=body.truncations)
    if body.kind == "html":
        return Capture.build(url, html=body.text, title=page_title(body.text), scripts=known_scripts or (),
                             **common)  # type: ignore[arg-type]
    return Capture.build(
        url,
        scripts=[{"url": url, "text": body.text, "inline": False}],
        page_url=page_url if page_url and page_url.startswith(("http://", "https://")) else None,
        **common,  # type: ignore[arg-type]
    )
