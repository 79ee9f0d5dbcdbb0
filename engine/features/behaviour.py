"""What a script *does*, read from a real JavaScript parser: behaviour facts and their data flow.

A skimmer is recognised by behaviour, not by style: it reads payment (or all) form fields, often
only on checkout pages or when a form is submitted, serialises and encodes them, may stage them in
``localStorage``/cookies/globals, and sends them to another site (an image beacon, XHR, fetch,
``sendBeacon``, a WebSocket, a copied form). Regexes over text cannot follow a value from
``input.value`` through three variables into ``new Image().src``; a parse tree can.

:func:`behaviour_facts` parses one script with tree-sitter (C speed, error-tolerant: broken or
truncated code still yields a tree) and runs a small abstract interpretation over it:

* **constant folding**, bounded: string concatenation, escapes, ``String.fromCharCode`` of
  numbers, ``atob``/``unescape``/``decodeURIComponent`` of literals, ``split``/``join``/
  ``reverse``/``replace``, lookups into string tables (``_0x12ab[3]``), jQuery's entity-decoding
  trick ``$('<div/>').html('&#104;…').text()``. Obfuscated skimmers hide their URLs this way.
* **taint**, flow-insensitive and scope-aware: values read from form fields carry labels
  (``form``, ``card``, ``all_fields``, ``personal``) through variables, object properties, local
  function parameters and returns, serialisation and encoding calls, string building;
* **sinks, staging, conditions and other attack behaviours** become :class:`Fact` values with
  character offsets for evidence.

Values read from storage, cookies or globals carry *markers* (``stage:local:KEY``,
``stage:cookie``, ``global:NAME``); :func:`page_behaviour` resolves them against what the other
scripts of the same page wrote there, so a collector in one script and a sender in another still
make one flow. Code that a script decodes and then runs (``eval`` of a literal, ``document.write``
of an inline ``<script>``) is analysed too, to a bounded depth.

Work is bounded so hostile input cannot hang a worker: a size cap, a parse deadline, a node cap
and an evaluation step budget. A script that hits a bound is reported as such (``skipped`` /
``truncated``), never as "no behaviour". Nothing is ever executed.
"""

from __future__ import annotations

import contextlib
import html as _html
import re
import threading
import time
from base64 import b64decode
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from .javascript import JsFeatures

# -- bounds -----------------------------------------------------------------------------------------

#: Scripts longer than this are not parsed (a library with appended code is cut down to the
#: foreign part by the known-library fingerprints before it gets here).
MAX_PARSE_CHARS = 400_000
#: Parsing stops after this many seconds (tree-sitter's progress callback).
PARSE_DEADLINE_S = 0.5
#: Trees with more nodes than this are not interpreted.
MAX_NODES = 300_000
#: Code nested deeper than this (brackets) is not parsed; syntax deeper than MAX_DEPTH is not read.
MAX_BRACKETS = 1_000
MAX_DEPTH = 500
#: Expression evaluations per script, and the time they may take.
MAX_STEPS = 400_000
ANALYSIS_DEADLINE_S = 0.5
@contextlib.contextmanager
def wall_clock_deadlines_lifted(seconds: float = 600.0) -> Iterator[None]:
    """Training and cross-validation: features must not depend on how busy the machine is (a
    script that hits a deadline on a loaded machine gets other features, so the models would).
    The size, node and step caps still bound the work; scans keep their deadlines."""
    global PARSE_DEADLINE_S, ANALYSIS_DEADLINE_S
    saved = PARSE_DEADLINE_S, ANALYSIS_DEADLINE_S
    PARSE_DEADLINE_S = ANALYSIS_DEADLINE_S = seconds
    try:
        yield
    finally:
        PARSE_DEADLINE_S, ANALYSIS_DEADLINE_S = saved


#: Decoded code (eval of a literal, written inline scripts) is analysed this deep.
MAX_NESTING = 2
#: Decoded code strings analysed per script.
MAX_NESTED_RUNS = 8
#: Folded strings longer than this are kept only as a prefix (a 1 MB payload must not be copied).
MAX_FOLDED = 200_000
#: Labels a value carries at most (markers from unknown globals could otherwise pile up).
MAX_LABELS = 24


# -- facts ------------------------------------------------------------------------------------------

#: Fact kinds. ``carries`` holds taint labels and markers; ``host`` a destination resolved from
#: literals; ``detail`` says what exactly (field name, storage key, API).
FIELD_READ = "field_read"  # detail: selector or name; carries: form + card/personal/all_fields
CHECKOUT_CONDITION = "checkout_condition"  # code runs only when the URL looks like a checkout
FORM_HOOK = "form_hook"  # detail: event (submit, click, change, ...)
ENCODING = "encoding"  # detail: btoa, base64, JSON.stringify, encodeURIComponent, ...
STAGE_WRITE = "stage_write"  # detail: store:key; carries: what was written
STAGE_READ = "stage_read"  # detail: store:key
SEND = "send"  # detail: sink (image, xhr, fetch, beacon, websocket, ajax, form, ...); host; carries
EXEC_DECODED = "exec_decoded"  # eval/Function/string timer of a decoded or assembled value
MARKUP_WRITE = "markup_write"  # detail: script/iframe markup written; host of its src
SCRIPT_INJECTION = "script_injection"  # createElement('script') with a src; host
IFRAME_INJECTION = "iframe_injection"  # createElement('iframe') with a src; host; hidden
REDIRECT = "redirect"  # location/window.open to host

FACT_KINDS = (FIELD_READ, CHECKOUT_CONDITION, FORM_HOOK, ENCODING, STAGE_WRITE, STAGE_READ, SEND,
              EXEC_DECODED, MARKUP_WRITE, SCRIPT_INJECTION, IFRAME_INJECTION, REDIRECT)

#: Taint labels. Markers (``stage:…``, ``global:…``) name where a value came from when that place
#: can be written by another script.
FORM, CARD, PERSONAL, ALL_FIELDS = "form", "card", "personal", "all_fields"
FORM_LABELS = frozenset({FORM, CARD, PERSONAL, ALL_FIELDS})


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing a script does, with where it does it (character offsets into the script).

    ``hidden`` is true when the fact's strings were decoded from escapes, char codes, base64,
    entities or string tables, or when the fact sits in code the script decodes and runs.
    """

    kind: str
    offset: int
    end: int
    detail: str = ""
    host: str | None = None
    url: str | None = None
    carries: frozenset[str] = frozenset()
    encodings: frozenset[str] = frozenset()
    fields: tuple[str, ...] = ()
    hidden: bool = False
    relative: bool = False

    @property
    def carries_form(self) -> bool:
        return FORM in self.carries


@dataclass(frozen=True, slots=True)
class ScriptFacts:
    """Every behaviour fact of one script, and whether the analysis saw the whole script.

    ``analysed`` is false when the script was not parsed (``skipped`` says why: no behaviour hint,
    too large, parse deadline, node cap); ``truncated`` is true when the step budget ran out part
    way. Neither ever means "benign".
    """

    facts: tuple[Fact, ...] = ()
    analysed: bool = False
    skipped: str = ""
    truncated: bool = False
    parse_errors: bool = False
    nodes: int = 0
    #: The parts of the script that were parsed, when not the whole (see :func:`parse_plan`).
    windows: tuple[tuple[int, int], ...] = ()

    def of(self, *kinds: str) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.kind in kinds)


# -- string knowledge -------------------------------------------------------------------------------

_CARD_WORDS = ("ccnum", "ccnumber", "cardnumber", "cardnum", "creditcard", "cccid", "cvv", "cvc", "cvn",
               "ccv", "securitycode", "cardcode", "cccode", "ccexp", "expmonth", "expyear", "expirationmonth",
               "expirationyear", "expirationdate", "expirydate", "expiration", "expdate", "cardexp",
               "cardholder", "ccowner", "ccname", "cctype", "ccno", "cardno", "payment[")
_PERSONAL_WORDS = ("email", "password", "passwd", "firstname", "lastname", "fullname", "telephone", "phone",
                   "street", "postcode", "zipcode", "address", "billing", "login", "username")
_GENERIC_TAGS = frozenset({"input", "select", "textarea", "checkbox", "button", "form", "option", "submit",
                           "*", ""})
_CHECKOUT_RE = re.compile(r"checkout|onepage|one-?step|firecheckout|payment|billing|/cart|basket|/order", re.I)
_HOST_RE = re.compile(r"^(?:(?:https?|wss?):)?//([A-Za-z0-9.\-_]+)", re.I)
_SCRIPT_TAG_RE = re.compile(r"<script\b([^>]*)>(.*?)(?:</script\s*>|$)", re.I | re.S)
_IFRAME_TAG_RE = re.compile(r"<iframe\b([^>]*)>", re.I | re.S)
_SRC_ATTR_RE = re.compile(r"""\bsrc\s*=\s*["']?([^"'\s>]+)""", re.I)
_HIDDEN_ATTR_RE = re.compile(
    r"""(?:width|height)\s*[=:]\s*["']?[01](?:px)?\b|visibility\s*[=:]\s*["']?hidden|display\s*[=:]\s*["']?none""",
    re.I,
)
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ESCAPE_RE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u\{([0-9A-Fa-f]{1,6})\}|u([0-9A-Fa-f]{4})|([0-7]{1,3})|\r\n|(.))", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "\n": "", "\r": "", "\u2028": "",
           "\u2029": ""}


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == "[")


def form_labels(selector: str) -> frozenset[str]:
    """Labels of a whole form read at once (serialize, FormData): card data when it is the
    payment form, personal data for a billing or shipping form, ``all_fields`` when the selector
    takes every form of the page (``$('form')``) rather than one the code names."""
    labels = set(field_labels(selector))
    lower = selector.lower()
    if "payment" in lower or "card" in lower or "checkout" in lower:
        labels.add(CARD)  # the payment or checkout form holds the card fields
    if "shipping" in lower or "billing" in lower:
        labels.add(PERSONAL)
    return frozenset(labels)


def field_labels(selector: str) -> frozenset[str]:
    """Labels a field name, id or selector earns: ``card`` (number, CVV, expiry, holder),
    ``personal`` (name, e-mail, password, address), ``all_fields`` (a bare tag list such as
    ``"input, select, textarea"``)."""
    labels = {FORM}
    norm = _normal(selector)
    if any(w in norm for w in _CARD_WORDS) or norm.endswith("cid"):
        labels.add(CARD)
    if any(w in norm for w in _PERSONAL_WORDS):
        labels.add(PERSONAL)
    parts = [p.strip().lower() for p in selector.split(",")]
    if selector.strip() and all(re.sub(r"^(?:form|body|document)\s+", "", p) in _GENERIC_TAGS for p in parts):
        labels.add(ALL_FIELDS)
    return frozenset(labels)


def destination(url: str | None) -> tuple[str | None, bool]:
    """(host, relative) of a URL, or prefix of one, built from literals."""
    if not url:
        return None, False
    url = url.strip()
    match = _HOST_RE.match(url)
    if match:
        return match.group(1).lower().rstrip("."), False
    lower = url[:12].lower()
    if lower.startswith(("http:", "https:", "ws:", "wss:", "data:", "javascript:", "blob:")):
        return None, False
    return None, True


def js_unescape(body: str) -> str:
    """The value of a JavaScript string literal's body (escapes decoded)."""
    if "\\" not in body:
        return body

    def sub(m: re.Match[str]) -> str:
        hx, brace, uni, octal, other = m.groups()
        try:
            if hx:
                return chr(int(hx, 16))
            if brace:
                return chr(min(int(brace, 16), 0x10FFFF))
            if uni:
                return chr(int(uni, 16))
            if octal:
                return chr(int(octal, 8))
        except ValueError:
            return ""
        if other is None:
            return ""
        return _SIMPLE.get(other, other)

    return _ESCAPE_RE.sub(sub, body)


# -- abstract values --------------------------------------------------------------------------------

class V:
    """An abstract value: what is known of an expression without running it."""

    __slots__ = ("arr", "dec", "enc", "fn", "hidden", "kind", "loc", "n", "pre", "props", "s", "sel", "taint")

    def __init__(self, s: str | None = None, n: float | None = None, arr: tuple[V, ...] | None = None,
                 kind: str | None = None, sel: str = "", taint: frozenset[str] = frozenset(),
                 enc: frozenset[str] = frozenset(), pre: str | None = None, props: dict[str, V] | None = None,
                 loc: bool = False, dec: frozenset[str] = frozenset(), hidden: bool = False, fn: int = -1) -> None:
        if s is not None and len(s) > MAX_FOLDED:
            pre, s = s[:MAX_FOLDED], None
        self.s = s
        self.n = n
        self.arr = arr
        self.kind = kind
        self.sel = sel
        self.taint = taint
        self.enc = enc
        self.pre = pre if pre is not None else s
        self.props = props
        self.loc = loc
        self.dec = dec
        self.hidden = hidden
        self.fn = fn

    def sig(self) -> tuple[Any, ...]:
        return (self.s, self.n, self.kind, self.sel, self.taint, self.enc, self.pre, self.loc, self.dec,
                self.hidden, self.fn, len(self.arr) if self.arr is not None else -1,
                tuple(sorted(self.props)) if self.props else ())

    def text(self) -> str | None:
        if self.s is not None:
            return self.s
        if self.n is not None:
            n = self.n
            return str(int(n)) if n == int(n) else str(n)
        return None


EMPTY = V()


