"""HTML read the way a browser tokenizes it: where tags, comments and raw text really are.

Two jobs need this, and neither may be fooled by markup that looks like something else (a
``<!--`` inside an attribute value or a ``<script>``, a ``</script>`` inside a script's
``<!--<script>`` escape, an unterminated quote):

* :func:`bound_nesting` keeps the HTML parser's work linear. Lexbor (like every HTML5 tree
  builder) walks the stack of open elements or the list of active formatting elements on many
  tokens, so 40,000 nested ``<div>`` cost seconds and 100,000 cost minutes. Browsers stop nesting
  at 512 levels (Chromium's HTML parser attaches deeper elements to the 512th). Here a start tag
  that would nest deeper than :data:`MAX_NESTING` is left out (replaced by a space), and so is its
  end tag; forms, inputs, frames, links and scripts are never left out up to twice the limit
  (they nest only through parser quirks or inside SVG/MathML), so what a phishing or drive-by
  page needs in order to be detected survives. The open-element count is a simulation of
  the tree builder that only ever over-estimates (it pops an element only where the HTML
  standard's rules surely pop it, and counts formatting elements that the parser may re-open).
* :class:`HtmlReducer` sets aside what cannot change what a page does: comments and runs of
  whitespace, streaming (``feed``/``close``) so a decompressed body never has to exist in full.
  It follows the WHATWG tokenizer for tags (quotes only in attribute values), comments (``-->``,
  ``--!>``, ``<!-->``), raw text (``script`` with its escape states, ``style``, ``textarea``,
  ``title``, ``xmp``, ``iframe``, ``noembed``, ``noframes``, ``noscript`` as with scripting on,
  ``plaintext``; the nesting bound follows Lexbor, which parses with scripting off, so
  ``noscript`` holds elements there). Inside SVG and MathML the rules differ (CDATA sections, ``<style>`` is markup),
  so from the first ``<svg``/``<math`` on it removes no comment at all: it never removes
  something that a browser would run or render.

Both treat text they cannot tokenize (an unfinished tag at the end) as text, and never raise.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

#: Deepest nesting kept for the HTML parser (browsers stop at 512; real pages stay far below 100,
#: and the parser's cost grows with tokens x depth).
MAX_NESTING = 256
#: Pages with at most this many "<" are parsed as they are (worst case measured: 3,000 nested
#: formatting elements with distinct attributes cost Lexbor about 35 ms).
SMALL_PAGE_TAGS = 3_000
_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_WS = "\t\n\f\r "
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: A whole start or end tag as the tokenizer reads it: quotes count only in attribute values, an
#: unterminated quoted value runs to the end of the input (then there is no match: EOF in tag).
_ATTR_VALUE = r"""(?>"[^"]*(?:"|\Z)|'[^']*(?:'|\Z)|[^\t\n\f\r >"'][^\t\n\f\r >]*)"""
_ATTRS = (
    r"(?:[\t\n\f\r ]+|/(?!>)|[^\t\n\f\r />][^\t\n\f\r />=]*"
    r"(?>[\t\n\f\r ]*=[\t\n\f\r ]*" + _ATTR_VALUE + r"?)?)*+"
)
_TAG = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)" + _ATTRS + r"(/?)>")
_COMMENT_END = re.compile(r"--!?>")

#: Elements whose content is raw text for an HTML parser with scripting on.
RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"})
_RAW_END = {name: re.compile(r"</" + name + r"[\t\n\f\r />]", re.I | re.A) for name in RAW_TEXT}
#: Script data: its end, and the ``<!--`` / ``-->`` / ``<script`` that change its escape state.
_SCRIPT_EVENT = re.compile(r"</script[\t\n\f\r />]|<!--|-->|<script[\t\n\f\r />]", re.I | re.A)

