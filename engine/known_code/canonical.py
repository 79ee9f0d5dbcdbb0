"""A JavaScript fingerprint that ignores what cannot change behaviour, and nothing else.

The *canonical form* of a script is its code with comments and whitespace removed, one space kept
only where two tokens would otherwise merge (``var a``, ``a + +b``), single-quoted plain strings
written with double quotes, and a string that is nothing but a version number (``"3.7.1"``)
replaced by one placeholder. It is the same for a library whatever its banner, comments,
indentation, line endings, byte-order mark, source-map comment or announced version, and it
changes when any code changes: names, keywords, punctuators, numbers, regular expressions and
template literals are kept verbatim. Names are deliberately *not* normalised: renaming ``a`` and
``b`` consistently inside a piece of code can swap which outer variable is read or written, so a
renaming-tolerant fingerprint could be made to accept changed behaviour. A copy re-minified with
other names is therefore "unknown" (and scanned), never "unmodified".

What is dropped must be what the browser drops. The lexer follows the ECMAScript lexical grammar
for whitespace (Unicode ``Zs``, BOM), line terminators (LF, CR, U+2028, U+2029), comments, strings
(with line continuations), template literals (``${}`` nested a few levels) and regular expression
literals. The one context-dependent decision, whether ``/`` starts a regular expression or
divides, is taken from the token before it, as the browser's parser does in all but rare cases
(``if (x) /re/``); :mod:`.verify` checks a text against a real parser (tree-sitter), and only
verified library files enter a database. Two texts with the same canonical form are then the same
program: by induction over tokens, the lexer takes the same decision at the same token in both
(a different decision yields a different token, hence a different form), and the browser, whose
decisions follow from the tokens before, takes the decision the verified library shows. Line
breaks matter in JavaScript only through automatic semicolon insertion; where they change what a
valid program means (after ``return``, ``throw``, ``break``, ``continue``, ``yield``, ``async``
and before ``++``/``--``) a line break is kept as ``\\n``.

Speed: one ``findall`` walks the text, and a match is a whole run of code without whitespace,
quotes or slashes (``e.fn.init=function(e,t,n){var``), not one token, so a minified library costs
a few thousand matches, all in C. The form is then cut into *chunks* at statement ends (``;`` and
``}``) chosen by the content of the statement itself (content-defined chunking), so that code
inserted anywhere changes only the chunk(s) around it and every other chunk keeps its hash.
Hashes are 64-bit BLAKE2b: matching a known chunk would take a second preimage (2^64 work).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from itertools import chain

#: Bump when the canonical form or the chunking changes: a database records the version it was
#: built with, and a matcher of another version refuses it.
FINGERPRINT_VERSION = "strict-1"

#: A statement whose CRC32 has these low bits clear ends a chunk (1 in 8 eligible statements).
CHUNK_MASK = 0x7
#: Statements shorter than this (characters of canonical form, e.g. a lone ``}``) never end a
#: chunk, or frequent tiny statements would cut chunks down to nothing.
MIN_BOUNDARY_STATEMENT = 12

#: More ``/*`` than this after the last ``*/`` makes a text unfingerprintable (see canonical_form).
MAX_UNTERMINATED_COMMENTS = 8
#: Upper bound of the characters the lexer may scan in vain inside ``[`` without ``]`` (see
#: canonical_form): beyond it a text is unfingerprintable (and scanned in full).
MAX_CLASS_SCAN = 30_000_000

_WS = "\t\x0b\x0c \xa0\ufeff\u1680\u2000-\u200a\u202f\u205f\u3000"
_LT = "\n\r\u2028\u2029"
WS = f"[{_WS}]"
LT = f"[{_LT}]"
BLOCK_COMMENT = r"/\*[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
_BLOCK_COMMENT_NO_LT = rf"/\*(?:[^*{_LT}]++|\*(?!/))*+\*/"
_BLOCK_COMMENT_WITH_LT = rf"/\*(?:[^*{_LT}]++|\*(?!/))*+{LT}[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
LINE_COMMENT = rf"//[^{_LT}]*+"
_SKIP = rf"(?:{WS}++|{LT}++|{BLOCK_COMMENT}|{LINE_COMMENT})*+"
_SKIP_NO_LT = rf"(?:{WS}++|{_BLOCK_COMMENT_NO_LT})*+"
_LINE_BREAK = rf"(?:{LINE_COMMENT})?{LT}|{_BLOCK_COMMENT_WITH_LT}"

_ESCAPE = r"\\(?:\r\n|[\s\S])"
STRING = rf"""'(?:[^'\\\n\r]++|{_ESCAPE})*+'|"(?:[^"\\\n\r]++|{_ESCAPE})*+\""""
REGEX = rf"/(?![*/])(?:[^/\\\[{_LT}]++|\\[^{_LT}]|\[(?:[^\]\\{_LT}]++|\\[^{_LT}])*+\])++/[A-Za-z0-9_$]*+"
#: Code between whitespace, comments, strings, templates, slashes and statement ends, verbatim.
RUN = rf"[^{_WS}{_LT}'\"`/;}}]++"

