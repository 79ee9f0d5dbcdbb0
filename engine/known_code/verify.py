"""Check the fingerprint's lexer against a real JavaScript parser (tree-sitter).

The fingerprint drops comments and whitespace, so it must find them where the browser does. Its
lexer is one regular expression that decides "regular expression or division?" from the token
before ``/``; a full parser decides from the grammar. :func:`verify` parses the text with
tree-sitter (tree-sitter-javascript, C speed, error-tolerant) and compares where both put every
comment, string, template literal and regular expression literal. Any difference, a parse error,
an HTML-like comment, a hash-bang line or JSX (which browsers do not run) fails the check.

Used twice: the database builder admits only library files that pass (so every known chunk was
lexed as the browser lexes it), and the matcher checks a script before it skips the known parts
of a script that also holds foreign code (foreign code could otherwise be written to put the
browser in another lexical state than the lexer at the start of a known part). The unmodified
fast path needs no parse: a text with the same canonical form as a verified file is lexed alike
(see :mod:`.canonical`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .canonical import _LEXER_OFFSETS, BLOCK_COMMENT, LINE_COMMENT, RESERVED

_COMMENT = re.compile(f"{BLOCK_COMMENT}|{LINE_COMMENT}")
_QUERY = """
(comment) @comment
(html_comment) @html_comment
(hash_bang_line) @hash_bang_line
(string) @string
(template_string) @template
(regex) @regex
(jsx_element) @jsx
(jsx_self_closing_element) @jsx
"""
#: Node kinds the lexer never produces: their presence alone fails the check.
_UNSUPPORTED = ("html_comment", "hash_bang_line", "jsx")


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether the lexer and the parser agree on a text, and the first difference if not."""

    ok: bool
    reason: str = ""


class ParserUnavailable(RuntimeError):
    """tree-sitter or its JavaScript grammar is not installed."""


@lru_cache(maxsize=1)
def _parser() -> tuple[Any, Any]:
    try:
        import tree_sitter
        import tree_sitter_javascript
    except ImportError as exc:  # pragma: no cover - both are dependencies of the package
        raise ParserUnavailable(f"tree-sitter is not installed: {exc}") from None
    language = tree_sitter.Language(tree_sitter_javascript.language())
    return tree_sitter.Parser(language), tree_sitter.Query(language, _QUERY)


def lexer_spans(text: str) -> set[tuple[str, int, int]]:
    """(kind, start, end) in characters of every comment, string, template and regex the lexer sees.

    Offsets are in ``text`` (the lexer runs on ``";" + text``; the virtual ``;`` is taken off).
    """
    spans: set[tuple[str, int, int]] = set()
    pos = -1
    for s1, _g, t, s2, r in _LEXER_OFFSETS.findall(";" + text):
        for match in _COMMENT.finditer(s1):
            spans.add(("comment", pos + match.start(), pos + match.end()))
        pos += len(s1)
        if len(t) > 1 and t[0] in "'\"":
            spans.add(("string", pos, pos + len(t)))
        elif len(t) > 1 and t[0] == "`":
            spans.add(("template", pos, pos + len(t)))
        elif len(t) > 2 and t[0] == "/":
            spans.add(("regex", pos, pos + len(t)))
        pos += len(t)
        for match in _COMMENT.finditer(s2):
            spans.add(("comment", pos + match.start(), pos + match.end()))
        pos += len(s2)
        if r:
            spans.add(("regex", pos, pos + len(r)))
        pos += len(r)
    return spans


def _byte_offsets(text: str) -> np.ndarray | None:
    """Byte offset (UTF-8) of each character and of the end, or None for ASCII text."""
    if text.isascii():
        return None
    codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    widths = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    offsets = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    return offsets


def parser_spans(text: str) -> tuple[set[tuple[str, int, int]], str]:
    """The same spans as the parser sees them, in bytes, and a reason if the parse is unusable."""
    parser, query = _parser()
    import tree_sitter

    data = text.encode("utf-8", "surrogatepass")
    tree = parser.parse(data)
    if tree.root_node.has_error:
        return set(), "the parser finds a syntax error"
    captures = tree_sitter.QueryCursor(query).captures(tree.root_node)
    for kind in _UNSUPPORTED:
        if captures.get(kind):
            node = captures[kind][0]
            return set(), f"{kind.replace('_', ' ')} at byte {node.start_byte}"
    templates = sorted((n.start_byte, n.end_byte) for n in captures.get("template", ()))
    outer: list[tuple[int, int]] = []
    for start, end in templates:
        if not outer or start >= outer[-1][1]:
            outer.append((start, end))
    starts = [s for s, _ in outer]

    def nested(start: int) -> bool:
        # Inside an outer template literal (strings, comments and regexes in ``${}``).
        import bisect

        i = bisect.bisect_right(starts, start) - 1
        return i >= 0 and outer[i][0] < start < outer[i][1]

    spans: set[tuple[str, int, int]] = {("template", s, e) for s, e in outer}
    for kind in ("comment", "string", "regex"):
        for node in captures.get(kind, ()):
            if not nested(node.start_byte):
                spans.add((kind, node.start_byte, node.end_byte))
    return spans, ""


def verify(text: str) -> Verification:
    """Do the fingerprint's lexer and tree-sitter agree on every comment, string and regex?"""
    if any(ch in text for ch in RESERVED):
        return Verification(False, "reserved character")
    theirs, problem = parser_spans(text)
    if problem:
        return Verification(False, problem)
    ours = lexer_spans(text)
    offsets = _byte_offsets(text)
    if offsets is not None:
        ours = {(kind, int(offsets[s]), int(offsets[e])) for kind, s, e in ours}
    if ours == theirs:
        return Verification(True)
    # The first difference by position; ties broken by side and kind, so the reason (which the
    # database records) does not depend on set order, which varies between processes.
    first = min(ours ^ theirs, key=lambda span: (span[1], span not in ours, span[0], span[2]))
    side = "lexer" if first in ours else "parser"
    return Verification(False, f"only the {side} sees a {first[0]} at byte {first[1]}")