VOID = frozenset({
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
})
#: HTML elements never left out by the nesting bound: the facts detection needs (forms, links,
#: scripts, frames), all of which a browser's tree builder never nests (a form in a form is
#: ignored, an <a> or <button> closes the open one, raw text holds no elements).
KEEP = frozenset({
    "html", "head", "body", "form", "a", "button", "select", "option", "optgroup", "plaintext", "template",
}) | RAW_TEXT - {"noscript"}
FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u"})
#: "Has an element in scope" stops at these (plus ol/ul for list items, button for paragraphs).
SCOPE = frozenset({
    "applet", "caption", "html", "table", "td", "th", "marquee", "object", "template",
    "mi", "mo", "mn", "ms", "mtext", "annotation-xml", "foreignobject", "desc", "title", "select",
})
SPECIAL = SCOPE | frozenset({
    "address", "area", "article", "aside", "base", "basefont", "bgsound", "blockquote", "body",
    "br", "button", "center", "col", "colgroup", "dd", "details", "dir", "div", "dl", "dt", "embed",
    "fieldset", "figcaption", "figure", "footer", "form", "frame", "frameset", "h1", "h2", "h3",
    "h4", "h5", "h6", "head", "header", "hgroup", "hr", "iframe", "img", "input", "keygen", "li",
    "link", "listing", "main", "menu", "meta", "nav", "noembed", "noframes", "noscript", "ol", "p",
    "param", "plaintext", "pre", "script", "search", "section", "source", "style", "summary",
    "tbody", "textarea", "tfoot", "thead", "tr", "track", "ul", "wbr", "xmp",
})
#: Start tags that close an open <p> (when one is in button scope).
CLOSES_P = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
    "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main", "menu", "nav", "ol",
    "p", "search", "section", "summary", "ul", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "listing",
    "form", "plaintext", "table", "hr", "xmp", "li", "dd", "dt",
})
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
#: End tags that close the element when it is in scope (the "in body" rules).
_SCOPE_CLOSE = frozenset({
    "address", "article", "aside", "blockquote", "button", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "listing", "main", "menu",
    "nav", "ol", "pre", "search", "section", "summary", "ul", "applet", "marquee", "object", "dd", "dt",
})
#: In SVG or MathML these start tags leave foreign content (HTML elements again).
BREAKOUT = frozenset({
    "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em", "embed",
    "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing", "menu", "meta",
    "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong", "strike", "sub", "sup",
    "table", "tt", "u", "ul", "var",
})
#: Integration points: inside these SVG / MathML elements, tags make HTML elements again.
SVG_POINTS = frozenset({"foreignobject", "desc", "title"})
MATH_TEXT_POINTS = frozenset({"mi", "mo", "mn", "ms", "mtext"})
_HTML_NS, _SVG_NS, _MATH_NS = 0, 1, 2
_FONT_BREAKOUT = re.compile(r"[\t\n\f\r /](?:color|face|size)[\t\n\f\r /=>]", re.I | re.A)
_HTML_ENCODING = re.compile(
    r"[\t\n\f\r /]encoding[\t\n\f\r ]*=[\t\n\f\r ]*([\"']?)(?:text/html|application/xhtml\+xml)\1[\t\n\f\r />]", re.I | re.A
)
_TABLE_PARTS = frozenset({"td", "th", "tr", "tbody", "thead", "tfoot", "caption", "colgroup"})
_MARKERS = frozenset({"applet", "object", "marquee", "template", "td", "th", "caption"})
_RAW_OR_PLAIN = RAW_TEXT | {"plaintext"}
#: Raw text for the parse the nesting bound protects: Lexbor runs with scripting off (as the
#: page features always have), so <noscript> holds elements there.
_PARSED_RAW = _RAW_OR_PLAIN - {"noscript"}
_RUBY_PARTS = frozenset({"rb", "rp", "rt", "rtc"})
#: What "generate implied end tags" pops while it is the current node.
_IMPLIED_END = frozenset({"dd", "dt", "li", "optgroup", "option", "p", "rb", "rp", "rt", "rtc"})
#: Start tags with more to them than a push (implicit closes, raw text, foreign content, voids,
#: what the nesting bound keeps, and font/annotation-xml whose attributes matter).
_START_RULES = (CLOSES_P | HEADINGS | _RAW_OR_PLAIN | VOID | KEEP | _TABLE_PARTS
                | _RUBY_PARTS | {"option", "optgroup", "a", "nobr", "svg", "math", "font", "annotation-xml", "td", "th", "tr"})


def lower_name(name: str) -> str:
    """ASCII-only lower case, as the tokenizer does (``str.lower`` would fold ``K`` to ``k``)."""
    return name.translate(_ASCII_LOWER)


# -- tokens --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """A markup declaration: ``kind`` is comment, bogus, cdata, cdata_bogus or doctype."""

    kind: str
    start: int
    end: int
    #: it runs to the end of the input (in a stream, more input may still end it)
    unterminated: bool = False