#: Keywords after which ``/`` starts a regular expression.
KEYWORDS_BEFORE_REGEX = (
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do",
    "else", "yield", "await",
)
#: Keywords after which a line break changes the meaning of a valid program.
LINE_BREAK_SENSITIVE_AFTER = ("return", "throw", "break", "continue", "yield", "async")


def _template(depth: int) -> str:
    """A template literal whose ``${}`` substitutions nest at most ``depth`` levels."""
    plain = r"(?:[^`\\$]++|\\[\s\S]|\$(?!\{))"
    if depth == 0:
        return rf"`{plain}*+`"
    inner = _template(depth - 1)
    simple = r"[^{}`'\"/]++"
    braces = rf"\{{(?:{simple}|{STRING}|{BLOCK_COMMENT}|{LINE_COMMENT}|/)*+\}}"
    code = rf"(?:{simple}|{STRING}|{inner}|{BLOCK_COMMENT}|{LINE_COMMENT}|/|{braces})"
    return rf"`(?:{plain}|\$\{{{code}*+\}})*+`"


TEMPLATE = _template(3)


def _after_word(words: tuple[str, ...]) -> str:
    """True right after one of ``words`` as a whole name.

    A property ``x.return`` counts too: the decision must read the same in the canonical form,
    where ``x. return`` has become ``x.return`` (the rare miss is caught by :mod:`.verify`).
    """
    return "|".join(rf"(?<![$\w\\]{w})(?<={w})" for w in words)