def _labels(*sets: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    if len(out) > MAX_LABELS:
        keep = {x for x in out if ":" not in x}
        out = keep | set(sorted(out - keep)[: max(0, MAX_LABELS - len(keep))])
    return frozenset(out)


def join(a: V, b: V) -> V:
    """Least upper bound: what both values have in common, and every label of either."""
    if a is b:
        return a
    if a is EMPTY:
        return b
    if b is EMPTY:
        return a
    if a.s != b.s and a.s in _SCHEMES and b.s in _SCHEMES:
        # location.protocol == "https:" ? "https://" : "http://": either way, what follows is the host.
        return V(s="//", hidden=a.hidden or b.hidden)
    return V(
        s=a.s if a.s == b.s else None,
        n=a.n if a.n == b.n else None,
        arr=a.arr if a.arr is not None else b.arr,
        kind=a.kind or b.kind,
        sel=a.sel or b.sel,
        taint=_labels(a.taint, b.taint),
        enc=a.enc | b.enc,
        pre=a.pre if a.pre == b.pre else (a.pre or b.pre if (a.pre is None or b.pre is None) else None),
        props={**(b.props or {}), **(a.props or {})} if (a.props or b.props) else None,
        loc=a.loc or b.loc,
        dec=a.dec | b.dec,
        hidden=a.hidden or b.hidden,
        fn=a.fn if a.fn >= 0 else b.fn,
    )


_COOKIE_READ = re.compile(rb"document\s*\.\s*cookie(?!\s*=[^=])")
_SCHEMES = frozenset({"http://", "https://", "//", "ws://", "wss://"})


def _flow(*vals: V, enc: frozenset[str] = frozenset(), dec: frozenset[str] = frozenset()) -> V:
    """A computed value: it carries the labels of its inputs, and nothing else is known."""
    return V(taint=_labels(*(v.taint for v in vals)), enc=frozenset().union(enc, *(v.enc for v in vals)),
             loc=any(v.loc for v in vals), dec=frozenset().union(dec, *(v.dec for v in vals)),
             hidden=any(v.hidden for v in vals))


_BUILTINS = {
    "document": "document", "window": "window", "self": "window", "top": "window", "parent": "window",
    "globalThis": "window", "frames": "window", "location": "location", "navigator": "navigator",
    "localStorage": "storage:local", "sessionStorage": "storage:session", "JSON": "JSON", "String": "String",
    "jQuery": "jquery", "$": "jquery", "$j": "jquery", "jQ": "jquery", "Form": "prototype_form",
    "XMLHttpRequest": "ctor:xhr", "ActiveXObject": "ctor:xhr", "Image": "ctor:img", "WebSocket": "ctor:ws",
    "FormData": "ctor:formdata", "RegExp": "ctor:regex", "Function": "ctor:function", "Math": "Math",
    "Array": "Array", "Object": "Object",
}
_GLOBAL_FUNCS = frozenset({"atob", "btoa", "escape", "unescape", "encodeURIComponent", "encodeURI",
                           "decodeURIComponent", "decodeURI", "eval", "setTimeout", "setInterval", "fetch",
                           "$F", "open"})
_FUNCTION_TYPES = frozenset({"function_declaration", "generator_function_declaration", "function_expression",
                             "generator_function", "arrow_function", "method_definition", "function"})
_ELEMENT_QUERIES = frozenset({"getElementById", "querySelector", "querySelectorAll", "getElementsByName",
                              "getElementsByTagName", "getElementsByClassName", "elementFromPoint"})
_JQ_TRAVERSE = frozenset({"find", "children", "filter", "closest", "parent", "parents", "first", "last", "eq",
                          "not", "siblings", "next", "prev", "add", "addBack", "has", "contents", "end"})
_EVENTS = frozenset({"submit", "click", "change", "blur", "mousedown", "mouseup", "keyup", "keydown", "input",
                     "focusout", "beforeunload", "unload", "touchend", "pointerdown"})
_JQ_EVENT_METHODS = frozenset({"click", "change", "submit", "blur", "mousedown", "keyup", "keydown", "focusout",
                               "input"})
_ENCODERS = {"btoa": "btoa", "encodeURIComponent": "encodeURIComponent", "encodeURI": "encodeURI",
             "escape": "escape"}
_SINK_METHODS = frozenset({
    "open", "send", "sendBeacon", "fetch", "ajax", "post", "get", "getJSON", "getScript", "load", "submit", "write",
    "writeln", "insertAdjacentHTML", "html", "append", "prepend", "after", "before", "replaceWith", "assign",
    "setItem", "getItem", "setAttribute", "addEventListener", "attachEvent", "on", "bind", "live", "delegate",
    "click", "change", "blur", "mousedown", "keyup", "keydown", "focusout", "input", "eval", "Function",
    "setTimeout", "setInterval", "val", "serialize", "serializeArray", "serializeJSON", "stringify", "btoa",
    "encodeURIComponent", "escape", "$F",
})
_CONDITION_METHODS = frozenset({"test", "exec", "match", "indexOf", "search", "includes", "startsWith", "endsWith",
                                "lastIndexOf", "replace"})
_SINK_PROPS = frozenset({"location", "href", "pathname", "search", "hash", "cookie", "innerHTML", "outerHTML", "src",
                         "action", "value", "onsubmit", "onclick", "onchange", "onblur", "display", "visibility",
                         "width", "height"})
_WORTH_TEXT = re.compile(rb"location|href|pathname|URL|checkout|onepage|onestep|payment|billing|cart", re.I)
_QUERY = """
(function_declaration) @fn (generator_function_declaration) @fn (function_expression) @fn
(generator_function) @fn (arrow_function) @fn (method_definition) @fn
(variable_declarator) @decl (assignment_expression) @assign (augmented_assignment_expression) @aug
(call_expression) @call (new_expression) @new (return_statement) @ret
(binary_expression operator: ["==" "===" "!=" "!=="]) @cmp
"""

_LANG_LOCK = threading.Lock()
_LANG: Any = None
_QUERY_OBJ: Any = None
_LOCAL = threading.local()


def _language() -> tuple[Any, Any]:
    global _LANG, _QUERY_OBJ
    with _LANG_LOCK:
        if _LANG is None:
            import tree_sitter
            import tree_sitter_javascript

            _LANG = tree_sitter.Language(tree_sitter_javascript.language())
            _QUERY_OBJ = tree_sitter.Query(_LANG, _QUERY)
    return _LANG, _QUERY_OBJ


def _parser() -> Any:
    """One parser per thread (tree-sitter parsers are not thread-safe)."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        import tree_sitter

        parser = tree_sitter.Parser(_language()[0])
        _LOCAL.parser = parser
    return parser


class _Budget(Exception):
    """The step budget ran out."""


# -- the interpreter --------------------------------------------------------------------------------

class _Analysis:
    """Abstract interpretation of one parsed script. Use :func:`behaviour_facts`."""

    def __init__(self, data: bytes, tree: Any, depth: int, deadline: float) -> None:
        self.data = data
        self.tree = tree
        self.depth = depth
        self.steps = 0
        self.nested = 0
        self.deadline = deadline
        self.truncated = False
        # Demand-driven: a name's value is computed (and memoised) only when a sink, a source or a
        # condition asks for it, from every site that binds it.
        self.sites: dict[tuple[int, str], list[tuple[Any, int, str]]] = {}
        self.memo: dict[tuple[int, str], V] = {}
        self.active: set[tuple[int, str]] = set()
        self.fn_node: dict[int, Any] = {}
        self.fn_names: dict[int, list[str]] = {}
        self.calls_by_name: dict[str, list[tuple[Any, int]]] = {}
        self.returns: dict[int, list[tuple[Any, int]]] = {}
        self.iter_memo: dict[int, bool] = {}
        self.decoders: dict[int, Any] = {}
        self.fn_keys: dict[int, set[tuple[int, str]]] = {}
        self.event_scope: dict[int, int] = {}
        self.obfuscated = any(marker in data for marker in (b"_0x", b"\\x", b"atob", b"fromCharCode", b"unescape",
                                                            b"\\u00", b"&#"))
        self.declared: dict[int, set[str]] = {0: set()}
        self.parent: dict[int, int] = {0: 0}
        self.fn_scope: dict[int, int] = {}  # node id -> scope id
        self.fn_params: dict[int, list[str]] = {}
        self.fn_range: dict[int, tuple[int, int]] = {}
        self.b64_scopes: set[int] = set()
        self.events: list[tuple[str, Any, int]] = []
        self.cache: dict[int, V] = {}
        self.facts: list[Fact] = []
        self.fact_keys: set[tuple[Any, ...]] = set()
        self.xhr_urls: dict[Any, V] = {}
        self.form_actions: dict[Any, V] = {}
        self.hidden_keys: set[Any] = set()
        self.input_payload: frozenset[str] = frozenset()
        self._payload: frozenset[str] | None = None
        self.dynamic_calls: list[tuple[Any, int]] = []

    # ---- structure -------------------------------------------------------------------------

    def collect(self) -> None:
        """One C-speed query for every node of interest; scopes from function byte ranges."""
        _, query = _language()
        import tree_sitter

        cursor = tree_sitter.QueryCursor(query)
        # Deep left-recursive trees (a+a+a+…) make unbounded queries quadratic.
        cursor.set_max_start_depth(MAX_DEPTH)
        captures = cursor.captures(self.tree.root_node)
        items: list[tuple[int, int, str, Any]] = []
        for name, nodes in captures.items():
            for node in nodes:
                items.append((node.start_byte, 1 if name == "fn" else 0, name, node))
        items.sort(key=lambda x: (x[0], x[1], -x[3].end_byte))
        # Base64 alphabets inside a function make it an encoder (custom btoa).
        b64_at: list[int] = []
        pos = self.data.find(_B64_ALPHABET)
        while pos >= 0 and len(b64_at) < 20:
            b64_at.append(pos)
            pos = self.data.find(_B64_ALPHABET, pos + 1)
        stack: list[tuple[int, int]] = [(0, len(self.data) + 1)]  # (scope, end byte)
        next_scope = 1
        for start, _, name, node in items:
            while len(stack) > 1 and stack[-1][1] <= start:
                stack.pop()
            scope = stack[-1][0]
            if name == "fn":
                sid = next_scope
                next_scope += 1
                self.parent[sid] = scope
                self.declared[sid] = set()
                self.fn_scope[node.id] = sid
                self.fn_node[sid] = node
                self.fn_range[sid] = (node.start_byte, node.end_byte)
                self.fn_names[sid] = self._fn_names(node)
                if node.type in ("function_declaration", "generator_function_declaration"):
                    fname = node.child_by_field_name("name")
                    if fname is not None:
                        self.declared[scope].add(self._text(fname))
                        self.events.append(("fndecl", node, scope))
                params = self._params(node)
                self.fn_params[sid] = params
                self.declared[sid].update(params)
                stack.append((sid, node.end_byte))
                body = node.child_by_field_name("body")
                if node.type == "arrow_function" and body is not None and body.type != "statement_block":
                    self.events.append(("retexpr", body, sid))
                continue
            if name == "decl":
                target = node.child_by_field_name("name")
                if target is not None and target.type == "identifier":
                    self.declared[scope].add(self._text(target))
            self.events.append((name, node, scope))
        for pos in b64_at:
            best = 0
            for sid, (lo, hi) in self.fn_range.items():
                if lo <= pos < hi and (best == 0 or lo >= self.fn_range[best][0]):
                    best = sid
            if best:
                self.b64_scopes.add(best)

    def _fn_names(self, fn: Any) -> list[str]:
        """Names a function is called by: its own, or the variable/property it is stored in."""
        names = []
        own = fn.child_by_field_name("name")
        if own is not None:
            names.append(self._text(own))
        parent = fn.parent
        if parent is not None:
            if parent.type == "variable_declarator":
                target = parent.child_by_field_name("name")
                if target is not None:
                    names.append(self._text(target))
            elif parent.type == "assignment_expression":
                target = parent.child_by_field_name("left")
                if target is not None and target.type == "identifier":
                    names.append(self._text(target))
                elif target is not None and target.type == "member_expression":
                    prop = target.child_by_field_name("property")
                    if prop is not None:
                        names.append(self._text(prop))
            elif parent.type == "pair":
                key = parent.child_by_field_name("key")
                if key is not None:
                    names.append(self._text(key).strip("'\""))
        return names

    def build_index(self) -> None:
        """Index binding sites by name (after every declaration is known), calls by callee name."""
        for name, node, scope in self.events:
            self.event_scope[node.id] = scope
            if name == "decl":
                target = node.child_by_field_name("name")
                value = node.child_by_field_name("value")
                if target is not None and target.type == "identifier" and value is not None:
                    key = self.resolve(self._text(target), scope)
                    self._site(key, value, scope, "=")
                    if value.id in self.fn_scope:
                        self.fn_keys.setdefault(self.fn_scope[value.id], set()).add(key)
            elif name == "fndecl":
                fname = node.child_by_field_name("name")
                if fname is not None:
                    key = self.resolve(self._text(fname), scope)
                    self._site(key, node, scope, "fn")
                    self.fn_keys.setdefault(self.fn_scope.get(node.id, -1), set()).add(key)
            elif name in ("assign", "aug"):
                left = node.child_by_field_name("left")
                right = node.child_by_field_name("right")
                op = "=" if name == "assign" else "+="
                lhs_key = self.static_path(left, scope)
                if lhs_key is not None:
                    self._site(lhs_key, right, scope, op)
                    if right is not None and right.id in self.fn_scope:
                        self.fn_keys.setdefault(self.fn_scope[right.id], set()).add(lhs_key)
                    if "." in lhs_key[1]:
                        # A property written into an object taints the object: JSON.stringify(o).
                        self._site((lhs_key[0], lhs_key[1].split(".", 1)[0]), right, scope, "prop")
                elif left is not None and left.type == "subscript_expression":
                    root = self.static_path(left.child_by_field_name("object"), scope)
                    if root is not None:
                        self._site(root, right, scope, "prop")
            elif name in ("ret", "retexpr"):
                inner = node if name == "retexpr" else (node.named_children[0] if node.named_children else None)
                if inner is not None and scope:
                    self.returns.setdefault(scope, []).append((inner, scope))
            elif name == "call":
                fn = node.child_by_field_name("function")
                callee_name = None
                if fn is not None and fn.type == "identifier":
                    callee_name = self._text(fn)
                elif fn is not None and fn.type == "member_expression":
                    prop = fn.child_by_field_name("property")
                    callee_name = self._text(prop) if prop is not None else None
                elif fn is not None and fn.type == "subscript_expression":
                    index = fn.child_by_field_name("index")
                    callee_name = self._literal_key(index)
                    if callee_name is None and len(self.dynamic_calls) < 500:
                        self.dynamic_calls.append((node, scope))
                if callee_name:
                    bucket = self.calls_by_name.setdefault(callee_name, [])
                    if len(bucket) < 200:
                        bucket.append((node, scope))

    def _site(self, key: tuple[int, str], node: Any, scope: int, op: str) -> None:
        bucket = self.sites.setdefault(key, [])
        if len(bucket) < 200:
            bucket.append((node, scope, op))

    def static_path(self, node: Any, scope: int, depth: int = 0) -> tuple[int, str] | None:
        """The key of an identifier or member chain whose property names are written out."""
        if node is None or depth > 3:
            return None
        t = node.type
        if t == "identifier":
            return self.resolve(self._text(node), scope)
        if t == "this":
            return (0, "this")
        if t == "parenthesized_expression" and node.named_children:
            return self.static_path(node.named_children[-1], scope, depth + 1)
        if t in ("member_expression", "subscript_expression"):
            if t == "member_expression":
                prop_node = node.child_by_field_name("property")
                prop = self._text(prop_node) if prop_node is not None else None
            else:
                prop = self._literal_key(node.child_by_field_name("index"))
            if prop is None:
                return None
            base = self.static_path(node.child_by_field_name("object"), scope, depth + 1)
            if base is None:
                return None
            if base[1] in ("window", "self", "top", "globalThis") and not self._declared(base[1], scope):
                return (0, prop)
            return (base[0], base[1] + "." + prop)
        return None

    def _literal_key(self, index: Any) -> str | None:
        """The property name a literal subscript spells (``a['x']``, ``a[3]``), else None."""
        if index is None:
            return None
        if index.type == "string":
            return js_unescape(self._text(index)[1:-1])
        if index.type == "number":
            n = _number(self._text(index))
            if n is None:
                return None
            return str(int(n)) if n == int(n) else str(n)
        return None

    def _declared(self, name: str, scope: int) -> bool:
        key = self.resolve(name, scope)
        return name in self.declared.get(key[0], ())

    def value_of(self, key: tuple[int, str]) -> V | None:
        """The joined value of every site binding ``key``; None when nothing binds it."""
        known = self.memo.get(key)
        if known is not None:
            return known
        if key in self.active:
            return EMPTY  # a cycle (x = f(x)): what is known so far
        sites = self.sites.get(key)
        scope, name = key
        is_param = scope in self.fn_params and name in self.fn_params[scope] and name != ""
        if sites is None and not is_param and name != "<return>":
            return None
        self.active.add(key)
        value = EMPTY
        if scope == 0 and name in _BUILTINS and name not in self.declared[0]:
            # ``document.cookie = …`` binds a property of document, not document itself.
            value = V(kind=_BUILTINS[name], loc=_BUILTINS[name] == "location")
        try:
            decoded = None
            placeholder = False
            for node, site_scope, op in sites or ():
                if op == "+=" and decoded is None:
                    decoded = self._loop_decode(node, site_scope)
                    if decoded is not None:
                        continue
                if op == "fn":
                    v = V(kind="fn", fn=self.fn_scope.get(node.id, -1))
                else:
                    v = self.ev(node, site_scope)
                    if op == "+=":
                        v = _flow(v)
                    elif op == "prop":
                        v = V(taint=v.taint, enc=v.enc)
                if v is EMPTY or (v.s == "" and not v.taint):
                    placeholder = True  # var w = ""; … w = decode(x): the initial value says nothing
                    continue
                value = join(value, v)
            if placeholder and value is EMPTY and decoded is None:
                value = V(s="")
            if decoded is not None:
                # y = ''; for (…) y += String.fromCharCode(x.charCodeAt(i) + 2): y is the decoded x.
                value = decoded if value.s in (None, "") and not value.taint else join(value, decoded)
            if is_param:
                value = join(value, self.param_value(scope, self.fn_params[scope].index(name)))
            if name == "<return>":
                for node, site_scope in self.returns.get(scope, ()):
                    value = join(value, self.ev(node, site_scope))
        finally:
            self.active.discard(key)
        self.memo[key] = value
        return value

    def payload(self) -> frozenset[str]:
        """Form labels of what the script itself writes into fields (``input.value = v``,
        ``$(el).val(v)``): a form it then serializes or submits carries them (skimmers copy card
        data into a form of their own)."""
        if self._payload is not None:
            return self._payload
        self._payload = frozenset()
        labels: set[str] = set()
        setters = list(self.calls_by_name.get("val", ())[:100])
        if self.obfuscated:
            for call, scope in self.dynamic_calls:
                name, _ = self._static_name(call.child_by_field_name("function"), scope)
                if name == "val":
                    setters.append((call, scope))
        for call, scope in setters:
            args = self._args(call)
            if len(args) == 1:
                labels |= self.ev(args[0], scope).taint & FORM_LABELS
        for key, sites in list(self.sites.items())[:5000]:
            if key[1].endswith(".value"):
                for node, scope, op in sites[:20]:
                    if op != "prop":
                        labels |= self.ev(node, scope).taint & FORM_LABELS
        self._payload = frozenset(labels)
        return self._payload

    def _loop_decode(self, node: Any, scope: int) -> V | None:
        """The whole string a decoding loop builds, for the common idioms
        ``String.fromCharCode(x.charCodeAt(i) OP k)`` (OP in + - ^) and
        ``String.fromCharCode(x.charCodeAt(i) ^ key.charCodeAt(i % key.length))``."""
        if node is None or node.type != "call_expression":
            return None
        receiver, method, _ = self.callee(node, scope)
        if method != "fromCharCode" or receiver is None or receiver.kind != "String":
            return None
        args = self._args(node)
        if len(args) != 1 or args[0].type != "binary_expression":
            return None
        op_node = args[0].child_by_field_name("operator")
        op = op_node.type if op_node is not None else ""
        if op not in ("+", "-", "^"):
            return None
        left, right = args[0].child_by_field_name("left"), args[0].child_by_field_name("right")
        source, other = left, right
        if not self._is_char_code_at(source, scope):
            source, other = right, left
            if not self._is_char_code_at(source, scope) or op == "-":
                return None
        text_node = source.child_by_field_name("function").child_by_field_name("object")
        text = self.ev(text_node, scope).s
        if text is None or len(text) > MAX_FOLDED:
            return None
        key = self.ev(other, scope)
        if key.n is not None:
            k = int(key.n)
            codes = [ord(c) + k if op == "+" else ord(c) - k if op == "-" else ord(c) ^ k for c in text]
        elif op == "^" and self._is_char_code_at(other, scope):
            key_text = self.ev(other.child_by_field_name("function").child_by_field_name("object"), scope).s
            if not key_text:
                return None
            codes = [ord(c) ^ ord(key_text[i % len(key_text)]) for i, c in enumerate(text)]
        else:
            return None
        return V(s="".join(chr(c & 0xFFFF) for c in codes), hidden=True, dec=frozenset({"char_loop"}))

    def _is_char_code_at(self, node: Any, scope: int) -> bool:
        if node is None or node.type != "call_expression":
            return False
        fn = node.child_by_field_name("function")
        if fn is None or fn.type not in ("member_expression", "subscript_expression"):
            return False
        return self.member_parts(fn, scope)[1] == "charCodeAt"

    def param_value(self, sid: int, index: int) -> V:
        """What flows into parameter ``index`` of function ``sid``: call sites, or the API it is a
        callback of (jQuery ready handlers get jQuery, ``each`` handlers an element, listeners an event)."""
        fn = self.fn_node.get(sid)
        value = EMPTY
        if fn is None:
            return value
        parent = fn.parent
        if parent is not None and parent.type == "arguments" and parent.parent is not None:
            call = parent.parent
            receiver, method, target = self.callee(call, self._scope_of(call))
            rk = (receiver.kind if receiver is not None else target.kind) or ""
            if rk == "jquery" and receiver is None and index == 0:
                return V(kind="jquery")
            if method in ("each", "forEach", "map", "filter", "some", "every") and receiver is not None:
                items = receiver
                if rk == "jquery":
                    args = self._args(call)
                    items = self.ev(args[0], self._scope_of(call)) if args else EMPTY
                if items.kind in ("els", "jq") and index == (1 if rk in ("jq", "jquery") else 0):
                    return V(kind="el", sel=items.sel)
            if (method in ("addEventListener", "attachEvent", "on", "bind", "live", "delegate")
                    or method in _JQ_EVENT_METHODS) and index == 0:
                # The event's target: a field of the element listened on; any field of the page
                # when the listener sits on the document (or is delegated to every input).
                sel = receiver.sel if receiver is not None else ""
                if rk in ("document", "window") or sel in ("document", "window", "body", "html"):
                    sel = "input"
                if method in ("on", "delegate", "live") and len(self._args(call)) >= 3:
                    delegated = self.ev(self._args(call)[1], self._scope_of(call)).text()
                    if delegated:
                        sel = delegated
                return V(kind="event", sel=sel)
        keys = self.fn_keys.get(sid, set())
        for name in self.fn_names.get(sid, []):
            for call, scope in self.calls_by_name.get(name, ()):
                callee = call.child_by_field_name("function")
                if callee is not None and callee.type == "identifier":
                    if self.resolve(name, scope) not in keys:
                        continue  # another function of the same name
                elif len(name) < 3:
                    continue  # obj.e(...): too common a name to tie to this function
                args = self._args(call)
                if index < len(args):
                    value = join(value, self.ev(args[index], scope))
        return value

    def _scope_of(self, node: Any) -> int:
        """The innermost function scope around a node (by byte range)."""
        known = self.event_scope.get(node.id)
        if known is not None:
            return known
        best, best_start = 0, -1
        start = node.start_byte
        for sid, (lo, hi) in self.fn_range.items():
            if lo <= start < hi and lo > best_start and self.fn_node[sid] is not node:
                best, best_start = sid, lo
        return best

    def is_iter(self, sid: int) -> bool:
        """Whether function ``sid`` is the callback of a loop over every form field."""
        known = self.iter_memo.get(sid)
        if known is not None:
            return known
        self.iter_memo[sid] = False
        fn = self.fn_node.get(sid)
        result = False
        parent = fn.parent if fn is not None else None
        if parent is not None and parent.type == "arguments" and parent.parent is not None:
            call = parent.parent
            scope = self._scope_of(call)
            receiver, method, _ = self.callee(call, scope)
            if method in ("each", "forEach", "map", "filter") and receiver is not None:
                items = receiver
                if receiver.kind == "jquery":
                    args = self._args(call)
                    items = self.ev(args[0], scope) if args else EMPTY
                result = items.kind in ("els", "jq") and (not items.sel or ALL_FIELDS in field_labels(items.sel))
        self.iter_memo[sid] = result
        return result

    def string_decoder(self, sid: int) -> Any:
        """A Python function decoding calls of ``sid`` when it is an obfuscator's string-table
        accessor (``_0x6563('0x4f', ']DTn')``): ``i = i - OFFSET; s = TABLE[i]``, optionally with
        obfuscator.io's base64 and RC4 layers, the table rotated by its IIFE. None otherwise."""
        if sid in self.decoders:
            return self.decoders[sid]
        self.decoders[sid] = None
        fn = self.fn_node.get(sid)
        params = self.fn_params.get(sid, [])
        if fn is None or not params or not params[0] or fn.end_byte - fn.start_byte > 20_000:
            return None
        body = self._text(fn)
        p0 = re.escape(params[0])
        shift = re.search(p0 + r"\s*=\s*" + p0 + r"\s*-\s*(0x[0-9a-fA-F]+|\d+)", body)
        table = re.search(r"=\s*([\w$]+)\[" + p0 + r"\]", body)
        if shift is None or table is None:
            return None
        key = self.resolve(table.group(1), sid)
        value = self.value_of(key)
        if value is None or value.arr is None or not value.arr or any(i.s is None for i in value.arr):
            return None
        items = [i.s or "" for i in value.arr]
        rotation = self._rotation(key) % len(items)
        items = items[rotation:] + items[:rotation]
        offset = int(shift.group(1), 0)
        alphabet_match = re.search(r"""['"]([A-Za-z0-9+/=]{65})['"]""", body)
        alphabet = alphabet_match.group(1) if alphabet_match else None
        rc4 = len(params) > 1 and "0x100" in body and "charCodeAt" in body
        b64 = alphabet is not None or "atob" in body

        def decode(index_text: str, rc4_key: str | None) -> str | None:
            index = _number(index_text)
            if index is None:
                return None
            i = int(index) - offset
            if not 0 <= i < len(items):
                return None
            text = items[i]
            if b64:
                text = _obfuscator_b64(text, alphabet)
            if rc4 and rc4_key is not None:
                text = _rc4(text, rc4_key)
            return text

        self.decoders[sid] = decode
        return decode

    def _rotation(self, key: tuple[int, str]) -> int:
        """How far an obfuscator's IIFE ``(function(a, n){ … a.push(a.shift()) … }(TABLE, N))``
        rotates the table: N times."""
        for name, node, scope in self.events:
            if name != "call":
                continue
            args = self._args(node)
            if len(args) != 2 or args[0].type != "identifier" or args[1].type != "number":
                continue
            if self.resolve(self._text(args[0]), scope) != key:
                continue
            fn = node.child_by_field_name("function")
            text = self._text(fn) if fn is not None else ""
            if "push" in text and "shift" in text:
                count = _number(self._text(args[1]))
                return int(count) if count is not None else 0
        return 0

    def _params(self, fn: Any) -> list[str]:
        params = fn.child_by_field_name("parameters") or fn.child_by_field_name("parameter")
        if params is None:
            return []
        if params.type == "identifier":
            return [self._text(params)]
        out = []
        for child in params.named_children:
            if child.type == "identifier":
                out.append(self._text(child))
            elif child.type == "assignment_pattern":
                left = child.child_by_field_name("left")
                if left is not None and left.type == "identifier":
                    out.append(self._text(left))
            else:
                out.append("")  # keep positions: destructuring, rest
        return out

    def _text(self, node: Any) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8", "replace")

    def resolve(self, name: str, scope: int) -> tuple[int, str]:
        s = scope
        for _ in range(200):
            if name in self.declared.get(s, ()):
                return (s, name)
            if s == 0:
                break
            s = self.parent.get(s, 0)
        return (0, name)

    def _is_bound(self, name: str, scope: int) -> bool:
        key = self.resolve(name, scope)
        return key in self.sites or name in self.declared.get(key[0], ())

    # ---- evaluation ------------------------------------------------------------------------

    def ev(self, node: Any, scope: int) -> V:
        if node is None:
            return EMPTY
        cached = self.cache.get(node.id)
        if cached is not None:
            return cached
        self.steps += 1
        if self.steps > MAX_STEPS or (self.steps & 1023 == 0 and time.perf_counter() > self.deadline):
            raise _Budget
        value = self._ev(node, scope)
        self.cache[node.id] = value
        return value

    def _ev(self, node: Any, scope: int) -> V:
        t = node.type
        if t == "string":
            raw = self._text(node)[1:-1]
            return V(s=js_unescape(raw), hidden="\\x" in raw or "\\u" in raw)
        if t == "number":
            return V(n=_number(self._text(node)))
        if t == "identifier":
            return self._identifier(self._text(node), scope)
        if t == "template_string":
            parts: list[str] = []
            vals: list[V] = []
            known = True
            for child in node.named_children:
                if child.type == "string_fragment":
                    parts.append(self._text(child))
                elif child.type == "escape_sequence":
                    parts.append(js_unescape(self._text(child)))
                elif child.type == "template_substitution":
                    inner = child.named_children[0] if child.named_children else None
                    v = self.ev(inner, scope)
                    vals.append(v)
                    if v.text() is None:
                        known = False
                    else:
                        parts.append(v.text() or "")
            if known:
                return V(s="".join(parts), hidden=any(v.hidden for v in vals))
            out = _flow(*vals)
            out.pre = "".join(parts) if parts and node.named_children and node.named_children[0].type != "template_substitution" else None
            return out
        if t == "parenthesized_expression":
            inner = node.named_children[-1] if node.named_children else None
            return self.ev(inner, scope)
        if t == "sequence_expression":
            return self.ev(node.named_children[-1] if node.named_children else None, scope)
        if t in ("assignment_expression", "augmented_assignment_expression"):
            return self.ev(node.child_by_field_name("right"), scope)
        if t == "binary_expression":
            return self._binary(node, scope)
        if t == "unary_expression":
            op = node.child_by_field_name("operator")
            arg = self.ev(node.child_by_field_name("argument"), scope)
            o = op.type if op is not None else ""
            if o == "+":
                num = arg.n if arg.n is not None else _number(arg.s) if arg.s is not None else None
                return V(n=num, taint=arg.taint)
            if o == "-" and arg.n is not None:
                return V(n=-arg.n)
            if o == "~" and arg.n is not None:
                return V(n=float(~int(arg.n)))
            return _flow(arg)
        if t == "ternary_expression":
            return join(self.ev(node.child_by_field_name("consequence"), scope),
                        self.ev(node.child_by_field_name("alternative"), scope))
        if t in ("await_expression", "spread_element", "non_null_expression"):
            return self.ev(node.named_children[0] if node.named_children else None, scope)
        if t == "array":
            items = tuple(self.ev(c, scope) for c in node.named_children[:5000])
            return V(arr=items, taint=_labels(*(i.taint for i in items)), enc=frozenset().union(*(i.enc for i in items)),
                     hidden=any(i.hidden for i in items))
        if t == "object":
            return self._object(node, scope)
        if t == "member_expression" or t == "subscript_expression":
            return self._member(node, scope)
        if t == "call_expression":
            return self._call(node, scope)
        if t == "new_expression":
            return self._new(node, scope)
        if t in _FUNCTION_TYPES:
            return V(kind="fn", fn=self.fn_scope.get(node.id, -1))
        if t == "regex":
            pattern = node.child_by_field_name("pattern")
            return V(kind="regex", s=self._text(pattern) if pattern is not None else "")
        if t == "this":
            return V(kind="this")
        if t in ("true", "false", "null", "undefined"):
            return EMPTY
        return EMPTY

    def _identifier(self, name: str, scope: int) -> V:
        key = self.resolve(name, scope)
        value = self.value_of(key)
        if value is not None:
            return value
        if name in self.declared.get(key[0], ()):
            return EMPTY
        kind = _BUILTINS.get(name)
        if kind is None and name[:6].lower() == "jquery":
            kind = "jquery"  # jQuery17, jQueryNew: copies kept by noConflict(true)
        if kind is not None:
            return V(kind=kind, loc=kind == "location")
        if name in _GLOBAL_FUNCS:
            return V(kind="global:" + name)
        return V(taint=frozenset({"global:" + name}))

    def _binary(self, node: Any, scope: int) -> V:
        op = node.child_by_field_name("operator")
        o = op.type if op is not None else ""
        left = self.ev(node.child_by_field_name("left"), scope)
        right = self.ev(node.child_by_field_name("right"), scope)
        if o == "+":
            if left.n is not None and right.n is not None:
                return V(n=left.n + right.n)
            lt, rt = left.text(), right.text()
            hidden = left.hidden or right.hidden
            if lt is not None and rt is not None and (left.s is not None or right.s is not None):
                return V(s=lt + rt, hidden=hidden)
            out = _flow(left, right)
            if lt is not None:
                out.pre = lt + (right.pre or "")
            elif left.pre is None and left.loc and rt is not None and rt.startswith("//"):
                out.pre = rt  # location.protocol + "//evil.example/…"
            else:
                out.pre = left.pre
            out.hidden = hidden
            return out
        if left.n is not None and right.n is not None:
            a, b = left.n, right.n
            try:
                if o == "-":
                    return V(n=a - b)
                if o == "*":
                    return V(n=a * b)
                if o == "/" and b:
                    return V(n=a / b)
                if o == "%" and b:
                    return V(n=float(int(a) % int(b)))
                if o == "|":
                    return V(n=float(int(a) | int(b)))
                if o == "&":
                    return V(n=float(int(a) & int(b)))
                if o == "^":
                    return V(n=float(int(a) ^ int(b)))
                if o == "<<" and 0 <= b < 64:
                    return V(n=float((int(a) << int(b)) & 0xFFFFFFFF))
                if o == ">>" and 0 <= b < 64:
                    return V(n=float(int(a) >> int(b)))
            except (OverflowError, ValueError):
                return EMPTY
        if o in ("||", "??"):
            return join(left, right)
        if o == "&&":
            return right
        if o in ("-", "*", "/", "%", "|", "&", "^", "<<", ">>", ">>>"):
            return _flow(left, right)
        return EMPTY

    def _object(self, node: Any, scope: int) -> V:
        props: dict[str, V] = {}
        for child in node.named_children[:500]:
            if child.type == "pair":
                key = self._prop_name(child.child_by_field_name("key"), scope)
                if key is not None:
                    props[key] = self.ev(child.child_by_field_name("value"), scope)
            elif child.type == "shorthand_property_identifier":
                name = self._text(child)
                props[name] = self._identifier(name, scope)
        return V(props=props, taint=_labels(*(p.taint for p in props.values())),
                 enc=frozenset().union(*(p.enc for p in props.values())))

    def _prop_name(self, key: Any, scope: int) -> str | None:
        if key is None:
            return None
        if key.type in ("property_identifier", "identifier", "private_property_identifier"):
            return self._text(key)
        if key.type == "computed_property_name":
            inner = key.named_children[0] if key.named_children else None
            return self.ev(inner, scope).text()
        return self.ev(key, scope).text()

    def member_parts(self, node: Any, scope: int) -> tuple[Any, str | None]:
        """(object node, property name) of a member or subscript expression."""
        obj = node.child_by_field_name("object")
        if node.type == "member_expression":
            prop = node.child_by_field_name("property")
            return obj, self._text(prop) if prop is not None else None
        index = node.child_by_field_name("index")
        v = self.ev(index, scope)
        return obj, v.text()

    def path(self, node: Any, scope: int, depth: int = 0) -> tuple[int, str] | None:
        """The environment key of an identifier or member chain (``a``, ``a.b``, ``window.x``)."""
        if node is None or depth > 3:
            return None
        t = node.type
        if t == "identifier":
            return self.resolve(self._text(node), scope)
        if t == "this":
            return (0, "this")
        if t == "parenthesized_expression" and node.named_children:
            return self.path(node.named_children[-1], scope, depth + 1)
        if t in ("member_expression", "subscript_expression"):
            obj, prop = self.member_parts(node, scope)
            if prop is None:
                return None
            base = self.path(obj, scope, depth + 1)
            if base is None:
                return None
            if base[1] in ("window", "self", "top", "globalThis") and not self._is_bound(base[1], scope):
                return (0, prop)
            return (base[0], base[1] + "." + prop)
        return None

    def _member(self, node: Any, scope: int) -> V:
        obj_node, prop = self.member_parts(node, scope)
        key = self.path(node, scope)
        if key is not None and key in self.sites:
            bound = self.value_of(key)
            if bound is not None:
                return bound
        obj = self.ev(obj_node, scope)
        kind = obj.kind or ""
        if prop is None:
            if node.type == "subscript_expression":
                if kind == "els":
                    return V(kind="el", sel=obj.sel, taint=obj.taint)
                if obj.arr is not None:
                    return _flow(obj)
            return _flow(obj)
        if kind == "window":
            return self._identifier(prop, 0)
        if kind == "document":
            if prop == "cookie":
                self.add(STAGE_READ, node, detail="cookie")
                return V(taint=frozenset({"stage:cookie"}))
            if prop in ("location", "URL", "documentURI", "baseURI"):
                return V(kind="location" if prop == "location" else None, loc=True)
            if prop == "forms":
                return V(kind="els", sel="form")
            if prop in ("body", "documentElement", "head"):
                return V(kind="el", sel=prop)
        if kind == "location" or obj.loc:
            return V(kind="location" if prop in ("location",) else None, loc=True, taint=obj.taint)
        if kind.startswith("storage:") and prop not in ("getItem", "setItem", "removeItem", "key", "length", "clear"):
            self.add(STAGE_READ, node, detail=f"{kind[8:]}Storage:{prop}")
            return V(taint=frozenset({f"stage:{kind[8:]}:{prop}"}))
        if kind in ("el", "els", "jq") or kind.startswith("el:"):
            if prop == "value":
                return self._field_read(node, obj, ".value", scope)
            if prop == "elements":
                return V(kind="els", sel=(obj.sel + " " if obj.sel else "") + "input", taint=obj.taint)
            if prop in ("form", "parentNode", "parentElement", "target", "srcElement", "currentTarget",
                        "firstChild", "nextSibling", "lastChild", "options"):
                return V(kind="el" if prop != "options" else "els", sel=obj.sel)
            if kind == "els" and node.type == "subscript_expression":
                return V(kind="el", sel=obj.sel)
            if kind == "jq" and node.type == "subscript_expression":
                return V(kind="el", sel=obj.sel)
            if prop in ("name", "id", "type", "length", "className", "tagName"):
                return EMPTY
        if kind == "event" and prop in ("target", "srcElement", "currentTarget"):
            return V(kind="el", sel=obj.sel)
        if obj.arr is not None and obj.kind != "els":
            if prop == "length":
                return V(n=float(len(obj.arr)))
            idx = _number(prop)
            if idx is not None and idx == int(idx) and 0 <= idx < len(obj.arr):
                item = obj.arr[int(idx)]
                if item.s is not None and not item.hidden and obj.hidden:
                    return V(s=item.s, hidden=True)
                return item
        if obj.props is not None and prop in obj.props:
            return obj.props[prop]
        if obj.s is not None:
            if prop == "length":
                return V(n=float(len(obj.s)))
            idx = _number(prop)
            if idx is not None and idx == int(idx) and 0 <= idx < len(obj.s):
                return V(s=obj.s[int(idx)], hidden=obj.hidden)
        if kind in ("String", "JSON", "Math", "navigator", "jquery", "prototype_form", "Array", "Object"):
            return V(kind=f"{kind}.{prop}")
        if prop in ("cookie",) and kind == "":
            return _flow(obj)
        return _flow(obj)

    def _field_read(self, node: Any, el: V, how: str, scope: int) -> V:
        labels = set(field_labels(el.sel)) if el.sel else {FORM}
        if self._in_iteration(scope):
            labels.add(ALL_FIELDS)
        labels |= {x for x in el.taint if x in FORM_LABELS}
        value = V(taint=frozenset(labels), hidden=el.hidden)
        self.add(FIELD_READ, node, detail=(el.sel or "?") + how, carries=value.taint, hidden=el.hidden)
        return value

    def _in_iteration(self, scope: int) -> bool:
        s = scope
        for _ in range(50):
            if s and self.is_iter(s):
                return True
            if s == 0:
                return False
            s = self.parent.get(s, 0)
        return False

    def _args(self, node: Any) -> list[Any]:
        args = node.child_by_field_name("arguments")
        if args is None:
            return []
        if args.type == "template_string":
            return [args]
        return [c for c in args.named_children if c.type != "comment"][:64]

    def callee(self, node: Any, scope: int) -> tuple[V | None, str | None, V]:
        """(receiver, method name, callee value) of a call; receiver is None for plain calls."""
        fn = node.child_by_field_name("function") or node.child_by_field_name("constructor")
        if fn is None:
            return None, None, EMPTY
        while fn.type == "parenthesized_expression" and fn.named_children:
            fn = fn.named_children[-1]
        if fn.type == "sequence_expression" and fn.named_children:  # (0, obj.method)(...)
            fn = fn.named_children[-1]
        if fn.type in ("member_expression", "subscript_expression"):
            obj_node, prop = self.member_parts(fn, scope)
            receiver = self.ev(obj_node, scope)
            if prop is not None and (receiver.kind == "window" or receiver.kind == "this" and (
                    prop in _GLOBAL_FUNCS or prop in _BUILTINS)):
                target = self._identifier(prop, 0)
                return None, prop, target
            key = self.path(fn, scope)
            bound = self.value_of(key) if key is not None and key in self.sites else None
            if bound is None and receiver.props is not None and prop is not None:
                bound = receiver.props.get(prop)
            return receiver, prop, bound if bound is not None else EMPTY
        value = self.ev(fn, scope)
        name = self._text(fn) if fn.type == "identifier" else None
        if value.kind and value.kind.startswith("global:"):
            name = value.kind[7:]
        return None, name, value

    def _call(self, node: Any, scope: int) -> V:
        receiver, method, target = self.callee(node, scope)
        arg_nodes = self._args(node)
        args = [self.ev(a, scope) for a in arg_nodes]
        a0 = args[0] if args else EMPTY
        if target.kind == "fn" and target.fn >= 0:
            decoder = self.string_decoder(target.fn)
            if decoder is not None and args and a0.text() is not None:
                decoded = decoder(a0.text() or "", args[1].text() if len(args) > 1 else None)
                if decoded is not None:
                    return V(s=decoded, hidden=True, dec=frozenset({"string_table"}))
            result = self.value_of((target.fn, "<return>")) or EMPTY
            if target.fn in self.b64_scopes:
                carried = _flow(*args, enc=frozenset({"base64"}))
                if carried.taint & FORM_LABELS:
                    self.add(ENCODING, node, detail="base64 (own encoder)", carries=carried.taint)
                return join(result, carried)
            if result.s is None and result.kind is None and result.arr is None and args:
                # What a local function returns is, unless known better, made from its arguments
                # (encoders, wrappers): their labels pass through.
                return join(result, V(taint=_labels(*(a.taint for a in args)), enc=frozenset().union(*(a.enc for a in args))))
            return result
        kind = receiver.kind if receiver is not None else None
        rk = kind or ""
        # -- plain global functions -------------------------------------------------------------
        if receiver is None or rk == "window":
            name = method or ""
            tk = target.kind or ""
            if tk.startswith("global:"):
                name = tk[7:]
            if name == "atob" and a0.s is not None:
                return V(s=_atob(a0.s), hidden=True, dec=frozenset({"atob"}))
            if name in ("unescape", "decodeURIComponent", "decodeURI"):
                if a0.s is not None:
                    return V(s=unquote(a0.s, errors="replace") if "%u" not in a0.s else _unescape_u(a0.s),
                             hidden=True, dec=frozenset({name}))
                return _flow(a0, dec=frozenset({name}))
            if name == "atob":
                return _flow(a0, dec=frozenset({"atob"}))
            if name in _ENCODERS:
                if a0.taint & FORM_LABELS:
                    self.add(ENCODING, node, detail=name, carries=a0.taint)
                return _flow(a0, enc=frozenset({_ENCODERS[name]}))
            if name == "$F":
                return self._field_read(node, V(kind="el", sel=a0.text() or ""), "$F()", scope)
            if tk == "jquery":
                return self._jquery_call(a0, arg_nodes, scope)
            if tk == "ctor:regex":
                return V(kind="regex", s=a0.text() or "")
            if tk == "ctor:function" or name in ("eval", "setTimeout", "setInterval", "Function"):
                return EMPTY
            return _flow(*args)
        # -- String, JSON, jQuery statics -------------------------------------------------------
        if rk == "String" and method == "fromCharCode":
            codes = [a.n for a in args]
            if codes and all(c is not None for c in codes):
                try:
                    return V(s="".join(chr(int(c) & 0x1FFFFF) for c in codes if c is not None), hidden=True,
                             dec=frozenset({"fromCharCode"}))
                except (ValueError, OverflowError):
                    return EMPTY
            return _flow(*args, dec=frozenset({"fromCharCode"}))
        if rk == "JSON" and method == "stringify":
            if a0.taint & FORM_LABELS:
                self.add(ENCODING, node, detail="JSON.stringify", carries=a0.taint)
            return _flow(a0, enc=frozenset({"JSON.stringify"}))
        if rk == "prototype_form" and method in ("serialize", "serializeElements", "getElements"):
            el = a0 if a0.kind else V(kind="el", sel=self._text(arg_nodes[0])[:80] if arg_nodes else "form")
            labels = set(form_labels(el.sel or "form")) | {x for x in a0.taint if x in FORM_LABELS}
            value = V(taint=frozenset(labels))
            self.add(FIELD_READ, node, detail=f"Form.{method}({el.sel or '?'})", carries=value.taint)
            return value
        if rk == "jquery":
            if method == "noConflict":
                return V(kind="jquery")
            if method in ("each", "map", "grep") and len(args) >= 2:
                return EMPTY
            return _flow(*args)
        if rk.startswith("storage:"):
            store = rk[8:]
            if method == "getItem":
                k = a0.text() or "?"
                self.add(STAGE_READ, node, detail=f"{store}Storage:{k}")
                return V(taint=frozenset({f"stage:{store}:{k}"}))
            return EMPTY
        if rk == "document" or rk.startswith("el") or rk == "jq" and method in _ELEMENT_QUERIES:
            if method in _ELEMENT_QUERIES:
                sel = a0.text() or ""
                if method == "getElementById":
                    sel = "#" + sel
                elif method == "getElementsByName":
                    sel = f"[name={sel}]"
                elif method == "getElementsByClassName":
                    sel = "." + sel
                scoped = (receiver.sel + " " if receiver is not None and receiver.sel and rk != "document" else "")
                many = method in ("querySelectorAll", "getElementsByName", "getElementsByTagName",
                                  "getElementsByClassName")
                return V(kind="els" if many else "el", sel=scoped + sel, hidden=a0.hidden)
            if method == "createElement":
                tag = (a0.text() or "").lower()
                return V(kind="el:" + tag if tag else "el")
            if method == "getAttribute":
                return EMPTY
        if rk.startswith("el:") and method == "cloneNode":
            return receiver or EMPTY
        if rk == "jq":
            return self._jquery_method(node, receiver, method, args, arg_nodes, scope)
        if rk == "regex" or rk == "location":
            return EMPTY
        # -- string methods ----------------------------------------------------------------------
        if receiver is not None:
            folded = _string_method(receiver, method, args)
            if folded is not None:
                return folded
            if method in ("serialize", "serializeArray") and receiver.kind is None:
                value = V(taint=frozenset({FORM, ALL_FIELDS}))
                self.add(FIELD_READ, node, detail="." + method + "()", carries=value.taint)
                return value
            if method == "val" and not args:
                return self._field_read(node, V(kind="jq", sel=receiver.sel), ".val()", scope)
            return _flow(receiver, *args)
        return _flow(*args)

    def _jquery_call(self, a0: V, arg_nodes: list[Any], scope: int) -> V:
        if a0.kind == "fn":
            return V(kind="jq", sel="document")
        if a0.kind and (a0.kind.startswith("el") or a0.kind in ("document", "window", "jq")):
            return V(kind="jq", sel=a0.sel or a0.kind, taint=a0.taint)
        if a0.kind == "this":
            return V(kind="jq", sel="", taint=frozenset({ALL_FIELDS}) if self._in_iteration_node(arg_nodes, scope) else frozenset())
        text = a0.text()
        if text is not None and text.lstrip().startswith("<"):
            return V(kind="jq", sel="", props={"<markup>": V(s=text)})
        return V(kind="jq", sel=text or "", hidden=a0.hidden)

    def _in_iteration_node(self, arg_nodes: list[Any], scope: int) -> bool:
        return self._in_iteration(scope)

    def _jquery_method(self, node: Any, receiver: V, method: str | None, args: list[V], arg_nodes: list[Any],
                       scope: int) -> V:
        a0 = args[0] if args else EMPTY
        if method == "val" and not args:
            el = V(kind="jq", sel=receiver.sel, taint=receiver.taint)
            value = self._field_read(node, el, ".val()", scope)
            return value
        if method in ("serialize", "serializeArray", "serializeJSON"):
            value = V(taint=form_labels(receiver.sel or "form") | self.payload(), hidden=receiver.hidden)
            self.add(FIELD_READ, node, detail=f"{receiver.sel or '?'}.{method}()", carries=value.taint,
                     hidden=receiver.hidden)
            return value
        if method in _JQ_TRAVERSE:
            sel = a0.text() or ""
            return V(kind="jq", sel=(receiver.sel + " " + sel).strip() if sel else receiver.sel, taint=receiver.taint)
        if method == "html" and args and receiver.props and "<markup>" in receiver.props:
            return V(kind="jq", props={"<markup>": a0})
        if method == "html" and args and a0.s is not None:
            return V(kind="jq", props={"<markup>": a0})
        if method == "text" and not args and receiver.props and "<markup>" in receiver.props:
            markup = receiver.props["<markup>"]
            if markup.s is not None:
                return V(s=_html.unescape(re.sub(r"<[^>]*>", "", markup.s)), hidden=True, dec=frozenset({"entities"}))
        if method in ("attr", "prop", "data", "text", "html") and not args[1:]:
            return _flow(receiver) if method != "attr" else EMPTY
        return V(kind="jq", sel=receiver.sel, taint=receiver.taint) if method in ("each", "on", "bind", "css", "hide",
                                                                                   "show", "addClass") else _flow(*args)

    def _new(self, node: Any, scope: int) -> V:
        _, _, target = self.callee(node, scope)
        tk = target.kind or ""
        args = [self.ev(a, scope) for a in self._args(node)]
        a0 = args[0] if args else EMPTY
        if tk == "ctor:xhr":
            return V(kind="xhr")
        if tk == "ctor:img":
            return V(kind="el:img")
        if tk == "ctor:ws":
            return V(kind="ws", props={"url": a0})
        if tk == "ctor:regex":
            return V(kind="regex", s=a0.text() or "")
        if tk == "ctor:formdata":
            if a0.kind or a0.sel:
                value = V(taint=form_labels(a0.sel or "form"))
                self.add(FIELD_READ, node, detail=f"new FormData({a0.sel or '?'})", carries=value.taint)
                return value
            return V(kind="formdata")
        if target.kind == "fn":
            return EMPTY
        return _flow(*args)

    def run(self) -> None:
        try:
            self.build_index()
            self._final()
        except _Budget:
            self.truncated = True

    # ---- facts ---------------------------------------------------------------------------------

    def add(self, kind: str, node: Any, detail: str = "", url: V | None = None, carries: frozenset[str] = frozenset(),
            encodings: frozenset[str] = frozenset(), hidden: bool = False) -> None:
        if len(self.facts) >= 2000:
            return
        url_text = None
        host, relative = None, False
        if url is not None:
            url_text = url.s if url.s is not None else url.pre
            host, relative = destination(url_text)
            hidden = hidden or url.hidden
        key = (kind, node.start_byte, detail, host)
        if key in self.fact_keys:
            return
        self.fact_keys.add(key)
        fields = tuple(sorted(x for x in carries if x in FORM_LABELS))
        self.facts.append(Fact(kind, node.start_byte, node.end_byte, detail, host, url_text[:300] if url_text else None,
                               frozenset(carries), frozenset(encodings), fields, hidden, relative))

    def _final(self) -> None:
        sends: list[tuple[Any, int]] = []
        for name, node, scope in self.events:
            if name in ("call", "new"):
                if self._worth(node, scope, name):
                    self._call_facts(node, scope, prepass=True)
                    sends.append((node, scope))
            elif name in ("assign", "aug"):
                if self._worth_assign(node, scope):
                    self._assign_facts(node, scope)
            elif name == "cmp":
                if not self.obfuscated and not _WORTH_TEXT.search(self.data[node.start_byte:node.start_byte + 400]):
                    continue
                left = self.ev(node.child_by_field_name("left"), scope)
                right = self.ev(node.child_by_field_name("right"), scope)
                self._checkout_test(node, left, right)
        for node, scope in sends:
            self._call_facts(node, scope, prepass=False)
        # Cookie reads not on any demanded path are still facts (a sender may read them later).
        for i, match in enumerate(_COOKIE_READ.finditer(self.data)):
            if i >= 50:
                break
            node = self.tree.root_node.descendant_for_byte_range(match.start(), match.end() - 1)
            if node is not None:
                self.add(STAGE_READ, node, detail="cookie")
        # Globals written with form data: what another script of the page may send. Only worth
        # evaluating every global when the script reads fields at all.
        if not any(f.kind == FIELD_READ for f in self.facts) and not _SOURCE_NEAR.search(
                self.data.decode("latin-1")):
            return
        done: set[str] = set()
        for key in list(self.sites)[:3000]:
            if key[0] != 0 or key[1].startswith("this") or key[1].split(".", 1)[0] in done:
                continue
            value = self.value_of(key)
            if value is None or not value.taint & FORM_LABELS:
                continue
            root = key[1].split(".", 1)[0]
            root_kind = (self.value_of((0, root)) or EMPTY).kind or ""
            if root_kind.startswith("el") or root_kind in ("xhr", "ws", "jq"):
                continue
            site = self.sites[key][0][0]
            done.add(root)
            self.add(STAGE_WRITE, site, detail=f"global:{root}", carries=value.taint)

    def _static_name(self, fn: Any, scope: int) -> tuple[str | None, bool]:
        """(name, dynamic) of a callee or assignment target: written out, or computed."""
        if fn is None:
            return None, False
        if fn.type == "identifier":
            return self._text(fn), False
        if fn.type == "member_expression":
            prop = fn.child_by_field_name("property")
            return (self._text(prop) if prop is not None else None), False
        if fn.type == "subscript_expression":
            index = fn.child_by_field_name("index")
            if index is not None and index.type in ("string", "number"):
                return self._literal_key(index), False
            if not self.obfuscated:
                return None, True
            return self.ev(index, scope).text(), True
        if fn.type == "parenthesized_expression" and fn.named_children:
            return self._static_name(fn.named_children[-1], scope)
        if fn.type == "sequence_expression" and fn.named_children:
            return self._static_name(fn.named_children[-1], scope)
        return None, True

    def _worth(self, node: Any, scope: int, kind: str) -> bool:
        """Whether a call can be a sink, a source, staging or a condition (cheap, before evaluating)."""
        fn = node.child_by_field_name("function") or node.child_by_field_name("constructor")
        name, dynamic = self._static_name(fn, scope)
        if name is None:
            return dynamic and self.obfuscated
        if kind == "new":
            return name in ("Function", "FormData")
        if name in _CONDITION_METHODS:
            return dynamic or self.obfuscated or bool(_WORTH_TEXT.search(self.data[node.start_byte:node.start_byte + 400]))
        return name in _SINK_METHODS

    def _worth_assign(self, node: Any, scope: int) -> bool:
        left = node.child_by_field_name("left")
        if left is None:
            return False
        if left.type == "identifier":
            return self._text(left) == "location"
        name, _ = self._static_name(left, scope)
        if name in _SINK_PROPS:
            return True
        obj = left.child_by_field_name("object")
        return obj is not None and b"Storage" in self.data[obj.start_byte:obj.end_byte]

    def _checkout_test(self, node: Any, a: V, b: V) -> None:
        for x, y in ((a, b), (b, a)):
            text = y.text() or (y.s if y.kind == "regex" else None)
            if x.loc and text and _CHECKOUT_RE.search(text):
                self.add(CHECKOUT_CONDITION, node, detail=text[:80], hidden=y.hidden)
                return

    def _call_facts(self, node: Any, scope: int, prepass: bool) -> None:
        receiver, method, target = self.callee(node, scope)
        arg_nodes = self._args(node)
        args = [self.ev(a, scope) for a in arg_nodes]
        a0 = args[0] if args else EMPTY
        a1 = args[1] if len(args) > 1 else EMPTY
        rk = (receiver.kind if receiver is not None else "") or ""
        fn = node.child_by_field_name("function") or node.child_by_field_name("constructor")
        recv_key = None
        if fn is not None and fn.type in ("member_expression", "subscript_expression"):
            recv_key = self.path(fn.child_by_field_name("object"), scope)
        if prepass:
            if rk == "xhr" and method == "open" and len(args) >= 2:
                self.xhr_urls[recv_key] = args[1]
            elif rk.startswith("el") and method == "setAttribute" and args:
                attr = (a0.text() or "").lower()
                if attr == "action":
                    self.form_actions[recv_key] = a1
                elif attr in ("style", "width", "height", "hidden") and _hides(attr, a1):
                    self.hidden_keys.add(recv_key)
            return
        if node.type == "new_expression":
            tk = target.kind or ""
            if tk == "ctor:function" and args:
                self._exec(node, args[-1], "new Function")
            return
        tk = target.kind or ""
        name = method or ""
        if tk.startswith("global:"):
            name = tk[7:]
        if receiver is None or rk == "window":
            if name in ("eval", "Function") or tk == "ctor:function":
                if args:
                    self._exec(node, args[-1] if name != "eval" else a0, name)
            elif name in ("setTimeout", "setInterval") and args and arg_nodes[0].type not in _FUNCTION_TYPES:
                if a0.kind != "fn" and (a0.s is not None or a0.pre is not None or a0.dec or a0.taint):
                    self._exec(node, a0, name)
            elif name == "fetch":
                opts = a1.props or {}
                body = opts.get("body", EMPTY)
                self._send(node, "fetch", a0, _flow(a0, body))
            elif name == "open" and (rk == "window" or tk == "global:open"):
                self._navigate(node, a0, "window.open")
            return
        if rk == "navigator" and method == "sendBeacon":
            self._send(node, "sendBeacon", a0, _flow(a0, a1))
        elif rk == "xhr" and method == "send":
            url = self.xhr_urls.get(recv_key, EMPTY)
            self._send(node, "XMLHttpRequest", url, _flow(a0, url))
        elif rk == "ws" and method == "send":
            url = (receiver.props or {}).get("url", EMPTY) if receiver is not None else EMPTY
            self._send(node, "WebSocket", url, a0)
        elif (rk == "jquery" and method in ("ajax", "post", "get", "getJSON", "getScript", "load")
              or method == "ajax" and args and "url" in (a0.props or {})):
            if method == "ajax":
                opts = a0.props or a1.props or {}
                url = opts.get("url", a0 if a0.props is None else EMPTY)
                data = opts.get("data", EMPTY)
            else:
                url, data = a0, a1
            if method == "getScript":
                self._inject(node, "script", url)
            self._send(node, f"jQuery.{method}", url, _flow(url, data))
        elif rk.startswith("el:form") and method == "submit":
            action = self.form_actions.get(recv_key, EMPTY)
            self._send(node, "form.submit", action, V(taint=self.input_payload | self.payload()))
        elif rk == "document" and method in ("write", "writeln"):
            self._markup(node, _concat(args), f"document.{method}")
        elif method == "insertAdjacentHTML" and len(args) >= 2:
            self._markup(node, a1, "insertAdjacentHTML")
        elif rk == "jq" and method in ("html", "append", "prepend", "after", "before", "replaceWith") and args:
            if a0.s is not None or a0.pre is not None or a0.dec:
                self._markup(node, a0, f"jQuery.{method}")
        elif rk == "location" and method in ("assign", "replace"):
            self._navigate(node, a0, f"location.{method}")
        elif rk.startswith("storage:") and method == "setItem" and len(args) >= 2:
            store = rk[8:]
            self.add(STAGE_WRITE, node, detail=f"{store}Storage:{a0.text() or '?'}", carries=a1.taint,
                     encodings=a1.enc)
        elif rk.startswith("el") and method == "setAttribute" and len(args) >= 2 and (a0.text() or "").lower() == "src":
            self._src(node, receiver, recv_key, a1)
        if method in ("addEventListener", "attachEvent") and args:
            event = (a0.text() or "").lower().removeprefix("on")
            if event in _EVENTS and (rk in ("el", "els", "jq", "document", "window") or rk.startswith("el:")):
                self.add(FORM_HOOK, node, detail=event)
        elif rk == "jq" and method in ("on", "bind", "live", "delegate") and args:
            for event in (a0.text() or "").lower().split():
                if event.split(".")[0] in _EVENTS:
                    self.add(FORM_HOOK, node, detail=event.split(".")[0])
                    break
        elif rk == "jq" and method in _JQ_EVENT_METHODS and args and any(a.kind == "fn" for a in args):
            self.add(FORM_HOOK, node, detail=method)
        if receiver is not None and method in ("test", "exec", "match", "indexOf", "search", "includes", "startsWith",
                                                "endsWith", "lastIndexOf") and args:
            self._checkout_test(node, receiver, a0)

    def _assign_facts(self, node: Any, scope: int) -> None:
        left = node.child_by_field_name("left")
        if left is None:
            return
        value = self.ev(node.child_by_field_name("right"), scope)
        if left.type == "identifier":
            if self._text(left) == "location" and not self._is_bound("location", scope):
                self._navigate(node, value, "location")
            return
        if left.type not in ("member_expression", "subscript_expression"):
            return
        obj_node, prop = self.member_parts(left, scope)
        obj = self.ev(obj_node, scope)
        ok = obj.kind or ""
        obj_key = self.path(obj_node, scope)
        if prop is None:
            return
        if ok == "window" and prop == "location" or ok == "document" and prop == "location":
            self._navigate(node, value, "location")
        elif (ok == "location" or obj.loc) and prop in ("href", "pathname", "search", "hash"):
            self._navigate(node, value, f"location.{prop}")
        elif ok == "document" and prop == "cookie":
            text = value.s if value.s is not None else value.pre
            k = text.split("=", 1)[0].strip() if text and "=" in text else "?"
            self.add(STAGE_WRITE, node, detail=f"cookie:{k}", carries=value.taint, encodings=value.enc)
        elif ok.startswith("storage:"):
            self.add(STAGE_WRITE, node, detail=f"{ok[8:]}Storage:{prop}", carries=value.taint, encodings=value.enc)
        elif prop in ("innerHTML", "outerHTML"):
            self._markup(node, value, prop)
        elif prop == "src" and (ok.startswith("el") or ok == "" and value.taint & FORM_LABELS):
            self._src(node, obj, obj_key, value)
        elif prop == "action" and ok.startswith("el"):
            self.form_actions[obj_key] = value
        elif prop == "value" and ok.startswith("el:input") or prop == "value" and ok == "el:textarea":
            self.input_payload = _labels(self.input_payload, value.taint)
        elif prop in ("onsubmit", "onclick", "onchange", "onblur") and value.kind == "fn":
            self.add(FORM_HOOK, node, detail=prop[2:])
        elif prop in ("display", "visibility", "width", "height") and _hides(prop, value):
            base = obj_node
            if base.type == "member_expression":  # x.style.display
                base = base.child_by_field_name("object")
            self.hidden_keys.add(self.path(base, scope))
        elif prop in ("width", "height") and ok.startswith("el") and _hides(prop, value):
            self.hidden_keys.add(obj_key)

    def _src(self, node: Any, element: V | None, key: Any, url: V) -> None:
        kind = element.kind if element is not None else ""
        if kind == "el:script":
            self._inject(node, "script", url)
        elif kind == "el:iframe" or kind == "el:frame":
            self._inject(node, "iframe", url, hidden=key in self.hidden_keys)
        if url.taint & (FORM_LABELS | {"stage:cookie"}) or any(x.startswith(("stage:", "global:")) for x in url.taint):
            sink = "image" if kind == "el:img" else f"{(kind or 'el')[3:] or 'element'}.src"
            self._send(node, sink, url, url)
        elif kind == "el:img":
            self._send(node, "image", url, url)

    def _send(self, node: Any, sink: str, url: V, payload: V) -> None:
        self.add(SEND, node, detail=sink, url=url, carries=payload.taint, encodings=payload.enc)

    def _inject(self, node: Any, element: str, url: V, hidden: bool = False) -> None:
        kind = SCRIPT_INJECTION if element == "script" else IFRAME_INJECTION
        self.add(kind, node, detail=element + (" hidden" if hidden else ""), url=url, carries=url.taint)

    def _navigate(self, node: Any, url: V, how: str) -> None:
        self.add(REDIRECT, node, detail=how, url=url, carries=url.taint, encodings=url.enc)
        if url.taint & FORM_LABELS:
            self._send(node, how, url, url)

    def _exec(self, node: Any, code: V, how: str) -> None:
        decoded = bool(code.dec) or code.hidden
        assembled = code.s is None and (code.pre is not None or bool(code.taint))
        if decoded or assembled:
            self.add(EXEC_DECODED, node, detail=how + (" of decoded code" if decoded else " of assembled code"),
                     hidden=True)
        if code.s is not None and self.depth < MAX_NESTING and code.s.strip():
            self._nested(node, code.s, via=how)

    def _markup(self, node: Any, value: V, how: str) -> None:
        text = value.s if value.s is not None else value.pre
        if not text:
            return
        lower = text.lower()
        if "<script" in lower:
            for match in list(_SCRIPT_TAG_RE.finditer(text))[:20]:
                attrs, body = match.group(1), match.group(2)
                src = _SRC_ATTR_RE.search(attrs)
                if src:
                    self.add(MARKUP_WRITE, node, detail=f"{how}: <script src>", url=V(s=src.group(1), hidden=value.hidden))
                elif body.strip() and self.depth < MAX_NESTING:
                    self.add(MARKUP_WRITE, node, detail=f"{how}: inline <script>", hidden=value.hidden)
                    self._nested(node, body, via=how)
        if "<iframe" in lower:
            for match in list(_IFRAME_TAG_RE.finditer(text))[:20]:
                attrs = match.group(1)
                src = _SRC_ATTR_RE.search(attrs)
                hidden = bool(_HIDDEN_ATTR_RE.search(attrs))
                self.add(MARKUP_WRITE, node, detail=f"{how}: <iframe{' hidden' if hidden else ''}>",
                         url=V(s=src.group(1), hidden=value.hidden) if src else None, hidden=value.hidden)
                if hidden:
                    self.add(IFRAME_INJECTION, node, detail="iframe hidden",
                             url=V(s=src.group(1), hidden=value.hidden) if src else None)

    def _nested(self, node: Any, code: str, via: str) -> None:
        self.nested += 1
        if self.nested > MAX_NESTED_RUNS:
            self.truncated = True
            return
        inner = behaviour_facts(code, _depth=self.depth + 1, _deadline=self.deadline)
        for f in inner.facts:
            self.add(f.kind, node, detail=f"{f.detail} (in code run by {via})",
                     url=V(s=f.url, hidden=True) if f.url else None, carries=f.carries, encodings=f.encodings,
                     hidden=True)
        if inner.truncated:
            self.truncated = True


def _hides(prop: str, value: V) -> bool:
    text = (value.text() or "").strip().lower().replace(" ", "")
    if prop in ("width", "height"):
        return text in ("0", "1", "0px", "1px")
    if prop == "hidden":
        return True
    return "none" in text or "hidden" in text or bool(_HIDDEN_ATTR_RE.search(text))


def _concat(values: list[V]) -> V:
    out = values[0] if values else EMPTY
    for v in values[1:]:
        out = V(s=(out.s or "") + (v.s or "") if out.s is not None and v.s is not None else None,
                pre=out.pre, taint=_labels(out.taint, v.taint), hidden=out.hidden or v.hidden, dec=out.dec | v.dec)
    return out


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    t = text.strip().replace("_", "")
    if not t:
        return 0.0 if text == "" else None
    try:
        if t[:2].lower() in ("0x", "0o", "0b"):
            return float(int(t, 0))
        if len(t) > 1 and t[0] == "0" and t.isdigit():
            return float(int(t, 8)) if all(c in "01234567" for c in t) else float(t)
        return float(t)
    except ValueError:
        return None


_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _obfuscator_b64(text: str, alphabet: str | None) -> str:
    """obfuscator.io's string layer: base64 (in its own alphabet), then UTF-8 via %-escapes."""
    if alphabet and alphabet != _STD_B64:
        text = text.translate(str.maketrans(alphabet, _STD_B64))
    raw = _atob(text.rstrip("="))
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def _rc4(text: str, key: str) -> str:
    """RC4 over char codes, as obfuscator.io's rc4 string layer applies it."""
    if not key:
        return text
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + ord(key[i % len(key)])) % 256
        box[i], box[j] = box[j], box[i]
    out = []
    i = j = 0
    for ch in text[:MAX_FOLDED]:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(chr((ord(ch) ^ box[(box[i] + box[j]) % 256]) & 0xFFFF))
    return "".join(out)