def _markup_declaration(text: str, pos: int, foreign: bool) -> Token:
    """``<!...``: comment, DOCTYPE, CDATA section (foreign content) or bogus comment."""
    n = len(text)
    if text.startswith("<!--", pos):
        if text.startswith(">", pos + 4):
            return Token("comment", pos, pos + 5)
        if text.startswith("->", pos + 4):
            return Token("comment", pos, pos + 6)
        m = _COMMENT_END.search(text, pos + 4)
        return Token("comment", pos, m.end()) if m else Token("comment", pos, n, True)
    if foreign and text.startswith("<![CDATA[", pos):
        end = text.find("]]>", pos + 9)
        return Token("cdata", pos, end + 3) if end >= 0 else Token("cdata", pos, n, True)
    end = text.find(">", pos + 2)
    kind = "doctype" if text[pos + 2 : pos + 9].lower() == "doctype" else "bogus"
    if text.startswith("<![CDATA[", pos):
        kind = "cdata_bogus"  # a CDATA marker in HTML content is a bogus comment
    return Token(kind, pos, end + 1) if end >= 0 else Token(kind, pos, n, True)


def _end_tag_end(text: str, pos: int) -> int:
    """Where the end tag at ``pos`` ends (its attributes are tokenized like a start tag's)."""
    m = _TAG.match(text, pos)
    return m.end() if m is not None else len(text)


def raw_text_end(text: str, name: str, pos: int) -> tuple[int, int]:
    """Where the raw text of element ``name`` that starts at ``pos`` ends: (content end, after
    the end tag). ``(len, len)`` when it runs to the end of the input."""
    n = len(text)
    if name == "plaintext":
        return n, n
    if name != "script":
        m = _RAW_END[name].search(text, pos)
        if m is None:
            return n, n
        return m.start(), _end_tag_end(text, m.start())
    # Script data and its escaped / double-escaped states (WHATWG 13.2.5.4 ff.).
    state = "data"
    search_from = pos
    while True:
        m = _SCRIPT_EVENT.search(text, search_from)
        if m is None:
            return n, n
        event = m.group().lower()
        if event.startswith("</script"):
            if state in ("data", "escaped"):
                return m.start(), _end_tag_end(text, m.start())
            state = "escaped"  # double escaped -> escaped
            search_from = m.end() - 1
        elif event == "<!--":
            if state == "data":
                state = "escaped"
            search_from = m.start() + 2  # the "--" may be the start of "-->" (``<!-->``)
        elif event == "-->":
            state = "data"
            search_from = m.end()
        else:  # "<script" + delimiter
            if state == "escaped":
                state = "double"
            search_from = m.end() - 1


#: Start tags that may be left out in bulk past the limit (in HTML content: not the kept ones,
#: not those that change how what follows is read), with the text between them.
_NOT_BULK = sorted(KEEP | VOID | {"svg", "math", "font", "annotation-xml"})
_DROP_RUN = re.compile(
    r"(?:[^<]++|<(?i:(?!(?:" + "|".join(re.escape(x) for x in _NOT_BULK) + r")[\t\n\f\r />]))"
    r"[A-Za-z][^\t\n\f\r />]*" + _ATTRS + r"/?>)*+",
    re.A,
)
#: End tags one after the other (with text between them).
_END_RUN = re.compile(r"(?:[^<]++|</[A-Za-z][^\t\n\f\r />]*" + _ATTRS + r"/?>)*+", re.A)


# -- nesting -------------------------------------------------------------------------------------


# Category bits of an open element (see _OpenElements).
_SCOPE, _SPECIAL, _TABLES, _LISTS, _BUTTONS, _LI_STOP, _MARKER, _FORMATTING = (1 << i for i in range(8))
_CATEGORIES = (_SCOPE, _SPECIAL, _TABLES, _LISTS, _BUTTONS, _LI_STOP)


def _html_flags(name: str) -> int:
    flags = 0
    if name in SCOPE:
        flags |= _SCOPE
    if name in SPECIAL:
        flags |= _SPECIAL
        if name not in ("address", "div", "p"):
            flags |= _LI_STOP
    if name in ("table", "template", "html"):
        flags |= _TABLES
    if name in ("ol", "ul"):
        flags |= _LISTS
    if name == "button":
        flags |= _BUTTONS
    if name in _MARKERS:
        flags |= _MARKER
    if name in FORMATTING:
        flags |= _FORMATTING
    return flags


