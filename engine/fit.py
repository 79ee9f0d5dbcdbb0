"""Fitting an oversized page or script into the analysis limits without handing attackers a blind spot.

Cutting at a fixed prefix lets a page hide its payload behind 2 MB of comment. So content over
its cap is first *reduced* (what cannot change behaviour is set aside: HTML comments and runs of
whitespace, see :mod:`.features.markup`; for scripts only whitespace runs, since telling a JS
comment from a regex literal needs a parser), and only what is still too long is *cut*, keeping
the head and the tail (payloads are injected at either end). A reduction is a note; a cut makes
the verdict incomplete (never BENIGN, see :mod:`.verdict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .features.markup import HtmlReducer, collapse_whitespace

#: Share of a cut capture kept from the start (the rest comes from the end).
HEAD_SHARE = 0.5
#: How far a cut may move to land on a tag or line boundary.
_ALIGN = 4096
_SCRIPT_OPEN = re.compile(r"<script[\t\n\f\r />]", re.I | re.A)
_SCRIPT_CLOSE = re.compile(r"</script[\t\n\f\r />]", re.I | re.A)


@dataclass(frozen=True, slots=True)
class Fitted:
    """The text to analyse, what was set aside (notes) and what was cut (incomplete)."""

    text: str
    reductions: tuple[str, ...] = ()
    truncations: tuple[str, ...] = ()


def reduce_html(html: str) -> tuple[str, str | None]:
    """``html`` without comments and whitespace runs, and a note saying what went (or None)."""
    reducer = HtmlReducer()
    text = reducer.feed(html) + reducer.close()
    if len(text) == len(html):
        return html, None
    return text, (
        f"{len(html) - len(text)} characters of comments ({reducer.comments_removed}) and whitespace "
        "were set aside"
    )


def fit_html(html: str, cap: int, what: str = "page HTML") -> Fitted:
    """Reduce ``html`` and, if it is still over ``cap`` characters, keep its head and tail."""
    if len(html) <= cap:
        return Fitted(html)
    reduced, note = reduce_html(html)
    reductions = (f"{what}: {note}",) if note else ()
    if len(reduced) <= cap:
        return Fitted(reduced, reductions)
    text, left_out = head_and_tail(reduced, cap, html=True)
    cut = (f"{what} of {len(html)} characters ({len(reduced)} after reduction): the middle "
           f"{left_out} characters were not analysed ({len(reduced) - left_out} kept from its start and end)")
    return Fitted(text, reductions, (cut,))


def fit_script(text: str, cap: int, where: str) -> Fitted:
    """The same for a script: whitespace runs collapsed, then head and tail."""
    if len(text) <= cap:
        return Fitted(text)
    reduced = collapse_whitespace(text)
    reductions = (f"{where}: {len(text) - len(reduced)} characters of whitespace were set aside",) if len(
        reduced) < len(text) else ()
    if len(reduced) <= cap:
        return Fitted(reduced, reductions)
    cut, left_out = head_and_tail(reduced, cap, html=False)
    note = (f"{where} of {len(text)} characters: the middle {left_out} characters were not analysed "
            f"({len(reduced) - left_out} kept from its start and end)")
    return Fitted(cut, reductions, (note,))


def head_and_tail(text: str, cap: int, *, html: bool) -> tuple[str, int]:
    """The first and last parts of ``text`` (at most ``cap`` characters together), cut at a tag
    (HTML) or line (script) boundary nearby; and how many characters were left out.

    In HTML a cut inside an inline script closes it in the head and reopens it in the tail, so
    both parts are still read as script.
    """
    marker = "\n<!-- malwaresnipper: {} characters left out -->\n" if html else "\n/* malwaresnipper: {} characters left out */\n"
    budget = cap - len(marker) - 40
    if budget < 1000:  # a tiny cap (tests, odd configs): no room for a marker or for alignment
        head_end = cap // 2
        left_out = len(text) - cap
        return text[:head_end] + text[len(text) - (cap - head_end):], left_out
    head_end = int(budget * HEAD_SHARE)
    tail_start = len(text) - (budget - head_end)
    boundary = "<" if html else "\n"
    aligned = text.rfind(boundary, max(0, head_end - _ALIGN), head_end)
    if aligned > 0:
        head_end = aligned
    aligned = text.find(boundary, tail_start, tail_start + _ALIGN)
    if aligned >= 0:
        tail_start = aligned
    head, tail = text[:head_end], text[tail_start:]
    if html:
        if _inside_script(text, head_end):
            head += "</script>"
        if _inside_script(text, tail_start):
            tail = "<script>" + tail
    left_out = tail_start - head_end
    return head + marker.format(left_out) + tail, left_out


def _inside_script(text: str, pos: int) -> bool:
    """Whether ``pos`` is inside an inline script (its last opening comes after its last close)."""
    window_start = max(0, pos - 8_000_000)
    last_open = last_close = -1
    for m in _SCRIPT_OPEN.finditer(text, window_start, pos):
        last_open = m.start()
    if last_open < 0:
        return False
    for m in _SCRIPT_CLOSE.finditer(text, last_open, pos):
        last_close = m.start()
    return last_close < last_open
