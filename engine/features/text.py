"""Hashed text features for the models, plus the clean-up that removes the corpora's shortcuts.

The same functions run at training time and at scan time, so the models see exactly what the
engine computes. Text becomes a ``{token: weight}`` dict that
:class:`sklearn.feature_extraction.FeatureHasher` turns into a sparse row: no vocabulary to
store, no state to drift, and the cost is one regex pass plus counting (a few MB/s per core
even for bigrams, which is why inputs are capped).

Shortcut removal (see ``../shared/data/README.md``, "Known caveats"):

* PHP blocks and server-side template tags are cut from HTML (a gateway sees rendered pages,
  and kits ship PHP while benign pages mostly do not);
* freeze-dry marks (CSP meta, ``<link rel=original>``, ``data-original-href``, Memento-Datetime,
  ``resources/…`` paths) are cut (only the benign login snapshots carry them);
* ``<script>`` elements are cut from the page model's input (the snapshots had theirs removed;
  the JavaScript model scores scripts on their own);
* the URL scheme is not part of the URL text (``http://`` is skewed towards phishing).

Bump :data:`TEXT_FEATURE_VERSION` whenever any output here changes: models record it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import islice, pairwise

TEXT_FEATURE_VERSION = "2"

#: Hashing space per model: small enough that three linear models stay a few MB.
N_HASH_FEATURES = 2**18

# -- JavaScript ------------------------------------------------------------------------------

#: The JS model reads the head and the tail of a script (obfuscated payloads and injected
#: snippets sit at either end); this caps the cost of one script at a few ms.
JS_HEAD_CHARS = 48_000
JS_TAIL_CHARS = 16_000
#: Token bigrams (the costly part) come from the first characters only.
JS_BIGRAM_CHARS = 16_000

_JS_TOKEN = re.compile(r"[A-Za-z_$][\w$]{0,40}|\d+|[^\w\s]{1,3}")


def js_tokens(text: str) -> dict[str, float]:
    """Identifier, number and punctuation tokens (log counts), plus early token bigrams.

    Bigram keys are ``"a b"``; tokens never contain a space, so counting the joined strings counts
    the same pairs as counting ``(a, b)`` tuples, in the same first-seen order. Counting and the
    log run through C-level ``map`` / ``Counter`` instead of Python loops (the scan's hot path).
    """
    if len(text) > JS_HEAD_CHARS + JS_TAIL_CHARS:
        text = text[:JS_HEAD_CHARS] + "\n" + text[-JS_TAIL_CHARS:]
    tokens, head = _js_tokens_and_head(text)
    counts = Counter(tokens)
    out = dict(zip(counts, map(math.log1p, counts.values()), strict=False))
    pairs = Counter(map(" ".join, zip(head, islice(head, 1, None), strict=False)))
    out.update(zip(pairs, map(math.log1p, pairs.values()), strict=False))
    out.update(_shape_tokens(text))
    return out


def _js_tokens_and_head(text: str) -> tuple[list[str], list[str]]:
    """``findall(text)`` and ``findall(text[:JS_BIGRAM_CHARS])``, scanning the shared head once.

    No token contains whitespace and the pattern has no anchors or look-arounds, so cutting the
    text at a whitespace character cuts its token list at the same place: both lists share the
    tokens before the last space or newline of the head.
    """
    if len(text) <= JS_BIGRAM_CHARS:
        tokens = _JS_TOKEN.findall(text)
        return tokens, tokens
    cut = max(text.rfind(" ", 0, JS_BIGRAM_CHARS), text.rfind("\n", 0, JS_BIGRAM_CHARS))
    if cut < 0:
        return _JS_TOKEN.findall(text), _JS_TOKEN.findall(text, 0, JS_BIGRAM_CHARS)
    shared = _JS_TOKEN.findall(text, 0, cut)
    return shared + _JS_TOKEN.findall(text, cut), shared + _JS_TOKEN.findall(text, cut, JS_BIGRAM_CHARS)


def _shape_tokens(text: str) -> dict[str, float]:
    """Coarse layout facts as tokens: line length and share of non-ASCII / escapes / digits."""
    n = max(len(text), 1)
    lines = text.count("\n") + 1
    return {
        f"_avgline:{min(int(math.log2(1 + n / lines)), 20)}": 1.0,
        f"_len:{min(int(math.log2(1 + n)), 24)}": 1.0,
        f"_esc:{min(int(40 * (text.count(chr(92)) / n)), 10)}": 1.0,
        f"_pct:{min(int(40 * (text.count('%') / n)), 10)}": 1.0,
    }


_SCRIPT_BLOCK = re.compile(r"<script\b[^>]*>(.*?)</script\s*>", re.S | re.I)


def scripts_in_markup(markup: str) -> list[str]:
    """Inline script texts of a markup sample (used for the JS corpus's HTML-wrapped rows)."""
    return [s for s in _SCRIPT_BLOCK.findall(markup) if s.strip()]


# -- URLs ------------------------------------------------------------------------------------

_URL_WORD = re.compile(r"[a-z0-9]+")


def url_tokens(url: str) -> dict[str, float]:
    """Character 3-5-grams of host and of path, host and path words (scheme left out), plus:
    each host label by its position from the right, the host's length, digits and hyphens, the
    path's segment count and file extension, query-key words and path word bigrams."""
    low = url.strip().lower()
    scheme_end = low.find("://")
    rest = low[scheme_end + 3:] if scheme_end != -1 else low
    rest = rest[:400]
    slash = rest.find("/")
    host, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    out: dict[str, float] = {}
    padded_host = f"^{host}$"
    for n in (3, 4, 5):
        for i in range(len(padded_host) - n + 1):
            out["h:" + padded_host[i:i + n]] = 1.0
        for i in range(len(path) - n + 1):
            out["p:" + path[i:i + n]] = 1.0
    labels = host.split(".")
    for word in _URL_WORD.findall(host):
        out["hw:" + word] = 1.0
    out["tld:" + labels[-1]] = 1.0
    out[f"_hostlabels:{min(len(labels), 8)}"] = 1.0
    for word in _URL_WORD.findall(path):
        out["pw:" + word] = 1.0
    out[f"_pathlen:{min(int(math.log2(1 + len(path))), 10)}"] = 1.0
    # Host labels by position (0 = the one left of the TLD), and the host's shape.
    for k, label in enumerate(reversed(labels[:-1])):
        out[f"hl{min(k, 3)}:{label}"] = 1.0
    out[f"_hostdigits:{min(sum(c.isdigit() for c in host), 6)}"] = 1.0
    out[f"_hostlen:{min(len(host) // 5, 12)}"] = 1.0
    out[f"_hosthyphens:{min(host.count('-'), 4)}"] = 1.0
    # Path structure: segments, the last segment's extension, query keys, word bigrams.
    q = path.find("?")
    path_only, query = (path, "") if q == -1 else (path[:q], path[q:])
    segments = [seg for seg in path_only.split("/") if seg]
    out[f"_segments:{min(len(segments), 10)}"] = 1.0
    if segments:
        last = segments[-1]
        dot = last.rfind(".")
        out["ext:" + (last[dot + 1:][:6] if dot != -1 else "none")] = 1.0
    for word in _URL_WORD.findall(query):
        out["qk:" + word] = 1.0
    words = _URL_WORD.findall(path_only)
    for a, b in pairwise(words):
        out[f"pb:{a} {b}"] = 1.0
    return out


# -- HTML pages ------------------------------------------------------------------------------

_PHP = re.compile(r"<\?(?:php|=)?.*?(?:\?>|\Z)", re.S | re.I)
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|</?roundcube:[^>]*>", re.S)
_CSP_META = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*[\"']?content-security-policy[^>]*>", re.I)
_MEMENTO_META = re.compile(r"<meta\b[^>]*memento-datetime[^>]*>", re.I)
_ORIGINAL_LINK = re.compile(r"<link\b[^>]*rel\s*=\s*[\"']?original[^>]*>", re.I)
_ORIGINAL_HREF = re.compile(r"\sdata-original-href\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]*)", re.I)
_RESOURCES_PATH = re.compile(r"(?<=[\"'(=])\s*(?:\./)?resources/[^\"')\s>]*", re.I)
_SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?(?:</script\s*>|\Z)", re.S | re.I)

#: The page model reads at most this much sanitised HTML.
PAGE_MAX_CHARS = 300_000


#: The only characters outside ASCII that ``re.IGNORECASE`` matches to an ASCII letter
#: (İ and ı to i, the Kelvin sign to k, long s to s).
_FOLDS_TO_ASCII_LETTER = ("\u0130", "\u0131", "\u212a", "\u017f")


def strip_server_side(html: str) -> str:
    """Cut PHP blocks and template tags: what a browser would never receive."""
    if "<?" in html:
        html = _PHP.sub(" ", html)
    # Every alternative of _TEMPLATE starts with one of these (case-sensitive) literals.
    if "{{" in html or "{%" in html or "{#" in html or "roundcube:" in html:
        html = _TEMPLATE.sub(" ", html)
    return html


def sanitize_html(html: str) -> str:
    """The page as the page model sees it: without PHP, template tags, freeze-dry marks, scripts.

    The two costliest passes (their patterns have no literal prefix, so ``re`` tries every
    position) are skipped when their literal cannot occur; the output is the same either way.
    """
    html = strip_server_side(html[: PAGE_MAX_CHARS * 2])
    html = _CSP_META.sub(" ", html)
    html = _MEMENTO_META.sub(" ", html)
    html = _ORIGINAL_LINK.sub(" ", html)
    lower = _ascii_folded_lower(html)
    if lower is None or "data-original-href" in lower:
        html = _ORIGINAL_HREF.sub(" ", html)
    # A substitution by " " cannot create "resources/" (it has no space), so ``lower`` still rules.
    if lower is None or "resources/" in lower:
        html = _RESOURCES_PATH.sub("", html)
    html = _SCRIPT_ELEMENT.sub(" ", html)
    return html[:PAGE_MAX_CHARS]


def _ascii_folded_lower(text: str) -> str | None:
    """``text.lower()`` when a case-insensitive ASCII literal occurs in ``text`` exactly when its
    lower case occurs in it; None when ``text`` holds a character that IGNORECASE folds to ASCII."""
    if not text.isascii() and any(ch in text for ch in _FOLDS_TO_ASCII_LETTER):
        return None
    return text.lower()


_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]{0,20})([^>]{0,2000})>")
_ATTR = re.compile(r"([a-zA-Z-]{1,30})\s*=\s*(?:\"([^\"]{0,300})\"|'([^']{0,300})'|([^\s>]{1,300}))")
_WORD = re.compile(r"[a-z]{2,24}")
_TAGS_RE = re.compile(r"<[^>]*>")