def _lexer(with_offsets: bool) -> re.Pattern[str]:
    """The lexer: one match per piece of code, with the whitespace and comments before it.

    Groups: ``g`` whitespace holding a line break that counts (after a keyword of
    :data:`LINE_BREAK_SENSITIVE_AFTER`, or before ``++``/``--``); ``t`` the piece: a run of code,
    a string, a template, ``;``, ``}``, a ``/`` that divides, a regular expression after such a
    line break, or any single character (so no text is ever skipped; an empty piece at the end
    takes trailing comments); ``r`` a regular expression right after a piece after which one may
    start (a punctuator other than ``)``, ``]``, ``++``, ``--``, or a keyword of
    :data:`KEYWORDS_BEFORE_REGEX`). After ``return`` the regular expression is taken only on the
    same line (a line break there ends the statement). ``with_offsets`` also captures the skipped
    text (``s1``, ``s2``), which changes no match.
    """
    restricted = rf"(?<=[nwkedc])(?:{_after_word(LINE_BREAK_SENSITIVE_AFTER)})"
    counted_break = (
        rf"{restricted}(?={_SKIP_NO_LT}(?:{_LINE_BREAK}))"
        rf"|(?={_SKIP_NO_LT}(?:{_LINE_BREAK}){_SKIP}(?:\+\+|--))"
    )
    before = rf"(?:{counted_break})(?P<g>{_SKIP})|{_SKIP}"
    piece = rf"{RUN}|[;}}]|{STRING}|{TEMPLATE}|(?(g){REGEX}|(?!))|/=?|[\s\S]|\Z"
    regex_may_follow = (
        rf"(?<=[{{}}(\[;,~:@=!<>*+\-/%^&|?.])(?<!\+\+)(?<!--)(?<![0-9]\.)"
        rf"|{_after_word(KEYWORDS_BEFORE_REGEX)}"
    )
    # Cheap checks first: the lookbehinds run only where a regular expression may follow.
    after = (
        rf"(?=[{_WS}{_LT}/])(?={_SKIP}/)(?:{regex_may_follow})"
        rf"(?P<s2>(?>(?:{restricted}){_SKIP_NO_LT}|{_SKIP}))(?P<r>{REGEX})"
    )
    pattern = rf"(?P<s1>{before})(?P<t>{piece})(?:{after})?"
    if not with_offsets:
        pattern = pattern.replace("(?P<s1>", "(?:", 1).replace("(?P<s2>", "(?:", 1)
    return re.compile(pattern)


_LONG_CLASS = re.compile(rf"\[[^\]{_LT}]{{256,}}")
_LEXER = _lexer(with_offsets=False)
_LEXER_OFFSETS = _lexer(with_offsets=True)