_FLAGS: dict[str, int] = {}
#: A foreign element that is an integration point bounds scopes like a special HTML element.
_FOREIGN_POINT_FLAGS = _SCOPE | _SPECIAL | _LI_STOP


class _OpenElements:
    """An over-estimate of the tree builder's stack of open elements (see the module docstring).

    Element positions are kept per name and per category, so every decision is O(1): the
    nearest open element called X, and whether a scope boundary / special element is above it.
    """

    __slots__ = ("at", "cats", "flags", "foreign_open", "lingering", "lingering_total", "names", "ns", "point")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.flags: list[int] = []
        #: namespace of each open element (HTML, SVG, MathML) and whether it is an integration point
        self.ns: list[int] = []
        self.point: list[bool] = []
        self.foreign_open = 0
        self.at: dict[str, list[int]] = {}
        #: category bit -> positions of open elements in that category, bottom to top
        self.cats: dict[int, list[int]] = {bit: [] for bit in _CATEGORIES}
        #: formatting elements popped by something else than their end tag, per marker level:
        #: the parser keeps them in its list and re-opens them on the next text or tag
        self.lingering: list[dict[str, int]] = [{}]
        self.lingering_total = 0

    @property
    def depth(self) -> int:
        return len(self.names) + self.lingering_total

    def top(self) -> str:
        return self.names[-1] if self.names else ""

    def in_foreign(self) -> bool:
        """Whether a tag now makes an SVG/MathML element (raw text and CDATA depend on it)."""
        return self.foreign_open > 0 and self.ns[-1] != _HTML_NS and not self.point[-1]

    def nearest(self, name: str) -> int:
        positions = self.at.get(name)
        return positions[-1] if positions else -1

    def _above(self, bit: int, index: int) -> bool:
        positions = self.cats[bit]
        return bool(positions) and positions[-1] > index

    def push(self, name: str, ns: int = _HTML_NS, point: bool = False) -> None:
        index = len(self.names)
        if ns != _HTML_NS:
            special = name in SVG_POINTS if ns == _SVG_NS else name in MATH_TEXT_POINTS or name == "annotation-xml"
            flags = _FOREIGN_POINT_FLAGS if special else 0
            self.foreign_open += 1
        else:
            known = _FLAGS.get(name)
            flags = known if known is not None else _FLAGS.setdefault(name, _html_flags(name))
        self.names.append(name)
        self.flags.append(flags)
        self.ns.append(ns)
        self.point.append(point)
        key = "h*" if name in HEADINGS else name
        positions = self.at.get(key)
        if positions is None:
            self.at[key] = [index]
        else:
            positions.append(index)
        if flags:
            for bit in _CATEGORIES:
                if flags & bit:
                    self.cats[bit].append(index)
            if flags & _MARKER:
                self.lingering.append({})

    def pop_top(self) -> None:
        """Pop the current node because its own end tag came (no formatting element lingers)."""
        name = self.names.pop()
        flags = self.flags.pop()
        self.point.pop()
        if self.ns.pop() != _HTML_NS:
            self.foreign_open -= 1
        self.at["h*" if name in HEADINGS else name].pop()
        if flags:
            for bit in _CATEGORIES:
                if flags & bit:
                    self.cats[bit].pop()
            if flags & _MARKER and len(self.lingering) > 1:
                self.lingering_total -= sum(self.lingering.pop().values())

    def pop_to(self, index: int, target: str = "") -> None:
        """Pop every element at ``index`` and above; formatting elements other than ``target``
        (the end tag's own) may be re-opened by the parser, so they are counted as lingering."""
        names, flags_of, at, cats = self.names, self.flags, self.at, self.cats
        while len(names) > index:
            name = names.pop()
            flags = flags_of.pop()
            self.point.pop()
            if self.ns.pop() != _HTML_NS:
                self.foreign_open -= 1
            at["h*" if name in HEADINGS else name].pop()
            if not flags:
                continue
            for bit in _CATEGORIES:
                if flags & bit:
                    cats[bit].pop()
            if flags & _MARKER and len(self.lingering) > 1:
                self.lingering_total -= sum(self.lingering.pop().values())
            elif flags & _FORMATTING and (len(names) != index or name != target):
                frame = self.lingering[-1]
                frame[name] = frame.get(name, 0) + 1
                self.lingering_total += 1

    def _push_foreign(self, name: str, ns: int, self_closing: bool, html_encoding: bool) -> bool:
        if self_closing:
            return False
        if ns == _SVG_NS:
            point = name in SVG_POINTS
        else:
            point = name in MATH_TEXT_POINTS or name == "annotation-xml" and html_encoding
        self.push(name, ns, point)
        return True

    def forget_lingering(self, name: str) -> None:
        frame = self.lingering[-1]
        if frame.get(name):
            frame[name] -= 1
            self.lingering_total -= 1

    # -- the tree builder's rules, as far as they pop -----------------------------------------

    def start(self, name: str, self_closing: bool, html_encoding: bool = False, font_attrs: bool = False) -> bool:
        """Apply a start tag; True when it opened an element (so it counts for nesting).

        ``html_encoding``: an ``annotation-xml`` tag says its content is HTML (an integration point);
        ``font_attrs``: a ``font`` tag has color, face or size (it leaves SVG/MathML like ``<b>``).
        """
        if self.foreign_open and self.in_foreign():
            if name in BREAKOUT or font_attrs:
                # the parser pops back to an HTML element or integration point, then goes on as HTML
                self._leave_foreign()
            else:  # in foreign content every element, <svg> and <math> too, takes the parent's namespace
                return self._push_foreign(name, self.ns[-1], self_closing, html_encoding)
        elif self.foreign_open and self.ns[-1] == _MATH_NS and name in ("mglyph", "malignmark"):
            return self._push_foreign(name, _MATH_NS, self_closing, False)  # in a MathML text point
        if name == "svg" or name == "math":
            return self._push_foreign(name, _SVG_NS if name == "svg" else _MATH_NS, self_closing, False)
        if name in VOID:
            return False
        if name in CLOSES_P:
            p = self.nearest("p")
            if p >= 0 and not self._above(_SCOPE, p) and not self._above(_BUTTONS, p):
                self.pop_to(p, "p")
            if name == "li" or name == "dd" or name == "dt":
                same = ("li",) if name == "li" else ("dd", "dt")
                nearest = max(self.nearest(s) for s in same)
                if nearest >= 0 and not self._above(_LI_STOP, nearest):
                    self.pop_to(nearest, self.names[nearest])
            elif name in HEADINGS and self.top() in HEADINGS:
                self.pop_to(len(self.names) - 1)
        elif name == "option" or name == "optgroup":
            if self.top() == "option":
                self.pop_to(len(self.names) - 1)
        elif name in _RUBY_PARTS:
            # with a <ruby> in scope the parser generates implied end tags first (pops an open <p> ...)
            ruby = self.nearest("ruby")
            if ruby >= 0 and not self._above(_SCOPE, ruby):
                while self.names and self.names[-1] in _IMPLIED_END:
                    self.pop_to(len(self.names) - 1)
        elif name == "a" or name == "nobr":
            open_ = self.nearest(name)
            if open_ >= 0 and not self._above(_SPECIAL, open_):
                self.pop_to(open_, name)
            else:
                self.forget_lingering(name)
        elif name == "td" or name == "th" or name == "tr":
            cell = max(self.nearest("td"), self.nearest("th")) if name != "tr" else self.nearest("tr")
            table = self.nearest("table")
            if cell > table >= 0 and not self._above(_TABLES, cell):
                self.pop_to(cell)
        elif name == "tbody" or name == "thead" or name == "tfoot":
            table = self.nearest("table")
            if table >= 0 and not self._above(_TABLES, table):
                self.pop_to(table + 1)
        self.push(name)
        return True

    def _leave_foreign(self) -> None:
        """Pop back to an HTML element or integration point (what a breakout tag does)."""
        i = len(self.names) - 1
        while i >= 0 and self.ns[i] != _HTML_NS and not self.point[i]:
            i -= 1
        self.pop_to(i + 1)

    def end(self, name: str) -> None:
        """Apply an end tag: pop only where the parser surely pops (at least as much)."""
        if (name == "br" or name == "p") and self.foreign_open and self.in_foreign():
            self._leave_foreign()  # </br> and </p> leave SVG/MathML, then count as HTML
        if name in HEADINGS:
            index = self.nearest("h*")
        else:
            positions = self.at.get(name)
            index = positions[-1] if positions else -1
        if index < 0:
            if name in FORMATTING:
                self.forget_lingering(name)
            return
        if name == "body" or name == "html":
            return
        if self.ns[index] != _HTML_NS or name in FORMATTING:
            blocked = self._above(_SPECIAL, index)  # foreign content / adoption agency
        elif name == "p":
            blocked = self._above(_SCOPE, index) or self._above(_BUTTONS, index)
        elif name == "li":
            blocked = self._above(_SCOPE, index) or self._above(_LISTS, index)
        elif name in HEADINGS or name in _SCOPE_CLOSE:
            blocked = self._above(_SCOPE, index)
        elif name == "table":
            blocked = self._above(_TABLES, index)
        elif name in _TABLE_PARTS:  # only inside a table (elsewhere the parser ignores them)
            blocked = self._above(_TABLES, index) or not 0 <= self.nearest("table") < index
        elif name == "template":
            blocked = False
        elif name == "form" or name == "select":
            blocked = index != len(self.names) - 1
        else:  # "any other end tag": a special element on the way stops it
            blocked = self._above(_SPECIAL, index)
        if blocked:
            if name in FORMATTING:
                self.forget_lingering(name)
            return
        self.pop_to(index, name)


