"""Static features of one script: style and behaviour numbers, keyword counts and match offsets.

The javascript layer scores these numbers with rules and the ml layer feeds :meth:`JsFeatures.vector`
to a model, so both read one extraction. The numbers are chosen to separate *obfuscation* (escaped
and encoded strings, char-code arrays, ``_0x`` names, packer and encoder families) from
*minification* (short names and long lines with ordinary strings), because minified library code is
the commonest false positive of naive JavaScript heuristics.

Speed matters more than precision here: a gateway scans every script of every page. The extractor
therefore works on the UTF-8 bytes with a handful of C-speed passes: one ``numpy.bincount`` for the
byte histogram, one Aho-Corasick pass over the lower-cased bytes for all keywords (case-insensitive,
so ``WScript`` and ``wscript`` count alike), one regular expression for string literals,
``bytes.count`` for frequent two-byte patterns, and identifier statistics on a bounded sample.
It never executes anything and never raises.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypedDict
import re

import ahocorasick
import numpy as np

#: Keyword groups counted case-insensitively in one Aho-Corasick pass. Names are stable: they are
#: feature names (``kw_<name>``) and the layer refers to them. Patterns are lower-case.
KEYWORDS: dict[str, tuple[str, ...]] = {
    # sinks
    "eval": ("eval(", "eval (", "eval\t("),
    # ``new function(){}`` is ordinary code; ``new Function(...)`` is counted case-sensitively apart.
    "function_ctor": ('function("', "function('"),
    "string_timer": ('settimeout("', "settimeout('", 'setinterval("', "setinterval('",
                     "settimeout( \"", "settimeout( '"),
    "document_write": ("document.write", ".writeln("),
    "unescape": ("unescape(",),
    "atob": ("atob(",),
    "fromcharcode": ("fromcharcode",),
    "charcodeat": ("charcodeat",),
    "decodeuri": ("decodeuricomponent(", "decodeuri("),
    "parseint": ("parseint(",),
    "tostring_radix": (".tostring(36)", ".tostring(16)", ".tostring(2)"),
    "constructor_access": ('"constructor"', "'constructor'", ".constructor("),
    "replace": (".replace(",),
    "substr": (".substr(", ".substring(", ".slice("),
    "split": (".split(",),
    "reverse": (".reverse()",),
    "split_empty": ('split("")', "split('')"),
    "join_empty": ('join("")', "join('')"),
    # encoder and packer families
    "packer": ("eval(function(p,a,c,k,e,", "eval(function (p,a,c,k,e,", "eval(function(p, a, c, k, e,"),
    "jsfuck": ("[][(![]+[])", "(![]+[])[", "!+[]+!+[]", "(+[![]]+[])", "[]+[]+[]"),
    "aaencode": ("\uff9f\u03c9\uff9f\uff89", "\uff9f\u0414\uff9f", "\uff9f\u0434\uff9f", "\uff9f\uff70\uff9f"),
    "jjencode": ("$={___:++$", "=~[];", "$$$$:(![]+\"\")"),
    # DOM and decoder methods called through bracket strings: document["write"](...)
    "bracket_call": tuple(
        q1 + name + q2
        for name in ("createelement", "write", "eval", "fromcharcode", "getelementsbytagname", "appendchild",
                     "charcodeat", "substr", "insertbefore", "createobject", "run", "responsetext", "reverse",
                     "expandenvironmentstrings", "savetofile", "writeln")
        for q1, q2 in (('["', '"]'), ("['", "']"))
    ),
    # Fragment obfuscation: functions that return a piece of a string, junk comma expressions.
    "return_string": ("return '", 'return "', "{return'", '{return"', "{ return '", '{ return "'),
    "paren_concat": ('")+"', "')+'", '"+("', "'+('", '") + "', "') + '", '" + ("', "' + ('", '")+(', "')+("),
    # String methods called on a literal: "TnewU".substr(9,9) picks letters out of junk.
    "literal_slicing": tuple(q + sep + m for q in "\"'" for sep in (".", ". ") for m in
                             ("substr(", "substr (", "substring(", "charat(", "slice(")),
    # Junk call chains: function a(){ ...; b(); }function b(){ ...; c(); }...
    "call_chain": ("(); }function", "();}function", "(); } function", "();} function"),
    "hex_name": ("_0x",),
    # Counted here rather than with bytes.count: rare in ordinary code, so nearly free in this pass.
    "string_concat": ('"+"', "'+'", '" + "', "' + '"),
    "percent_u": ("%u",),
    "bracket_string": ('["', "['"),
    "comment": ("/*", "// "),
    "obfuscator_rotate": ("['push'](", '["push"](', "['shift']()", '["shift"]()', "'push'](_0x", "'shift']()"),
    "debugger": ("debugger",),
    # Windows script host droppers (and reversed spellings that droppers use to hide them)
    "activex": ("activexobject",),
    # "wscript" alone would match "newScript"; these spellings need a boundary before the name.
    "wscript": tuple(b + "wscript" + a for b in " \t\n(=;{},+[!&|?:" for a in ".[=);,]")
    + ('"wscript', "'wscript", " wsh.", "(wsh)", "(wsh.", "=wsh.", "(wsh."),
    "wscript_shell": ("wscript.shell", "shell.application"),
    "adodb": ("adodb.stream", "adodb.", '"adodb"', "'adodb'", "%22adodb%22", "adodb.recordset"),
    "fso": ("scripting.filesystemobject", "filesystemobject"),
    # ActiveX names old-IE compatibility code tries in loops (droppers never spell them out).
    "activex_progid": ("xmlhttp", "shockwaveflash", "xmldom", "htmlfile", "agcontrol", "acropdf", "pdfctrl",
                       "quicktime", "realplayer", "wmplayer", "skype", "domdocument", "devalvr", "swctl",
                       "mediaplayer"),
    "msxml": ("msxml2.xmlhttp", "microsoft.xmlhttp", "winhttp.winhttprequest", "serverxmlhttp"),
    "savetofile": (".savetofile", '"savetofile', "'savetofile", ".createtextfile", ".loadfromfile",
                   ".savetofile("),
    "shell_run": ("%temp%", "expandenvironmentstrings", "getspecialfolder", ".exe\"", ".exe'",
                  "cmd.exe", "cmd /c", "powershell", "rundll32", "regsvr32", "%appdata%"),
    "run_call": (".run(", ".exec(", ".shellexecute("),
    "cc_on": ("@cc_on",),
    "reversed_code": ("noitcnuf", "nruter ", "nruter\t", "tcejbo", "edocrahcmorf", "gnirts"),
    "reversed_marker": ("tpircsw", "tcejboxevitca", "maerts.bdoda", "ptthlmx", "tcejbometsyselif",
                        "eliftevas", "llehs.tpircs"),
    # page manipulation
    "iframe": ("iframe",),
    "create_iframe": ("createelement('iframe')", 'createelement("iframe")', "createelement(`iframe`)"),
    "create_script": ("createelement('script')", 'createelement("script")', "createelement(`script`)"),
    "markup_script": ("<script", "%3cscript", "\\x3cscript", "\\u003cscript", "</scr"),
    "markup_iframe": ("<iframe", "%3ciframe", "\\x3ciframe", "\\u003ciframe"),
    "hidden_style": ("visibility:hidden", "visibility: hidden", "visibility='hidden'",
                     'visibility="hidden"', "visibility = 'hidden'", 'visibility = "hidden"',
                     "display:none", "display: none", "display='none'", 'display="none"'),
    "zero_size": ("width=0", "width='0'", 'width="0"', "width = 0", "width=1 ", 'width="1"',
                  "height=0", "height='0'", 'height="0"', "height = 0", 'height="1"',
                  "width:0", "height:0", "width: 0", "height: 0", "left:-", "top:-"),
    "location_assign": ("location.href=", "location.href =", "location=", "location =",
                        "location.replace(", "location.assign(", "location.href=", "location[\"href\"]=",
                        "location['href']="),
    "cookie": ("document.cookie",),
    "user_agent": ("navigator.useragent",),
    "referrer": ("document.referrer",),
    # network
    "xhr": ("xmlhttprequest",),
    "fetch": ("fetch(",),
    "beacon": ("sendbeacon",),
    "websocket": ("websocket",),
    "new_image": ("new image", "new image("),
    "src_assign": (".src=", ".src ="),
    "post": ('"post"', "'post'"),
    "ajax": ("$.ajax", "jquery.ajax", "$.post(", "$.get(", "jquery.post("),
    "url_literal": ("http://", "https://"),
    # keys and forms
    "key_listener": ("keydown", "keypress", "keyup", "onkeydown", "onkeypress", "onkeyup"),
    "key_code": ("keycode", ".which", ".charcode", "e.key", "event.key"),
    "card_field": ("cc_number", "cardnumber", "card_number", "card-number", "cc-number", "cc_num",
                   "card_num", "cc_cid", "cc_exp", "credit_card", "securitycode", "security_code",
                   "exp_month", "expmonth", "cc_type", "[cc_", "payment[", "card_holder", "cardholder",
                   "creditcardnumber", "card_code", "cardcode"),
    "card_cvv": ("cvv", "cvc", "cvn", "cc_cid", "creditcard", "ccnum"),
    "checkout": ("checkout", "onestepcheckout", "billing", "firecheckout"),
    "form_read": (".value", "queryselectorall(", "getelementsbytagname(", "serialize(", "formdata", ".val()"),
    "serialize": ("btoa(", "json.stringify(", "encodeuricomponent(", "escape("),
    "submit_hook": ("onsubmit", "'submit'", '"submit"', "onclick", "'click'", '"click"', "mousedown"),
    # mining
    "miner": ("coinhive", "coin-hive", "cryptonight", "cryptoloot", "crypto-loot", "webminerpool",
              "deepminer", "coinimp", "jsecoin", "minero.cc", "stratum+tcp", "authedmine",
              "coinhave", "minergate", "webmr.js", "ppoi.org", "xmrig", "mineralt", "startmining(",
              "moneroocean", "minexmr", "supportxmr", "xmrpool", "_hash_cn", "cryptonight_hash"),
    "miner_weak": ("hashespersecond", "monero", "cryptonote", "webminer", "totalhashes", "_sitekey"),
    "wasm": ("webassembly",),
    "worker": ("new worker(", "new worker ("),
    "throttle": ("throttle",),
    # exploit kits
    "shellcode": ("%u9090", "%u0c0c", "%u0d0d", "%u4141", "0x0c0c0c0c", "0x0d0d0d0d", "shellcode",
                  "heapspray", "spray", "nopslide"),
    "plugin_probe": ("plugindetect", "shockwaveflash", "application/x-shockwave-flash",
                     "javawebstart", "agcontrol.agcontrol", "clsid:", "<applet", "<object",
                     "silverlight", "java.lang", "navigator.plugins", "deployjava",
                     "application/x-java", "acropdf", "pdf.pdfctrl"),
    "vbscript": ("vbscript", "execscript"),
}

#: Names of the numeric features, in a stable order (kw_* counts follow in KEYWORDS order).
NUMERIC_NAMES: tuple[str, ...] = (
    "log_length",
    "lines",
    "avg_line_length",
    "max_line_length_log",
    "whitespace_ratio",
    "char_entropy",
    "non_ascii_ratio",
    "digit_ratio",
    "upper_ratio",
    "punct_ratio",
    "jsfuck_char_ratio",
    "semicolon_density",
    "comma_density",
    "paren_density",
    "bracket_density",
    "plus_density",
    "percent_density",
    "backslash_density",
    "string_count_density",
    "string_chars_ratio",
    "string_entropy",
    "longest_string_log",
    "longest_string_entropy",
    "long_string_count",
    "long_string_chars_ratio",
    "hex_string_chars_ratio",
    "base64_string_chars_ratio",
    "separator_string_chars_ratio",
    "escape_hex_density",
    "escape_unicode_density",
    "escape_percent_u_density",
    "escape_density",
    "ascii_escape_density",
    "charcode_list_density",
    "bracket_string_density",
    "string_concat_density",
    "new_function_log",
    "identifier_avg_length",
    "identifier_max_length_log",
    "identifier_short_ratio",
    "identifier_long_ratio",
    "identifier_unique_ratio",
    "identifier_digit_ratio",
    "identifier_case_switch_ratio",
    "identifier_random_ratio",
    "hex_name_density",
    "comment_density",
)

_HEX_BYTES = b"0123456789abcdefABCDEF"
_B64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
_STRING_RE = re.compile(
    rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\''
)
#: Byte classes for identifier statistics: 0 other, 1 digit, 2 lower, 3 upper, 4 ``_``/``$``.
_CHAR_CLASS = np.array(
    [1 if 48 <= c <= 57 else 2 if 97 <= c <= 122 else 3 if 65 <= c <= 90 else 4 if c in (95, 36) else 0
     for c in range(256)],
    dtype=np.uint8,
)
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$.")
#: Scripts up to this size get the plain-Python identifier statistics (numpy's per-call cost
#: dominates below it).
SMALL_SAMPLE_BYTES = 2_000
_TOKEN_RE = re.compile(rb"[A-Za-z0-9_$]+")
_CASE_SHAPE = bytes(65 if 65 <= c <= 90 else 97 if 97 <= c <= 122 else 46 for c in range(256))
_LETTER_DIGIT_SHAPE = bytes(
    68 if 48 <= c <= 57 else 76 if (65 <= c <= 90 or 97 <= c <= 122 or c in (95, 36)) else 46 for c in range(256)
)
_CLASS_SHAPE = bytes(48 + v for v in _CHAR_CLASS.tolist())
_IDENT_KEEP = set(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$")
#: Maps every byte that cannot be in an ASCII identifier to a space (one translate, one split).
_IDENT_TABLE = bytes(c if c in _IDENT_KEEP else 32 for c in range(256))
#: Eight or more numbers of one to three digits in a comma list (after digits became ``0``).
_CHARCODE_RUN = re.compile(rb"(?:0{1,3} ?, ?){8,}0{1,3}")
#: Maps every digit to ``0`` so that ``0,0`` counts numeric list items in one ``count`` call.
_DIGIT_TABLE = bytes.maketrans(b"123456789", b"000000000")
_JSFUCK_BYTES = tuple(b"[]()!+")
_PUNCT_BYTES = tuple(b"[](){};,.+-*/%=!<>&|^~?:\\'\"")
#: Identifier statistics look at most this many bytes, in evenly spaced chunks (bounded cost).
IDENT_SAMPLE_BYTES = 24_000
_IDENT_CHUNKS = 4
#: Strings at least this long are "long" (payloads, embedded data).
LONG_STRING = 256


_BOUNDARY_CHARS = " \t\n(=;{},+[!&|?:"
#: Groups whose patterns start with a boundary character (so "newScript" is not "WScript").
_BOUNDARY_GROUPS = frozenset({"wscript"})


#: Feature cache bounds: scripts shorter than this are cheap to redo; the cache holds at most
#: this many characters of script text (it keeps the texts as keys).
CACHE_MIN_CHARS = 512
CACHE_MAX_CHARS = 8_000_000
_CACHE: OrderedDict[str, JsFeatures] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_cache_chars = 0


def _build_automaton() -> tuple[ahocorasick.Automaton, tuple[str, ...]]:
    names = tuple(KEYWORDS)
    automaton = ahocorasick.Automaton()
    for index, name in enumerate(names):
        for pattern in KEYWORDS[name]:
            # Matching runs over lower-cased UTF-8 bytes viewed as latin-1, so patterns must too.
            key = pattern.encode("utf-8").lower().decode("latin-1")
            # A leading boundary character is matched but is not part of the reported offset.
            lead = 1 if name in _BOUNDARY_GROUPS and key[0] in _BOUNDARY_CHARS else 0
            automaton.add_word(key, (index, len(key) - lead))
    automaton.make_automaton()
    return automaton, names


_AUTOMATON, _KW_NAMES = _build_automaton()
_KW_INDEX = {name: index for index, name in enumerate(_KW_NAMES)}


@dataclass(frozen=True, slots=True)
class JsFeatures:
    """What the extractor measured on one script.

    Counts are raw; :meth:`vector` turns them into length-independent numbers for models.
    Offsets (``first``, ``longest_string_offset``, ...) are character offsets into the script
    text, for evidence; -1 means "not found".
    """

    length: int = 0
    byte_length: int = 0
    lines: int = 0
    max_line_length: int = 0
    whitespace: int = 0
    char_entropy: float = 0.0
    non_ascii: int = 0
    digits: int = 0
    upper: int = 0
    punct: int = 0
    jsfuck_chars: int = 0
    semicolons: int = 0
    commas: int = 0
    parens: int = 0
    brackets: int = 0
    plus: int = 0
    percent: int = 0
    backslash: int = 0
    string_count: int = 0
    string_chars: int = 0
    string_entropy: float = 0.0
    longest_string: int = 0
    longest_string_offset: int = -1
    longest_string_entropy: float = 0.0
    longest_string_code_ratio: float = 0.0
    longest_string_is_data_uri: bool = False
    long_string_count: int = 0
    long_string_chars: int = 0
    hex_string_chars: int = 0
    base64_string_chars: int = 0
    separator_string_chars: int = 0
    escape_hex: int = 0
    escape_unicode: int = 0
    escape_unicode_ascii: int = 0
    escape_percent_u: int = 0
    escape_offset: int = -1
    charcode_list_items: int = 0
    charcode_list_offset: int = -1
    bracket_string: int = 0
    new_function: int = 0
    string_concat: int = 0
    identifier_count: int = 0
    identifier_avg_length: float = 0.0
    identifier_max_length: int = 0
    identifier_short_ratio: float = 0.0
    identifier_long_ratio: float = 0.0
    identifier_unique_ratio: float = 0.0
    identifier_digit_ratio: float = 0.0
    identifier_case_switch_ratio: float = 0.0
    identifier_random_ratio: float = 0.0
    comments: int = 0
    keyword_counts: Mapping[str, int] = field(default_factory=dict)
    first: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    def count(self, name: str) -> int:
        """How often keyword group ``name`` matched (0 when absent)."""
        return self.keyword_counts.get(name, 0)

    def offset(self, name: str) -> int:
        """Character offset of the first match of keyword group ``name``, or -1."""
        return self.first.get(name, -1)

    @property
    def is_minified_style(self) -> bool:
        """Long lines of short names: how bundlers write, not a sign of intent."""
        return self.length > 2000 and (self.length / max(1, self.lines)) > 300

    def vector(self) -> dict[str, float]:
        """Length-independent numbers with stable names, for models (see NUMERIC_NAMES)."""
        n = float(max(1, self.length))
        kb = n / 1000.0
        nonws = float(max(1, self.length - self.whitespace))
        s = float(max(1, self.string_chars))
        values: dict[str, float] = {
            "log_length": math.log1p(self.length),
            "lines": math.log1p(self.lines),
            "avg_line_length": math.log1p(self.length / max(1, self.lines)),
            "max_line_length_log": math.log1p(self.max_line_length),
            "whitespace_ratio": self.whitespace / n,
            "char_entropy": self.char_entropy,
            "non_ascii_ratio": self.non_ascii / max(1, self.byte_length),
            "digit_ratio": self.digits / nonws,
            "upper_ratio": self.upper / nonws,
            "punct_ratio": self.punct / nonws,
            "jsfuck_char_ratio": self.jsfuck_chars / nonws,
            "semicolon_density": self.semicolons / kb,
            "comma_density": self.commas / kb,
            "paren_density": self.parens / kb,
            "bracket_density": self.brackets / kb,
            "plus_density": self.plus / kb,
            "percent_density": self.percent / kb,
            "backslash_density": self.backslash / kb,
            "string_count_density": self.string_count / kb,
            "string_chars_ratio": self.string_chars / n,
            "string_entropy": self.string_entropy,
            "longest_string_log": math.log1p(self.longest_string),
            "longest_string_entropy": self.longest_string_entropy,
            "long_string_count": math.log1p(self.long_string_count),
            "long_string_chars_ratio": self.long_string_chars / n,
            "hex_string_chars_ratio": self.hex_string_chars / s,
            "base64_string_chars_ratio": self.base64_string_chars / s,
            "separator_string_chars_ratio": self.separator_string_chars / s,
            "escape_hex_density": self.escape_hex / kb,
            "escape_unicode_density": self.escape_unicode / kb,
            "escape_percent_u_density": self.escape_percent_u / kb,
            "escape_density": self.escape_density,
            "ascii_escape_density": self.ascii_escape_density,
            "charcode_list_density": self.charcode_list_items / kb,
            "bracket_string_density": self.bracket_string / kb,
            "string_concat_density": self.string_concat / kb,
            "new_function_log": math.log1p(self.new_function),
            "identifier_avg_length": self.identifier_avg_length,
            "identifier_max_length_log": math.log1p(self.identifier_max_length),
            "identifier_short_ratio": self.identifier_short_ratio,
            "identifier_long_ratio": self.identifier_long_ratio,
            "identifier_unique_ratio": self.identifier_unique_ratio,
            "identifier_digit_ratio": self.identifier_digit_ratio,
            "identifier_case_switch_ratio": self.identifier_case_switch_ratio,
            "identifier_random_ratio": self.identifier_random_ratio,
            "hex_name_density": self.count("hex_name") / kb,
            "comment_density": self.comments / kb,
        }
        for name in _KW_NAMES:
            values[f"kw_{name}"] = math.log1p(self.count(name))
        return values

    @property
    def escape_density(self) -> float:
        """Fraction of the script written as ``\\xNN``, ``\\uNNNN`` or ``%uNNNN`` escapes."""
        escaped = 4 * self.escape_hex + 6 * (self.escape_unicode + self.escape_percent_u)
        return min(1.0, escaped / max(1, self.length))

    @property
    def ascii_escape_density(self) -> float:
        """Like :attr:`escape_density`, but only escapes that can spell ASCII (``\\x41``,
        ``\\u0041``, ``%u0041``): obfuscators hide code that way, while translation files escape
        non-Latin text (``\\u4e2d``), which is not a sign of intent."""
        escaped = 4 * self.escape_hex + 6 * (self.escape_unicode_ascii + self.escape_percent_u)
        return min(1.0, escaped / max(1, self.length))


def feature_names() -> tuple[str, ...]:
    """Every key of :meth:`JsFeatures.vector`, in order."""
    return NUMERIC_NAMES + tuple(f"kw_{name}" for name in _KW_NAMES)


def extract_js_features(text: str, *, cache: bool = True) -> JsFeatures:
    """Measure ``text``; never raises (an internal failure yields empty features with ``error``).

    Results are kept in a small per-process LRU keyed by the script text itself (not a hash, so
    no collision can hand one script another's features): a gateway sees the same library files
    on page after page, and a repeated script then costs one dictionary lookup.
    """
    if not isinstance(text, str):
        text = str(text)
    if cache and len(text) >= CACHE_MIN_CHARS:
        with _CACHE_LOCK:
            hit = _CACHE.get(text)
            if hit is not None:
                _CACHE.move_to_end(text)
                return hit
    try:
        features = _extract(text)
    except Exception as exc:  # noqa: BLE001 - a feature bug must not break a scan
        return JsFeatures(length=len(text), error=f"{type(exc).__name__}: {exc}")
    if cache and CACHE_MIN_CHARS <= len(text) <= CACHE_MAX_CHARS // 4:
        _remember(text, features)
    return features


def clear_cache() -> None:
    """Forget cached features, and every per-script cache registered with :func:`on_clear_cache`
    (benchmarks measure cold scans with this)."""
    global _cache_chars
    with _CACHE_LOCK:
        _CACHE.clear()
        _cache_chars = 0
    for clear in _DEPENDENT_CLEARS:
        clear()


#: Other per-script caches (the ml layer's script scores) emptied by :func:`clear_cache`.
_DEPENDENT_CLEARS: list[Callable[[], None]] = []


def on_clear_cache(clear: Callable[[], None]) -> None:
    """Have :func:`clear_cache` also call ``clear``, so a "cold" scan is cold in every layer."""
    if clear not in _DEPENDENT_CLEARS:
        _DEPENDENT_CLEARS.append(clear)


def _remember(text: str, features: JsFeatures) -> None:
    global _cache_chars
    with _CACHE_LOCK:
        if text in _CACHE:
            return
        _CACHE[text] = features
        _cache_chars += len(text)
        while _cache_chars > CACHE_MAX_CHARS and _CACHE:
            old, _ = _CACHE.popitem(last=False)
            _cache_chars -= len(old)


def _entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def _byte_hist(data: bytes) -> np.ndarray:
    return np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)


def _extract(text: str) -> JsFeatures:
    data = text.encode("utf-8", errors="surrogatepass")
    n = len(data)
    if n == 0:
        return JsFeatures()
    ascii_only = n == len(text)

    arr = np.frombuffer(data, dtype=np.uint8)
    hist = np.bincount(arr, minlength=256)
    h = hist.tolist()  # plain ints: slicing sums below are cheaper than numpy calls on small scripts
    whitespace = h[9] + h[10] + h[13] + h[32]
    lines = h[10] + 1
    if lines > 1:
        breaks = np.flatnonzero(arr == 10)
        max_line = int(max(breaks[0], n - 1 - breaks[-1], int(np.diff(breaks).max()) - 1 if breaks.size > 1 else 0))
    else:
        max_line = n

    # -- keywords: one Aho-Corasick pass over the lower-cased bytes ------------------------------
    lowered = data.lower().decode("latin-1")
    counts = [0] * len(_KW_NAMES)
    first = [-1] * len(_KW_NAMES)
    for end, (index, length) in _AUTOMATON.iter(lowered):
        if counts[index] == 0:
            first[index] = end - length + 1
        counts[index] += 1

    # -- string literals -------------------------------------------------------------------------
    literals = _STRING_RE.findall(data)
    lengths = list(map(len, literals))  # with the two quotes
    string_chars = sum(lengths) - 2 * len(lengths)
    string_entropy = _entropy(_byte_hist(b"".join(literals))) if literals else 0.0
    longest = max(lengths) - 2 if lengths else 0
    longest_offset = -1
    longest_entropy = 0.0
    longest_code_ratio = 0.0
    longest_is_data = False
    long_count = long_chars = hex_chars = b64_chars = separator_chars = 0
    if longest > 0:
        long_lits = [lit for lit in literals if len(lit) >= LONG_STRING + 2] if longest >= LONG_STRING else []
        long_count = len(long_lits)
        long_chars = sum(len(lit) - 2 for lit in long_lits)
        for lit in long_lits or [lit for lit in literals if len(lit) >= 34]:
            body = lit[1:-1]
            if body[:5].lower() == b"data:":
                continue
            if not body.translate(None, _HEX_BYTES):
                hex_chars += len(body)
            elif len(body.translate(None, _B64_BYTES)) <= len(body) // 50:
                b64_chars += len(body)
            if len(body) >= 128 and _separator_encoded(body):
                separator_chars += len(body)
        longest_lit = literals[lengths.index(longest + 2)]
        longest_offset = data.find(longest_lit)
        body = longest_lit[1:-1]
        longest_entropy = _entropy(_byte_hist(body))
        code = sum(body.count(ch) for ch in (b";", b"(", b")", b"{", b"}", b"=", b" "))
        longest_code_ratio = code / max(1, len(body))
        longest_is_data = body[:5].lower() == b"data:" or b";base64," in body[:80]

    # -- escapes, numeric lists, bracket access, string splitting -------------------------------
    escape_hex = data.count(b"\\x")
    escape_unicode = data.count(b"\\u")
    escape_unicode_ascii = data.count(b"\\u00") if escape_unicode else 0
    escape_percent_u = counts[_KW_INDEX["percent_u"]]
    escape_offset = -1
    if escape_hex or escape_unicode or escape_percent_u:
        found = [p for p in (data.find(b"\\x"), data.find(b"\\u"), first[_KW_INDEX["percent_u"]]) if p >= 0]
        escape_offset = min(found) if found else -1
    charcode_items = 0
    charcode_offset = -1
    if h[44] and sum(h[48:58]):
        digits_collapsed = data.translate(_DIGIT_TABLE)
        charcode_items = digits_collapsed.count(b"0,0") + digits_collapsed.count(b"0, 0")
        if charcode_items >= 16:
            charcode_offset = _charcode_run_offset(digits_collapsed)
    new_function = data.count(b"new Function(") if b"Function(" in data else 0
    bracket_string = counts[_KW_INDEX["bracket_string"]]
    string_concat = counts[_KW_INDEX["string_concat"]]
    comments = counts[_KW_INDEX["comment"]]

    # -- identifiers, on a bounded sample ---------------------------------------------------------
    ident = _identifier_stats(data)

    upper = sum(h[65:91])
    digits = sum(h[48:58])
    offsets = [first[i] for i in range(len(_KW_NAMES)) if counts[i]]
    extra = [longest_offset, escape_offset, charcode_offset]
    converted = _char_offsets(data, offsets + extra) if not ascii_only else None

    def conv(pos: int) -> int:
        if pos < 0 or converted is None:
            return pos
        return converted[pos]

    return JsFeatures(
        length=len(text),
        byte_length=n,
        lines=lines,
        max_line_length=max_line,
        whitespace=whitespace,
        char_entropy=_entropy(hist),
        non_ascii=sum(h[128:]),
        digits=digits,
        upper=upper,
        punct=sum(h[b] for b in _PUNCT_BYTES),
        jsfuck_chars=sum(h[b] for b in _JSFUCK_BYTES),
        semicolons=h[59],
        commas=h[44],
        parens=h[40] + h[41],
        brackets=h[91] + h[93],
        plus=h[43],
        percent=h[37],
        backslash=h[92],
        string_count=len(literals),
        string_chars=string_chars,
        string_entropy=string_entropy,
        longest_string=longest,
        longest_string_offset=conv(longest_offset),
        longest_string_entropy=longest_entropy,
        longest_string_code_ratio=longest_code_ratio,
        longest_string_is_data_uri=longest_is_data,
        long_string_count=long_count,
        long_string_chars=long_chars,
        hex_string_chars=hex_chars,
        base64_string_chars=b64_chars,
        separator_string_chars=separator_chars,
        escape_hex=escape_hex,
        escape_unicode=escape_unicode,
        escape_unicode_ascii=escape_unicode_ascii,
        escape_percent_u=escape_percent_u,
        escape_offset=conv(escape_offset),
        charcode_list_items=charcode_items,
        charcode_list_offset=conv(charcode_offset),
        bracket_string=bracket_string,
        new_function=new_function,
        string_concat=string_concat,
        comments=comments,
        keyword_counts=MappingProxyType({_KW_NAMES[i]: counts[i] for i in range(len(_KW_NAMES)) if counts[i]}),
        first=MappingProxyType({_KW_NAMES[i]: conv(first[i]) for i in range(len(_KW_NAMES)) if counts[i]}),
        **ident,
    )


def _separator_encoded(body: bytes) -> bool:
    """Whether a string is short codes glued with one repeated junk separator.

    ``'YnEnEqAVur3cYnEnEqAVur69...'`` hides ``%3c%69`` behind the separator ``YnEnEqAVur``; the
    decoder is a ``split``/``replace`` away. The separator is the string's own prefix.
    """
    size = len(body)
    if not body.isalnum():
        # Interleaved junk: "v?U?y?6?[?1?4?2?]" or "v##Y##L##s": one separator between single chars.
        for k in (1, 2, 4):
            sep = body[1 : 1 + k]
            if not sep or sep.isalnum() or sep == b" " * k:
                continue
            count = body.count(sep)
            if count >= 20 and count * (k + 1) >= size * 0.9 and size <= count * (k + 2):
                return True
        return False
    for k in range(3, 16):
        sep = body[:k]
        if not sep.isalnum():
            return False
        count = body.count(sep)
        if count >= 12 and count * (k + 4) >= size * 0.95 and size <= count * (k + 4) * 1.6:
            rest = body.replace(sep, b"")
            return len(rest) <= count * 4 and rest.isalnum()
    return False


def _charcode_run_offset(collapsed: bytes, tries: int = 64) -> int:
    """Where the first long list of small numbers starts (bounded: checks ``tries`` candidates)."""
    pos = collapsed.find(b"0,")
    for _ in range(tries):
        if pos < 0:
            return -1
        start = pos
        while start > 0 and collapsed[start - 1] == 48:
            start -= 1
        if start == 0 or collapsed[start - 1] not in _NAME_BYTES:
            run = _CHARCODE_RUN.match(collapsed, start, start + 200)
            if run:
                return start
        pos = collapsed.find(b"0,", pos + 2)
    return -1


class _IdentifierStats(TypedDict, total=False):
    """The name statistics of a script, as JsFeatures fields (none when it has no names)."""

    identifier_count: int
    identifier_avg_length: float
    identifier_max_length: int
    identifier_short_ratio: float
    identifier_long_ratio: float
    identifier_unique_ratio: float
    identifier_digit_ratio: float
    identifier_case_switch_ratio: float
    identifier_random_ratio: float


def _identifier_stats_small(sample: bytes) -> _IdentifierStats:
    """The same statistics as the numpy path, in plain Python: cheaper for a short script."""
    tokens = _TOKEN_RE.findall(sample)
    names = [t for t in tokens if not 48 <= t[0] <= 57]
    if not names:
        return {}
    count = len(names)
    lengths = [len(t) for t in names]
    total_chars = sum(lengths)
    case = sample.translate(_CASE_SHAPE)
    switches = case.count(b"aA") + case.count(b"Aa")
    digit_chars = sample.translate(_LETTER_DIGIT_SHAPE).count(b"LD")
    long_names = [t for t in names if len(t) >= 8]
    generated = 0.0
    if long_names:
        hits = 0
        for name in long_names:
            size = len(name)
            shape = name.translate(_CLASS_SHAPE)
            cap_share = shape.count(b"3") / size
            rise_rate = shape.count(b"23") / size
            change_rate = sum(1 for a, b in zip(shape, shape[1:], strict=False) if a != b) / size
            mixed = 0.3 <= cap_share <= 0.7 and rise_rate >= 0.15
            soup = 0.2 <= cap_share <= 0.8 and change_rate >= 0.45
            hits += mixed or soup
        generated = hits / len(long_names)
    return {
        "identifier_count": count,
        "identifier_avg_length": total_chars / count,
        "identifier_max_length": max(lengths),
        "identifier_short_ratio": sum(1 for n in lengths if n <= 2) / count,
        "identifier_long_ratio": sum(1 for n in lengths if n >= 15) / count,
        "identifier_unique_ratio": min(1.0, len(set(tokens)) / count),
        "identifier_digit_ratio": digit_chars / max(1, total_chars),
        "identifier_case_switch_ratio": switches / max(1, total_chars),
        "identifier_random_ratio": generated,
    }


def _identifier_stats(data: bytes) -> _IdentifierStats:
    """Name statistics on at most IDENT_SAMPLE_BYTES, taken as evenly spaced chunks.

    Fully vectorised (numpy over the bytes): per-token Python loops would cost more than the
    rest of the extraction on a large bundle.
    """
    if len(data) > IDENT_SAMPLE_BYTES:
        step = len(data) // _IDENT_CHUNKS
        size = IDENT_SAMPLE_BYTES // _IDENT_CHUNKS
        sample = b" ".join(data[i * step : i * step + size] for i in range(_IDENT_CHUNKS))
    else:
        sample = data
    if len(sample) <= SMALL_SAMPLE_BYTES:
        return _identifier_stats_small(sample)
    cls = _CHAR_CLASS[np.frombuffer(sample, dtype=np.uint8)]
    if cls.size == 0:
        return {}
    ident = cls > 0
    upper = cls == 3
    lower = cls == 2
    digit = cls == 1
    padded = np.zeros(cls.size + 2, dtype=np.int8)
    padded[1:-1] = ident
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    names = ~digit[starts]  # a token starting with a digit is a number, not a name
    starts, ends = starts[names], ends[names]
    count = int(starts.size)
    if count == 0:
        return {}
    lengths = ends - starts
    total_chars = int(lengths.sum())
    letter = upper | lower | (cls == 4)
    # Case flips happen only between letters, so they are all inside names: no per-token sums.
    rise = lower[:-1] & upper[1:]
    switches = int(np.count_nonzero(rise)) + int(np.count_nonzero(upper[:-1] & lower[1:]))
    digit_chars = int(np.count_nonzero(digit[1:] & letter[:-1]))  # digits right after a letter: a1, _0x4
    long_names = lengths >= 8
    generated = 0.0
    if long_names.any():
        ls, le, ll = starts[long_names], ends[long_names], lengths[long_names]
        # A generated name mixes cases evenly (30-70 % capitals) and starts capital runs often;
        # camelCase (getElementById) has few capitals, acronyms (XMLHttpRequest) one run.
        bounds = np.empty(ls.size * 2, dtype=np.intp)
        bounds[0::2], bounds[1::2] = ls, le - 1
        caps = np.add.reduceat(upper.view(np.uint8), bounds, dtype=np.int32)[0::2] + upper[le - 1]
        rises = np.add.reduceat(np.append(rise, False).view(np.uint8), bounds, dtype=np.int32)[0::2]
        changes = np.add.reduceat(np.append(cls[:-1] != cls[1:], False).view(np.uint8), bounds, dtype=np.int32)[0::2]
        cap_share = caps / ll
        rise_rate = rises / ll
        change_rate = changes / ll
        mixed = (cap_share >= 0.3) & (cap_share <= 0.7)
        # Letter-soup with digits and underscores (Kve8G_TE0J) changes character class constantly.
        soup = (cap_share >= 0.2) & (cap_share <= 0.8) & (change_rate >= 0.45)
        generated = float(np.count_nonzero((mixed & (rise_rate >= 0.15)) | soup) / ll.size)
    unique = len(set(sample.translate(_IDENT_TABLE).split()))
    return {
        "identifier_count": count,
        "identifier_avg_length": total_chars / count,
        "identifier_max_length": int(lengths.max()),
        "identifier_short_ratio": float(np.count_nonzero(lengths <= 2)) / count,
        "identifier_long_ratio": float(np.count_nonzero(lengths >= 15)) / count,
        "identifier_unique_ratio": min(1.0, unique / count),
        "identifier_digit_ratio": digit_chars / max(1, total_chars),
        "identifier_case_switch_ratio": switches / max(1, total_chars),
        "identifier_random_ratio": generated,
    }


def _char_offsets(data: bytes, positions: list[int]) -> dict[int, int]:
    """Map UTF-8 byte offsets to character offsets with one forward pass."""
    out: dict[int, int] = {}
    chars = 0
    last = 0
    for pos in sorted({p for p in positions if p >= 0}):
        chars += len(data[last:pos].decode("utf-8", errors="ignore"))
        last = pos
        out[pos] = chars
    return out
