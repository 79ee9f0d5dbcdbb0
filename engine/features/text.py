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

TEXT_FEATURE_VERSION = "1"

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
    """Identifier, number and punctuation tokens (log counts), plus early token bigrams."""
    if len(text) > JS_HEAD_CHARS + JS_TAIL_CHARS:
        text = text[:JS_HEAD_CHARS] + "\n" + text[-JS_TAIL_CHARS:]
    tokens = _JS_TOKEN.findall(text)
    out = {tok: math.log1p(n) for tok, n in Counter(tokens).items()}
    head = _JS_TOKEN.findall(text[:JS_BIGRAM_CHARS]) if len(text) > JS_BIGRAM_CHARS else tokens
    for (a, b), n in Counter(zip(head, head[1:])).items():
        out[f"{a} {b}"] = math.log1p(n)
    out.update(_shape_tokens(text))
    return out


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
    """Character 3-5-grams of host and of path, plus host and path words (scheme left out)."""
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


def strip_server_side(html: str) -> str:
    """Cut PHP blocks and template tags: what a browser would never receive."""
    if "<?" in html:
        html = _PHP.sub(" ", html)
    if "{" in html or "roundcube:" in html:
        html = _TEMPLATE.sub(" ", html)
    return html


def sanitize_html(html: str) -> str:
    """The page as the page model sees it: without PHP, template tags, freeze-dry marks, scripts."""
    html = strip_server_side(html[: PAGE_MAX_CHARS * 2])
    html = _CSP_META.sub(" ", html)
    html = _MEMENTO_META.sub(" ", html)
    html = _ORIGINAL_LINK.sub(" ", html)
    html = _ORIGINAL_HREF.sub(" ", html)
    html = _RESOURCES_PATH.sub("", html)
    html = _SCRIPT_ELEMENT.sub(" ", html)
    return html[:PAGE_MAX_CHARS]


_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]{0,20})([^>]{0,2000})>")
_ATTR = re.compile(r"([a-zA-Z-]{1,30})\s*=\s*(?:\"([^\"]{0,300})\"|'([^']{0,300})'|([^\s>]{1,300}))")
_WORD = re.compile(r"[a-z]{2,24}")
_TAGS_RE = re.compile(r"<[^>]*>")


def page_tokens(clean_html: str) -> dict[str, float]:
    """Tag names, tag/attribute pairs, input types and names, and visible-text words."""
    counts: Counter[str] = Counter()
    for tag, attrs in _TAG.findall(clean_html):
        tag = tag.lower()
        counts["t:" + tag] += 1
        for name, v1, v2, v3 in _ATTR.findall(attrs):
            name = name.lower()
            counts[f"a:{tag}.{name}"] += 1
            value = (v1 or v2 or v3).lower()
            if name in ("type", "name", "id", "autocomplete", "method", "rel", "http-equiv"):
                counts[f"v:{tag}.{name}={value[:40]}"] += 1
            elif name in ("action", "href", "src"):
                counts[f"u:{tag}.{name}:{_url_shape(value)}"] += 1
    text = _TAGS_RE.sub(" ", clean_html).lower()
    for word in _WORD.findall(text[:100_000]):
        counts["w:" + word] += 1
    return {k: math.log1p(v) for k, v in counts.items()}


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