@dataclass(frozen=True, slots=True)
class Bounded:
    """The HTML to parse, and how many start tags were left out to bound the nesting."""

    html: str
    dropped: int = 0
    max_depth: int = 0


def bound_nesting(html: str, limit: int = MAX_NESTING, small_page_tags: int = SMALL_PAGE_TAGS) -> Bounded:
    """Leave out start tags (and their end tags) that would nest deeper than ``limit``.

    Returns the input itself when nothing had to be left out. A page with at most
    :data:`SMALL_PAGE_TAGS` tags is not even tokenized: the parser's cost grows with tokens x
    depth, so such a page costs it a few milliseconds whatever its nesting. Past the limit, runs
    of start tags to leave out, and runs of their end tags, go in one regex step each (a page of
    100,000 nested elements is mostly such runs).
    """
    if html.count("<") <= max(limit, small_page_tags):
        return Bounded(html)
    stack = _OpenElements()
    stack.push("html")
    stack.push("body")
    cuts: list[tuple[int, int, str]] = []
    #: per name, [stack size, count] groups of left-out start tags (their end tags go too)
    left_out: dict[str, list[list[int]]] = {}
    dropped = 0
    deepest = 0
    n = len(html)
    find = html.find
    tag_match = _TAG.match
    names = stack.names

    def pending_for(name: str) -> list[list[int]] | None:
        groups = left_out.get(name)
        return groups if groups and stack.nearest(name) < groups[-1][0] else None

    pos = 0
    while True:
        pos = find("<", pos)
        if pos < 0 or pos + 1 >= n:
            break
        nxt = html[pos + 1]
        if nxt in _ASCII_LETTERS or nxt == "/" and html[pos + 2 : pos + 3] in _ASCII_LETTERS:
            m = tag_match(html, pos)
            if m is None:  # EOF inside the tag: a browser emits nothing more
                break
            start, pos = pos, m.end()
            name = m.group(2).translate(_ASCII_LOWER)
            if m.group(1):  # end tag
                if not left_out and names[-1] == name and not stack.foreign_open and name != "body" and name != "html":
                    # closes the current node: the parser surely pops it (the common case, inlined)
                    stack.pop_top()
                    continue
                groups = pending_for(name)
                if groups is None:
                    stack.end(name)
                    continue
                # this one and the end tags right after it that close left-out elements
                run = _END_RUN.match(html, pos)
                assert run is not None  # the pattern is a starred group: it matches the empty string
                following = _TAG.findall(html, pos, run.end()) if run is not None and run.end() > pos else []
                taken = 0
                while groups is not None:
                    groups[-1][1] -= 1
                    if not groups[-1][1]:
                        groups.pop()
                    if taken == len(following):
                        break
                    groups = pending_for(following[taken][1].translate(_ASCII_LOWER))
                    if groups is not None:
                        taken += 1
                if taken == len(following) and following:
                    end = run.end()  # the run's trailing text is kept by the substitution below
                elif taken:
                    end = [t.end() for t in _TAG.finditer(html, pos, run.end())][taken - 1]
                else:
                    end = pos
                cuts.append((start, end, " " if end == pos else _TAG.sub(" ", html[start:end])))
                dropped += 1 + taken
                pos = end
                continue
            if name in ("html", "body", "head"):
                continue
            depth = len(names) + stack.lingering_total
            if depth < limit and name not in _START_RULES and not stack.foreign_open:
                stack.push(name)  # an element no rule pops anything for (the common case)
                if depth >= deepest:
                    deepest = depth + 1
                continue
            self_closing = bool(m.group(3))
            if depth >= limit and (
                name not in KEEP and name not in VOID
                # kept elements nest only through parser quirks (a form closed around an open
                # <option>, anything inside SVG/MathML): a hard stop at twice the limit
                # (raw text elements excepted: they hold no elements, and a script must stay a script)
                or depth >= 2 * limit and (
                    stack.in_foreign() and name not in BREAKOUT and name != "font" and not self_closing
                    or not stack.in_foreign() and name not in VOID and name not in _PARSED_RAW)
            ):
                size = len(names)
                end = pos
                dropping = [name]
                if not stack.in_foreign():  # ordinary start tags right after it go as well
                    run = _DROP_RUN.match(html, pos)
                    if run is not None and run.end() > pos:
                        end = run.end()
                        dropping += [t[1].translate(_ASCII_LOWER) for t in _TAG.findall(html, pos, end)]
                for left, count in Counter(dropping).items():
                    groups = left_out.setdefault(left, [])
                    if groups and groups[-1][0] == size:
                        groups[-1][1] += count
                    else:
                        groups.append([size, count])
                cuts.append((start, end, " " if end == pos else _TAG.sub(" ", html[start:end])))
                dropped += len(dropping)
                pos = end
                continue
            html_encoding = name == "annotation-xml" and _HTML_ENCODING.search(m.group()) is not None
            font_attrs = name == "font" and _FONT_BREAKOUT.search(m.group()) is not None
            opened = stack.start(name, self_closing, html_encoding, font_attrs)
            deepest = max(deepest, stack.depth)
            if name in _PARSED_RAW and opened and stack.ns[-1] == _HTML_NS:
                content_end, after = raw_text_end(html, name, pos)
                if after > content_end:
                    stack.end(name)
                pos = after
            continue
        if nxt == "!":
            pos = _markup_declaration(html, pos, stack.in_foreign()).end
        elif nxt in "/?":
            if html.startswith("</>", pos):
                pos += 3
                continue
            end = find(">", pos + 2)
            pos = end + 1 if end >= 0 else n
        else:
            pos += 1
    if not cuts:
        return Bounded(html, 0, deepest)
    pieces = []
    last = 0
    for start, end, replacement in cuts:
        pieces.append(html[last:start])
        pieces.append(replacement)
        last = end
    pieces.append(html[last:])
    return Bounded("".join(pieces), dropped, deepest)