#: A counted line break (the whitespace piece of group ``g``) becomes one ``\n`` piece.
_COUNTED_BREAK = re.compile(rf"\x00(?:[{_WS}{_LT}]|/[/*])[^\x00]*+")
_SINGLE_QUOTED = re.compile(r"\x00'([^'\"\\\x00-\x1f]*+)'(?=\x00|$)")
#: A string that is only a version number ("3.7.1", "v2.0.0-rc.1"): it can name no host or path.
_VERSION = re.compile(
    r'\x00"v?[0-9]+\.[0-9]+(?:\.[0-9]+)?(?:-(?:alpha|beta|rc|pre|dev|next)?\.?[0-9]*)?"(?=\x00|$)'
)
VERSION_TOKEN = '"\x02"'
_STATEMENT_END = re.compile(r"\x00(?<=\x00[;}]\x00)")
_NAME = r"[\w$\\\x80-\U0010ffff]"
#: Between two pieces a space is kept only where the two would lex differently once joined:
#: two names, ``+ +``, ``- -``, ``/ /`` and ``/ *`` (comments), ``/x/ in`` (flags), ``1 .x``,
#: ``< !--`` (an HTML-like comment).
_NEEDS_SPACE = re.compile(
    rf"\x00(?:(?<={_NAME}\x00)(?={_NAME})|(?<=\+\x00)(?=\+)|(?<=-\x00)(?=-)|(?<=/\x00)(?=[/*]|{_NAME})"
    r"|(?<=[0-9]\x00)(?=\.)|(?<=<\x00)(?=!))"
)
#: Characters the canonical form uses as separators and placeholder.
RESERVED = ("\x00", "\x01", "\x02")
STATEMENT_SEPARATOR = "\x01"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The canonical form of one script and the hashes derived from it."""

    #: Statements of the canonical form, separated by :data:`STATEMENT_SEPARATOR`.
    canonical: str
    #: 64-bit BLAKE2b of the whole canonical form: equal means "the same code".
    code_hash: int
    #: 64-bit hashes of the chunks, in order.
    chunk_hashes: tuple[int, ...]
    #: How many statements each chunk holds (to map chunks back to offsets in the text).
    chunk_statements: tuple[int, ...]
    #: Characters of canonical form in each chunk (how much code it stands for).
    chunk_chars: tuple[int, ...]


class Unfingerprintable(ValueError):
    """The text holds a character the canonical form reserves (U+0000 to U+0002)."""


def canonical_form(text: str) -> str:
    """The canonical form, statements separated by :data:`STATEMENT_SEPARATOR`.

    A virtual ``;`` starts every text, so that the first piece may be a regular expression like
    any piece after a statement end; it is the first statement of every form.
    """
    if any(ch in text for ch in RESERVED):
        raise Unfingerprintable("text contains U+0000, U+0001 or U+0002")
    # An unterminated /* is scanned to the end of the text at each try: many of them (only
    # possible after the last */) would cost quadratic time. Browsers refuse such a script.
    if text.count("/*", max(0, text.rfind("*/"))) > MAX_UNTERMINATED_COMMENTS:
        raise Unfingerprintable("unterminated comments")
    # A regular expression class is read to its "]"; from every "/" before an unclosed "[" the
    # lexer reads to the end of the line in vain ("[/[/[/..."): bound that work.
    waste = sum(m.group().count("/") * (m.end() - m.start()) for m in _LONG_CLASS.finditer(text))
    if waste > MAX_CLASS_SCAN:
        raise Unfingerprintable("unclosed brackets on long lines")
    form = "\x00" + "\x00".join(filter(None, chain.from_iterable(_LEXER.findall(";" + text))))
    if "\n" in form or "\r" in form or "\u2028" in form or "\u2029" in form:
        form = _COUNTED_BREAK.sub("\x00\n", form)
    if "'" in form:
        form = _SINGLE_QUOTED.sub('\x00"\\1"', form)
    if '"' in form:
        form = _VERSION.sub("\x00" + VERSION_TOKEN, form)
    form = _STATEMENT_END.sub(STATEMENT_SEPARATOR, form)
    form = _NEEDS_SPACE.sub(" ", form)
    return form.replace("\x00", "")


def hash64(data: str) -> int:
    """64-bit BLAKE2b of ``data`` (UTF-8; lone surrogates kept as they are)."""
    digest = hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def fingerprint(text: str) -> Fingerprint:
    """Canonical form, whole-code hash and chunk hashes of ``text``."""
    form = canonical_form(text)
    parts = form.split(STATEMENT_SEPARATOR)
    encoded = [part.encode("utf-8", "surrogatepass") for part in parts]
    ends = [
        i + 1 for i, (crc, data) in enumerate(zip(map(zlib.crc32, encoded), encoded, strict=False))
        if not crc & CHUNK_MASK and len(data) >= MIN_BOUNDARY_STATEMENT
    ]
    if not ends or ends[-1] != len(parts):
        ends.append(len(parts))
    hashes: list[int] = []
    sizes: list[int] = []
    chars: list[int] = []
    start = 0
    for end in ends:
        chunk = STATEMENT_SEPARATOR.join(parts[start:end])
        hashes.append(hash64(chunk))
        sizes.append(end - start)
        chars.append(len(chunk))
        start = end
    return Fingerprint(form, hash64(form), tuple(hashes), tuple(sizes), tuple(chars))


def statement_offsets(text: str) -> list[int]:
    """Where each statement of the canonical form starts in ``text`` (characters).

    Runs the same lexer with the skipped text captured. A statement starts right after the ``;``
    or ``}`` that ends the one before (its leading whitespace and comments belong to it). The
    first statement is the virtual ``;``: it starts and ends at 0.
    """
    starts = [0]
    pending = -1  # a statement ended here; the next one starts if any piece follows
    pos = -1  # offsets in ";" + text, less the virtual ";"
    for s1, g, t, s2, r in _LEXER_OFFSETS.findall(";" + text):
        if pending >= 0 and (g or t):
            starts.append(pending)
            pending = -1
        pos += len(s1) + len(t)
        if t in (";", "}"):
            pending = max(0, pos)
        pos += len(s2) + len(r)
        if pending >= 0 and r:
            starts.append(pending)
            pending = -1
    return starts