def _atob(text: str) -> str:
    try:
        raw = b64decode(text.strip() + "=" * (-len(text.strip()) % 4), validate=False)
    except (ValueError, TypeError):
        return ""
    return raw.decode("latin-1")


def _unescape_u(text: str) -> str:
    text = re.sub(r"%u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return unquote(text, errors="replace")


def _string_method(receiver: V, method: str | None, args: list[V]) -> V | None:
    """Fold a string or array method on constants (split, join, reverse, replace, slices, …)."""
    s = receiver.s
    a0 = args[0] if args else EMPTY
    hidden = receiver.hidden or any(a.hidden for a in args)
    if method == "join" and receiver.arr is not None:
        sep = a0.text() if args else ","
        texts = [i.text() for i in receiver.arr]
        if sep is not None and all(t is not None for t in texts):
            return V(s=sep.join(t for t in texts if t is not None), hidden=hidden or receiver.hidden)
        return V(taint=receiver.taint, enc=receiver.enc | ({"join"} and frozenset({"join"})), hidden=hidden)
    if method == "reverse" and receiver.arr is not None:
        return V(arr=tuple(reversed(receiver.arr)), hidden=hidden)
    if method == "concat" and receiver.arr is not None:
        extra: tuple[V, ...] = ()
        for a in args:
            extra += a.arr if a.arr is not None else (a,)
        return V(arr=receiver.arr + extra, hidden=hidden)
    if s is None:
        if method in ("replace", "toString", "trim", "toLowerCase", "toUpperCase", "substr", "substring", "slice",
                      "split", "concat", "join", "replaceAll"):
            return V(taint=_labels(receiver.taint, *(a.taint for a in args)), enc=receiver.enc, dec=receiver.dec,
                     hidden=hidden, loc=receiver.loc, pre=receiver.pre if method in ("toString", "trim") else None)
        return None
    try:
        if method == "split":
            sep = a0.text()
            if sep is None and a0.kind != "regex":
                return None
            if a0.kind == "regex":
                if not re.fullmatch(r"[\w ,;|.~#@!-]*|\\[|.]", a0.s or ""):
                    return None
                parts = re.split(a0.s or "", s) if a0.s else list(s)
            else:
                parts = s.split(sep) if sep else list(s)
            return V(arr=tuple(V(s=p, hidden=hidden) for p in parts[:20000]), hidden=hidden)
        if method in ("replace", "replaceAll") and len(args) >= 2:
            new = args[1].text()
            if new is None:
                return None
            if args[0].kind == "regex":
                pat = args[0].s or ""
                if not re.fullmatch(r"[\w ,;|~#@!%-]*", pat):
                    return None
                return V(s=s.replace(pat, new), hidden=hidden)
            old = a0.text()
            if old is None:
                return None
            return V(s=s.replace(old, new) if method == "replaceAll" else s.replace(old, new, 1), hidden=hidden)
        if method in ("toLowerCase", "toUpperCase", "trim", "toString"):
            return V(s=getattr(s, {"toLowerCase": "lower", "toUpperCase": "upper", "trim": "strip",
                                   "toString": "__str__"}[method])(), hidden=hidden)
        if method in ("substr", "substring", "slice", "charAt", "concat"):
            nums = [a.n for a in args]
            if method == "concat":
                texts = [a.text() for a in args]
                if any(t is None for t in texts):
                    return None
                return V(s=s + "".join(t for t in texts if t is not None), hidden=hidden)
            if any(n is None for n in nums):
                return None
            ints = [int(n) for n in nums if n is not None]
            if method == "charAt":
                i = ints[0] if ints else 0
                return V(s=s[i] if 0 <= i < len(s) else "", hidden=hidden)
            if method == "substr":
                start = ints[0] if ints else 0
                start = max(0, len(s) + start) if start < 0 else start
                length = ints[1] if len(ints) > 1 else len(s)
                return V(s=s[start:start + max(0, length)], hidden=hidden)
            if method == "substring":
                lo = max(0, ints[0]) if ints else 0
                hi = max(0, ints[1]) if len(ints) > 1 else len(s)
                return V(s=s[min(lo, hi):max(lo, hi)], hidden=hidden)
            lo = ints[0] if ints else 0
            hi = ints[1] if len(ints) > 1 else len(s)
            return V(s=s[lo:hi], hidden=hidden)
        if method == "charCodeAt":
            i = int(a0.n) if a0.n is not None else 0
            return V(n=float(ord(s[i]))) if 0 <= i < len(s) else EMPTY
    except (ValueError, IndexError, re.error, OverflowError):
        return None
    return None


# -- entry points -----------------------------------------------------------------------------------

_URL_IN_STRING = re.compile(r"""["'`](?:(?:(?:https?|wss?):)?//(?!www\.w3\.org)[A-Za-z0-9-]+\.[A-Za-z0-9.-]+"""
                            r"""|[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,12}/)""")
_SOURCE_NEAR = re.compile(r"\.value\b|\.val\(|serializ|FormData|querySelectorAll|getElementsBy|\.elements|cc_?num|cvv|card",
                          re.I)
_SEND_NEAR = re.compile(r"XMLHttpRequest|fetch\(|sendBeacon|WebSocket|new Image|\.src\s*=|ajax|\.post\(|\.get\(|"
                        r"\.submit\(|localStorage|sessionStorage|cookie", re.I)
_BROWSER_HINT = re.compile(r"document|window|location|navigator|jQuery|\$\(|XMLHttpRequest|localStorage|\.src\b"
                           r"|this\[['\"]")
_ENTITY_HTML = re.compile(r"""\.html\(\s*["']&#\d""")
#: Scripts up to this size are parsed on co-occurrence anywhere; larger ones need a URL literal with
#: a field read and a send within NEAR characters of it (skimmer code is compact, also when it is
#: appended to a library), or hidden strings.
LOCAL_SCRIPT = 8_000
NEAR = 3_000
#: A collector (fields read and staged, nothing sent) is parsed whole up to this size.
COLLECTOR_SCRIPT = 30_000
#: Obfuscation alone does not justify parsing a bundle larger than this.
LARGE_SCRIPT = 200_000


Window = tuple[int, int]


def needs_parse(features: JsFeatures, text: str) -> bool:
    """Whether any part of a script is worth a parse (see :func:`parse_plan`)."""
    return parse_plan(features, text) is not None


def parse_plan(features: JsFeatures, text: str) -> tuple[Window, ...] | None:
    """Which parts of a script to parse: None (nothing), the whole script, or windows around
    the places where a skimmer's pieces meet. Decided from counts the extractor already has.

    Parsing and interpreting cost more than every other JavaScript check together, and a page's
    scripts are mostly libraries and bundles. A skimmer needs a way to read fields and a way to
    send or stage data, plus a destination (a URL literal, or strings it hides); a sender of data
    another script staged needs a storage read and a send; the other behaviours need hidden
    strings or decoding next to ``eval``/``document.write``/``createElement``/``location``.
    """
    c = features.count
    size = features.length
    kb = max(1.0, size / 1000.0)
    if any(c(name) for name in ("wscript", "wscript_shell", "adodb", "fso", "savetofile", "cc_on", "activex")):
        return None  # Windows Script Host code: no page to skim (the javascript rules judge it)
    source = c("form_read") or c("card_field") or c("card_cvv") or c("serialize")
    sink = (c("xhr") or c("fetch") or c("beacon") or c("websocket") or c("new_image") or c("ajax")
            or c("src_assign") or c("post"))
    stage = c("cookie") or "localStorage" in text or "sessionStorage" in text
    runs = c("eval") or c("function_ctor") or features.new_function or c("string_timer") or c("document_write")
    # Code kept in a string of escapes (\x76, \166, %76) and run: the escapes hide the behaviour.
    escaped_text = ((features.backslash >= 100 and features.backslash / kb >= 3)
                    or (features.percent >= 100 and features.percent / kb >= 10))
    hidden = ((c("hex_name") >= 5 and c("hex_name") / kb >= 0.5)
              or (features.escape_hex >= 20 and features.ascii_escape_density >= 0.02)
              or (features.charcode_list_items >= 50 and features.charcode_list_items * 4.0 / size >= 0.3)
              or (c("fromcharcode") and (c("eval") or c("bracket_call") or c("string_timer")) and size <= COLLECTOR_SCRIPT)
              or ("&#" in text and _ENTITY_HTML.search(text) is not None)
              or (escaped_text and size <= COLLECTOR_SCRIPT
                  and (c("eval") or c("bracket_call") or c("string_timer") or c("function_ctor"))))
    decode = c("atob") or c("unescape")
    injects = c("create_script") or c("create_iframe") or c("document_write") or c("location_assign")
    whole = ((0, size),)
    if size < LARGE_SCRIPT and (hidden or ((runs or injects) and decode and size <= LOCAL_SCRIPT)) and (
            _BROWSER_HINT.search(text)):
        return whole  # hidden strings in code that touches the page (not a Windows Script Host dropper)
    if not ((source and (sink or stage)) or (stage and sink) or (c("checkout") and (injects or sink))):
        return None
    if source and stage and not sink and size <= COLLECTOR_SCRIPT:
        return whole  # a collector: what it stages, another script may send
    if size <= LOCAL_SCRIPT:
        return whole if (decode or stage or _URL_IN_STRING.search(text)) else None
    windows: list[Window] = []
    for i, match in enumerate(_URL_IN_STRING.finditer(text)):
        if i >= 200:
            break
        lo, hi = max(0, match.start() - NEAR), min(size, match.end() + NEAR)
        if _SEND_NEAR.search(text, lo, hi) and (_SOURCE_NEAR.search(text, lo, hi) or stage):
            lo, hi = _snap(text, lo, hi)
            if windows and lo <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
            else:
                windows.append((lo, hi))
    if not windows:
        return None
    if sum(hi - lo for lo, hi in windows) >= size // 2:
        return whole
    return tuple(windows[:16])


def _snap(text: str, lo: int, hi: int) -> Window:
    """Widen a window to statement-like boundaries (line ends, or ``;``/``}`` in one-line code)."""
    for stop in ("\n", ";", "}"):
        cut = text.rfind(stop, max(0, lo - NEAR), lo)
        if cut >= 0:
            lo = cut + 1
            break
    for stop in ("\n", ";", "}"):
        cut = text.find(stop, hi, hi + NEAR)
        if cut >= 0:
            hi = cut + 1
            break
    return lo, hi


_CACHE: OrderedDict[str, ScriptFacts] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX_CHARS = 8_000_000
_cache_chars = 0


def clear_cache() -> None:
    """Forget cached facts (benchmarks measure cold scans)."""
    global _cache_chars
    with _CACHE_LOCK:
        _CACHE.clear()
        _PLANNED.clear()
        _cache_chars = 0


_PLANNED: OrderedDict[str, ScriptFacts] = OrderedDict()


def script_behaviour(features: JsFeatures, text: str) -> ScriptFacts:
    """What the engine runs for one script: :func:`parse_plan`, then :func:`behaviour_facts` on
    the planned parts (or facts saying why nothing was parsed). Cached per script text."""
    global _cache_chars
    with _CACHE_LOCK:
        cached = _PLANNED.get(text)
        if cached is not None:
            _PLANNED.move_to_end(text)
            return cached
    plan = parse_plan(features, text)
    result = behaviour_facts(text, plan) if plan is not None else ScriptFacts(skipped="no behaviour hint")
    if len(text) >= 256:
        with _CACHE_LOCK:
            if text not in _PLANNED:
                _PLANNED[text] = result
                _cache_chars += len(text)
                while _cache_chars > _CACHE_MAX_CHARS and (_PLANNED or _CACHE):
                    old, _ = (_PLANNED or _CACHE).popitem(last=False)
                    _cache_chars -= len(old)
    return result


def _register_clear() -> None:
    from .javascript import on_clear_cache

    on_clear_cache(clear_cache)


_register_clear()


def behaviour_facts(text: str, windows: Sequence[Window] | None = None, *, _depth: int = 0,
                    _deadline: float | None = None) -> ScriptFacts:
    """Behaviour facts of one script (or of ``windows`` of it, see :func:`parse_plan`).

    Never raises; bounded in size, time and steps. Offsets are into the whole script.
    """
    if not text or not text.strip():
        return ScriptFacts(analysed=True)
    if windows is not None and tuple(windows) != ((0, len(text)),):
        parts = [behaviour_facts(text[lo:hi], _depth=_depth, _deadline=_deadline) for lo, hi in windows]
        facts = [Fact(f.kind, f.offset + lo, f.end + lo, f.detail, f.host, f.url, f.carries, f.encodings, f.fields,
                      f.hidden, f.relative) for (lo, _), part in zip(windows, parts, strict=False) for f in part.facts]
        skipped = "; ".join(sorted({p.skipped for p in parts if p.skipped}))
        return ScriptFacts(facts=tuple(facts), analysed=all(p.analysed for p in parts), skipped=skipped,
                           truncated=any(p.truncated for p in parts), parse_errors=any(p.parse_errors for p in parts),
                           nodes=sum(p.nodes for p in parts), windows=tuple(windows))
    if len(text) > MAX_PARSE_CHARS:
        return ScriptFacts(skipped=f"script longer than {MAX_PARSE_CHARS} characters")
    if _depth == 0:
        with _CACHE_LOCK:
            cached = _CACHE.get(text)
            if cached is not None:
                _CACHE.move_to_end(text)
                return cached
    try:
        result = _analyse(text, _depth, _deadline)
    except RecursionError:
        result = ScriptFacts(skipped="expression nesting too deep")
    except Exception as exc:  # noqa: BLE001 - hostile input must never break a scan
        result = ScriptFacts(skipped=f"analysis failed: {type(exc).__name__}")
    if _depth == 0 and len(text) >= 256:
        _remember(text, result)
    return result


def _remember(text: str, facts: ScriptFacts) -> None:
    global _cache_chars
    with _CACHE_LOCK:
        if text in _CACHE:
            return
        _CACHE[text] = facts
        _cache_chars += len(text)
        while _cache_chars > _CACHE_MAX_CHARS and _CACHE:
            old, _ = _CACHE.popitem(last=False)
            _cache_chars -= len(old)


def _analyse(text: str, depth: int, outer_deadline: float | None) -> ScriptFacts:
    data = text.encode("utf-8", errors="surrogatepass")
    if _max_nesting(data) > MAX_BRACKETS:
        return ScriptFacts(skipped=f"brackets nested deeper than {MAX_BRACKETS}")
    start = time.perf_counter()
    deadline = start + PARSE_DEADLINE_S if outer_deadline is None else min(outer_deadline, start + PARSE_DEADLINE_S)
    timed_out = [False]

    def read(offset: int, _point: Any) -> bytes:
        return data[offset:offset + 65536]

    def progress(_offset: int, _has_error: bool) -> bool:
        if time.perf_counter() > deadline:
            timed_out[0] = True
            return True
        return False

    parser = _parser()
    parser.reset()
    try:
        tree = parser.parse(read, progress_callback=progress)
    except ValueError:  # tree-sitter reports a cancelled parse this way
        tree = None
    if tree is None or timed_out[0]:
        parser.reset()
        return ScriptFacts(skipped=f"parse took longer than {PARSE_DEADLINE_S} s")
    root = tree.root_node
    nodes = root.descendant_count
    if nodes > MAX_NODES:
        return ScriptFacts(skipped=f"more than {MAX_NODES} syntax nodes", nodes=nodes)
    analysis_deadline = time.perf_counter() + ANALYSIS_DEADLINE_S
    if outer_deadline is not None:
        analysis_deadline = min(analysis_deadline, outer_deadline)
    analysis = _Analysis(data, tree, depth, analysis_deadline)
    analysis.collect()
    analysis.run()
    facts = analysis.facts
    if len(data) != len(text):
        facts = _to_char_offsets(data, facts)
    facts.sort(key=lambda f: (f.offset, f.kind))
    return ScriptFacts(facts=tuple(facts), analysed=True, truncated=analysis.truncated,
                       parse_errors=root.has_error, nodes=nodes)


def _max_nesting(data: bytes) -> int:
    """How deep brackets nest (strings and comments not excluded: an upper bound), in C speed."""
    import numpy as np

    arr = np.frombuffer(data, dtype=np.uint8)
    step = np.zeros(arr.shape, dtype=np.int32)
    step[(arr == 40) | (arr == 91) | (arr == 123)] = 1
    step[(arr == 41) | (arr == 93) | (arr == 125)] = -1
    return int(np.cumsum(step).max()) if step.size else 0


def _to_char_offsets(data: bytes, facts: list[Fact]) -> list[Fact]:
    points = sorted({p for f in facts for p in (f.offset, f.end)})
    mapping: dict[int, int] = {}
    chars = last = 0
    for p in points:
        chars += len(data[last:p].decode("utf-8", errors="ignore"))
        last = p
        mapping[p] = chars
    return [Fact(f.kind, mapping[f.offset], mapping[f.end], f.detail, f.host, f.url, f.carries, f.encodings, f.fields,
                 f.hidden, f.relative) for f in facts]


# -- page level: combine the scripts of one page ----------------------------------------------------

#: Registrable domains of card processors: sending card data there is what a checkout is for.
#: Domain knowledge, not fitted to data (a skimmer cannot read what it sends to a processor).
PAYMENT_PROVIDERS = frozenset({
    "stripe.com", "stripe.network", "braintreegateway.com", "braintree-api.com", "paypal.com",
    "paypalobjects.com", "adyen.com", "adyenpayments.com", "authorize.net", "squareup.com", "squareupsandbox.com",
    "checkout.com", "worldpay.com", "klarna.com", "mollie.com", "cybersource.com", "sagepay.com", "opayo.co.uk",
    "globalpay.com", "realexpayments.com", "paysafe.com", "payu.com", "razorpay.com", "mercadopago.com",
    "2checkout.com", "bluesnap.com", "nmi.com", "elavon.com", "moneris.com", "eway.com.au", "payfort.com",
})


@dataclass(frozen=True, slots=True)
class ScriptRef:
    """One analysed script of a page: how evidence names it, and its facts."""

    location: str
    facts: ScriptFacts


@dataclass(frozen=True, slots=True)
class BehaviourEvidence:
    """Where on the page a finding's facts sit (character offsets into that script)."""

    location: str
    offset: int
    end: int
    note: str


@dataclass(frozen=True, slots=True)
class BehaviourFinding:
    """A finding-like value for the findings catalogue: a behaviour a user understands.

    ``points`` is the score this behaviour alone suggests (0-100); the severity names are those
    of :class:`~malwaresnipper.engine.results.Severity`.
    """

    id: str
    title: str
    severity: str
    points: float
    category: str
    classification: str | None
    evidence: tuple[BehaviourEvidence, ...]
    hosts: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    encodings: tuple[str, ...] = ()


def _site(host: str) -> str:
    try:
        from ..psl import registrable_domain

        return registrable_domain(host) or host
    except Exception:  # noqa: BLE001 - a missing suffix list must not break a scan
        return ".".join(host.split(".")[-2:])


def _marker_of(detail: str) -> str | None:
    """The marker a stage_write's detail names (what a reader of that place carries)."""
    base = detail.split(" (in code", 1)[0]
    store, _, key = base.partition(":")
    if store == "localStorage":
        return f"stage:local:{key}"
    if store == "sessionStorage":
        return f"stage:session:{key}"
    if store == "cookie":
        return "stage:cookie"
    if store == "global":
        return f"global:{key}"
    return None


def _describe_fields(labels: frozenset[str]) -> str:
    if CARD in labels:
        return "payment card fields"
    if ALL_FIELDS in labels:
        return "every form field"
    if PERSONAL in labels:
        return "personal form fields"
    return "form fields"


def page_behaviour(scripts: Sequence[ScriptRef], page_host: str = "") -> list[BehaviourFinding]:
    """Findings from the behaviour facts of all scripts of one page, flows across scripts included.

    A value read from a form field that reaches a send to another site is the skimmer finding,
    also when one script stages the data (storage, cookie, global) and another sends it. The other
    findings are weaker behaviours for a corroboration policy to weigh.
    """
    page_site = _site(page_host.lower()) if page_host else ""
    # What each shared place holds, joined over every script; markers resolved to a fixpoint.
    writes: dict[str, set[str]] = {}
    writers: dict[str, list[tuple[str, Fact]]] = {}
    for ref in scripts:
        for f in ref.facts.facts:
            if f.kind == STAGE_WRITE:
                marker = _marker_of(f.detail)
                if marker:
                    writes.setdefault(marker, set()).update(f.carries)
                    writers.setdefault(marker, []).append((ref.location, f))
    for _ in range(4):
        changed = False
        for marker, written in writes.items():
            extra: set[str] = set()
            for label in written:
                if label != marker and label in writes:
                    extra |= writes[label]
            if not extra <= written:
                written |= extra
                changed = True
        if not changed:
            break

    def resolve(carries: frozenset[str]) -> tuple[frozenset[str], list[str]]:
        out = set(carries)
        via = []
        for label in carries:
            if label in writes and writes[label] & FORM_LABELS:
                out |= writes[label]
                via.append(label)
        return frozenset(out), via

    def foreign(host: str | None) -> bool:
        if not host:
            return False
        site = _site(host)
        return site != page_site and site not in PAYMENT_PROVIDERS

    findings: list[BehaviourFinding] = []
    script_has = {ref.location: {f.kind for f in ref.facts.facts} for ref in scripts}
    exfil: dict[str, BehaviourFinding] = {}
    for ref in scripts:
        for f in ref.facts.facts:
            if f.kind != SEND:
                continue
            labels, via = resolve(f.carries)
            if FORM not in labels or not (labels & {CARD, ALL_FIELDS}) or not foreign(f.host):
                continue
            staged_in = [(loc, w) for m in via for loc, w in writers.get(m, [])]
            involved = {ref.location} | {loc for loc, _ in staged_in}
            encodings = set(f.encodings) | {e for _, w in staged_in for e in w.encodings}
            # A form hook is what every form handler has: only a checkout condition counts.
            conditioned = any(CHECKOUT_CONDITION in script_has[loc] for loc in involved)
            corroborated = (CARD in labels or conditioned or bool(via) or f.hidden or f.detail.startswith("image")
                            or bool(encodings & {"btoa", "base64"}))
            what = _describe_fields(labels)
            how = f"by {'an image beacon' if f.detail.startswith('image') else f.detail.split(' (', 1)[0]}"
            enc = f", encoded with {', '.join(sorted(encodings))}" if encodings else ""
            staged = ""
            if via:
                places = sorted({w.detail.split(" (", 1)[0] for _, w in staged_in})
                staged = f", staged in {', '.join(places)}" + (" by another script" if involved != {ref.location} else "")
            title = f"Script sends {what} to {f.host} {how}{enc}{staged}"
            evidence = [BehaviourEvidence(ref.location, f.offset, f.end, f"sends to {f.host}")]
            for loc, w in staged_in[:2]:
                evidence.append(BehaviourEvidence(loc, w.offset, w.end, f"stages form data ({w.detail})"))
            for g in ref.facts.of(FIELD_READ)[:2]:
                evidence.append(BehaviourEvidence(ref.location, g.offset, g.end, f"reads {g.detail}"))
            finding = BehaviourFinding(
                id="skimmer_exfiltration",
                title=title,
                severity="HIGH" if corroborated else "MEDIUM",
                points=85.0 if corroborated else 45.0,
                category="skimmer",
                classification="skimmer",
                evidence=tuple(evidence),
                hosts=(f.host,) if f.host else (),
                fields=tuple(sorted(labels & FORM_LABELS)),
                encodings=tuple(sorted(encodings)),
            )
            previous = exfil.get(f.host or "")
            if previous is None or finding.points > previous.points:
                exfil[f.host or ""] = finding
    findings.extend(sorted(exfil.values(), key=lambda x: (-x.points, x.title)))

    for ref in scripts:
        kinds = script_has[ref.location]
        if CHECKOUT_CONDITION not in kinds:
            continue
        for f in ref.facts.facts:
            hidden_source = f.hidden and f.host is None  # the address is decoded at run time
            if f.kind in (SCRIPT_INJECTION, MARKUP_WRITE) and (foreign(f.host) or hidden_source) and "script" in f.detail:
                where = f.host or "an address it decodes at run time"
                findings.append(BehaviourFinding(
                    "checkout_loader", f"Script loads code from {where} only on checkout pages", "MEDIUM", 45.0,
                    "skimmer", "skimmer", (BehaviourEvidence(ref.location, f.offset, f.end, f.detail),), (f.host or "",)))
                break
    sent_markers = {lab for ref in scripts for f in ref.facts.of(SEND) for lab in f.carries}
    for marker, entries in writers.items():
        staged_fields = frozenset(writes.get(marker, ()))
        if marker not in sent_markers and FORM in staged_fields and staged_fields & {CARD, ALL_FIELDS} and not marker.startswith("global:"):
            loc, w = entries[0]
            findings.append(BehaviourFinding(
                "form_data_staged", f"Script copies {_describe_fields(staged_fields)} into {w.detail.split(' (')[0]}",
                "LOW", 15.0, "skimmer", None, (BehaviourEvidence(loc, w.offset, w.end, w.detail),),
                fields=tuple(sorted(staged_fields & FORM_LABELS))))
    for ref in scripts:
        for f in ref.facts.facts:
            if f.kind == EXEC_DECODED:
                findings.append(BehaviourFinding(
                    "decoded_exec", "Script runs code it decodes or assembles at run time", "LOW", 10.0, "sink",
                    None, (BehaviourEvidence(ref.location, f.offset, f.end, f.detail),)))
                break
        for f in ref.facts.facts:
            if f.kind == IFRAME_INJECTION and "hidden" in f.detail and (foreign(f.host) or f.host is None):
                findings.append(BehaviourFinding(
                    "hidden_iframe", f"Script injects an invisible iframe{' from ' + f.host if f.host else ''}", "MEDIUM",
                    35.0 if f.hidden else 20.0, "injection", "malware" if f.hidden else None,
                    (BehaviourEvidence(ref.location, f.offset, f.end, f.detail),), (f.host,) if f.host else ()))
                break
        for f in ref.facts.facts:
            if f.kind == REDIRECT and foreign(f.host) and f.hidden:
                findings.append(BehaviourFinding(
                    "hidden_redirect", f"Script sends the browser to {f.host}, an address it hides", "MEDIUM", 35.0,
                    "redirect", "redirect", (BehaviourEvidence(ref.location, f.offset, f.end, f.detail),), (f.host or "",)))
                break
        for f in ref.facts.facts:
            if f.kind == MARKUP_WRITE and f.hidden and (foreign(f.host) or "inline" in f.detail):
                findings.append(BehaviourFinding(
                    "hidden_markup", "Script writes <script>/<iframe> markup it hides in encoded strings", "MEDIUM",
                    35.0, "injection", None, (BehaviourEvidence(ref.location, f.offset, f.end, f.detail),),
                    (f.host,) if f.host else ()))
                break
    return findings


def iter_facts(scripts: Iterable[ScriptRef], kind: str) -> Iterable[tuple[str, Fact]]:
    """Every fact of one kind on a page, with its script's location."""
    for ref in scripts:
        for f in ref.facts.facts:
            if f.kind == kind:
                yield ref.location, f