# -- reducing ------------------------------------------------------------------------------------

_WS_RUN = re.compile(r"[\t\n\f\r ]{2,}")


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one character (a newline if the run had one: JavaScript's
    automatic semicolons depend on line breaks, HTML does not care)."""
    return _WS_RUN.sub(lambda m: "\n" if "\n" in m.group() else " ", text)


#: A run of text and ordinary tags: everything the reducer passes on without a decision (one
#: regex call in C instead of a Python step per tag).
_NOT_SPECIAL = r"(?!(?:script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext|svg|math)[\t\n\f\r />])"
def _raw_element(name: str, content: str) -> str:
    """A whole raw-text element whose content matches ``content`` (its end tag included)."""
    return (r"<(?i:" + name + r")(?=[\t\n\f\r />])" + _ATTRS + r"/?>" + content
            + r"</(?i:" + name + r")(?=[\t\n\f\r />])" + _ATTRS + r"/?>")


_PLAIN_RUN = re.compile(
    r"(?:[^<]++|<(?![A-Za-z/!?]|\Z)|<(?i:" + _NOT_SPECIAL + r")[A-Za-z][^\t\n\f\r />]*" + _ATTRS + r"/?>"
    r"|</[A-Za-z][^\t\n\f\r />]*" + _ATTRS + r"/?>|</>|<!(?i:doctype)[^>]*>"
    # raw-text elements without surprises inside (no "<!--" in a script: escape states), whole
    + "".join(
        "|" + _raw_element(name, r"(?:[^<]++|<(?!/(?i:" + name + r")[\t\n\f\r />]" + (r"|!--" if name == "script" else "") + r"))*+")
        for name in sorted(RAW_TEXT)
    )
    + r")*+",
    re.A,
)
#: Comments this short that say where a saved page came from are kept (a page feature reads them).
_KEEP_COMMENT = re.compile(r"<!--\s*saved from url=|Mirrored from .{0,500} by HTTrack", re.I)
#: Consecutive complete comments (and the whitespace between them), removed in one regex step.
_COMMENT_RUN = re.compile(r"(?:(?><!--(?:>|->|.*?--!?>))[\t\n\f\r ]*+)++", re.S)
_TAIL_KEEP = 64  # characters held back at a chunk's end when a raw-text end tag may straddle it


class HtmlReducer:
    """Streams HTML in, passes it on without comments and with whitespace runs collapsed.

    ``feed`` returns what can be decided so far; ``close`` the rest. The output parses to the
    same scripts, forms, frames and text as the input (see the module docstring for why SVG and
    MathML stop comment removal).
    """

    def __init__(self) -> None:
        self._buf = ""
        self._raw: str | None = None  # inside this raw-text element
        self._in_comment = False
        self._foreign_seen = False
        self.removed_chars = 0
        self.comments_removed = 0

    def feed(self, chunk: str) -> str:
        self._buf += chunk
        return self._run(final=False)

    def close(self) -> str:
        return self._run(final=True)

    def _run(self, *, final: bool) -> str:
        buf = self._buf
        n = len(buf)
        out: list[str] = []
        pos = 0
        while pos < n:
            if self._in_comment:
                m = _COMMENT_END.search(buf, pos)
                if m is None:
                    keep_from = n if final else max(pos, n - 3)
                    self.removed_chars += keep_from - pos
                    pos = keep_from
                    break
                self.removed_chars += m.end() - pos
                self._in_comment = False
                pos = m.end()
                continue
            if self._raw is not None:
                _, after = raw_text_end(buf, self._raw, pos)
                if after >= n and not final and self._raw != "plaintext":
                    # the end tag may not have arrived yet: pass on all but a margin
                    safe = max(pos, n - _TAIL_KEEP) if self._raw != "script" else pos
                    out.append(buf[pos:safe])
                    pos = safe
                    break
                out.append(buf[pos:after])
                pos = after
                self._raw = None
                continue
            if self._foreign_seen:
                out.append(buf[pos:])  # see the module docstring: nothing more is removed
                pos = n
                break
            m = _PLAIN_RUN.match(buf, pos)
            assert m is not None  # the pattern is a starred group: it matches the empty string
            if m.end() > pos:
                out.append(buf[pos : m.end()])
                pos = m.end()
                continue
            # at a "<" that needs a decision
            if not final and n - pos < 16:
                break  # too little to tell what it starts
            if buf.startswith("<!--", pos) and not _KEEP_COMMENT.match(buf, pos):
                run = _COMMENT_RUN.match(buf, pos)
                if run is not None:  # each comment in it is complete: its end is its first "-->"
                    self.removed_chars += run.end() - pos
                    self.comments_removed += run.group().count("<!--")
                    pos = run.end()
                    continue
            if buf.startswith("<!", pos) or buf.startswith("<?", pos) or buf.startswith("</", pos):
                if buf[pos + 1] == "!":
                    token = _markup_declaration(buf, pos, False)
                else:  # "<?" or "</" + not a letter: a bogus comment up to ">"
                    end = buf.find(">", pos + 2)
                    token = Token("bogus", pos, end + 1) if end >= 0 else Token("bogus", pos, n, True)
                if token.unterminated and not final:
                    if token.kind == "comment":  # drop what has come so far, wait for its end
                        self._in_comment = True
                        self.comments_removed += 1
                        self.removed_chars += 4
                        pos += 4
                        continue
                    break  # wait for the ">"
                piece = buf[pos : token.end]
                if token.kind in ("comment", "bogus") and not _KEEP_COMMENT.match(piece):
                    self.removed_chars += len(piece)
                    self.comments_removed += 1
                else:
                    out.append(piece)
                pos = token.end
                continue
            tag = _TAG.match(buf, pos)
            if tag is None:
                if final:
                    out.append(buf[pos:])  # an unfinished tag: a browser drops it, so may we
                    pos = n
                break
            name = lower_name(tag.group(2))
            out.append(tag.group())
            pos = tag.end()
            if name in ("svg", "math"):
                self._foreign_seen = True
            elif name in RAW_TEXT or name == "plaintext":
                self._raw = name
        self._buf = buf[pos:]
        return collapse_whitespace("".join(out))