#: Attributes whose values are words a user reads or a form field's name (their words count).
_TEXT_ATTRS = frozenset({"placeholder", "value", "title", "alt", "aria-label", "label", "name", "id"})
_TITLE = re.compile(r"<title\b[^>]*>(.{0,2000}?)</title", re.S | re.I)
_WHITESPACE = re.compile(r"\s+")
#: Every 4-character window (overlapping: a look-ahead group). The scan uses :func:`_char4`, which
#: gives the same list; this pattern is its definition (tests compare the two).
_CHAR4 = re.compile(r"(?=(.{4}))", re.S)


def _char4(s: str) -> list[str]:
    """``_CHAR4.findall(s)``: ``s[i:i + 4]`` for each ``i`` in order, joined from four shifted
    copies in C (a third quicker than the regex's look-ahead at every position)."""
    return list(map("".join, zip(s, s[1:], s[2:], s[3:], strict=False)))
#: Character 4-grams come from the first and last characters of the sanitised page only
#: (a few ms whatever the page's size).
PAGE_CHAR_HEAD = 4_000
PAGE_CHAR_TAIL = 2_000
#: L2 norm of the character 4-gram block relative to the token block.
PAGE_CHAR_WEIGHT = 0.5


def page_tokens(clean_html: str) -> dict[str, float]:
    """Tag names, tag bigrams, tag/attribute pairs, input types and names, words of text-bearing
    attributes, the title's words, visible-text words (log counts), plus character 4-grams of
    the head and tail of the sanitised page, scaled so their block has ``PAGE_CHAR_WEIGHT``
    times the norm of the rest."""
    keys: list[str] = []  # in order of appearance: Counter keeps first-seen order
    add = keys.append
    tags: list[str] = []
    for tag, attrs in _TAG.findall(clean_html):
        tag = tag.lower()
        add("t:" + tag)
        tags.append(tag)
        if not attrs:
            continue
        for name, v1, v2, v3 in _ATTR.findall(attrs):
            name = name.lower()
            add(f"a:{tag}.{name}")
            value = (v1 or v2 or v3).lower()
            if name in _VALUE_ATTRS:
                add(f"v:{tag}.{name}={value[:40]}")
            elif name in _URL_ATTRS:
                add(f"u:{tag}.{name}:{_url_shape(value)}")
            if name in _TEXT_ATTRS:
                keys.extend(map("aw:".__add__, _WORD.findall(value[:300])))
    keys.extend(map("tb:{} {}".format, tags, islice(tags, 1, None)))
    counts = Counter(keys)
    text = _TAGS_RE.sub(" ", clean_html).lower()
    counts.update(map("w:".__add__, _WORD.findall(text[:100_000])))
    title = _TITLE.search(clean_html)
    if title:
        counts.update(map("ti:".__add__, _WORD.findall(title.group(1).lower())))
    out = dict(zip(counts, map(math.log1p, counts.values()), strict=False))
    if PAGE_CHAR_WEIGHT > 0:
        s = clean_html
        if len(s) > PAGE_CHAR_HEAD + PAGE_CHAR_TAIL:
            s = s[:PAGE_CHAR_HEAD] + " " + s[-PAGE_CHAR_TAIL:]
        # Upper case: every key above starts with a lower-case ASCII letter ("t:", "w:", ...), so
        # no 4-gram can be mistaken for one of them, without the cost of prefixing each gram.
        s = _WHITESPACE.sub(" ", s.upper())
        grams = Counter(_char4(s))
        values = list(map(math.log1p, grams.values()))
        token_norm = math.hypot(*out.values()) or 1.0
        gram_norm = math.hypot(*values) or 1.0
        factor = PAGE_CHAR_WEIGHT * token_norm / gram_norm
        out.update(zip(grams, map(factor.__mul__, values), strict=False))
    return out


_VALUE_ATTRS = frozenset({"type", "name", "id", "autocomplete", "method", "rel", "http-equiv"})
_URL_ATTRS = frozenset({"action", "href", "src"})


def _url_shape(value: str) -> str:
    """What kind of target a link has, not where it goes (domains would memorise sites)."""
    value = value.strip()
    if not value:
        return "empty"
    if value.startswith("#"):
        return "fragment"
    for prefix in ("javascript:", "mailto:", "data:", "tel:"):
        if value.startswith(prefix):
            return prefix[:-1]
    if value.startswith(("http://", "https://", "//")):
        return "absolute"
    if value.endswith(".php") or ".php?" in value:
        return "php"
    return "relative"
