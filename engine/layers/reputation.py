"""Layer 2, reputation: what lists say about this site, and whether it imitates a brand.

Three sources of judgement, in this order:

1. **Blocklists** (files from ``[reputation] blocklist_files`` plus the entries the API manages,
   see :func:`use_lists`): a blocklisted domain (or parent domain), URL, script sha256 or
   script source is a CRITICAL indicator (``reputation.blocklisted_*``), which forces MALICIOUS.
   A block always beats an allow: a blocklisted script on an allowlisted site is a compromise.
2. **Allowlists**: a listed domain or URL sets ``details["allowlisted"] = True`` with an INFO
   indicator ``reputation.allowlisted_*``; the verdict then says BENIGN and why.
3. **Look-alikes** of protected brand domains (``engine/data/brands.txt`` plus the user's file),
   judged on the registrable domain: homoglyph folding (Cyrillic/Greek letters, ``0``->``o``,
   ``rn``->``m``, punycode decoded), Damerau-Levenshtein distance (1 for 6-8 letters, 2 for longer
   names), the brand inside another domain (``paypal-login.com``), the brand's exact name on another
   TLD, and the brand's domain inside a subdomain (``paypal.com.evil.net``). A brand's own domains
   and their subdomains are never flagged.

The score is the noisy-OR of the indicators' points, like the url layer's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, ClassVar

import ahocorasick

from ..capture import Capture
from ..config import EngineConfig
from ..features import Features
from ..features.url import RISKY_TLDS, UrlFeatures, decode_punycode
from ..lists import (
    Brand,
    ListEntries,
    ListHit,
    ListSnapshot,
    bundled_brands,
    config_lists,
    first_address_hit,
    load_brands,
    owned_by,
)
from ..findings import Finding, Strength, catalogue, combine
from ..results import Evidence, Indicator, LayerResult, snippet

# -- API-managed entries (process-wide) ----------------------------------------------------------

_pushed = ListSnapshot()


def use_lists(snapshot: ListSnapshot) -> None:
    """Use ``snapshot``'s API-managed entries in every reputation layer of this process.

    The scan workers call this when the list service publishes a new snapshot (one assignment:
    a scan sees the old entries or the new ones, never half of each).
    """
    global _pushed
    _pushed = snapshot


def update_lists(allow: Iterable[str], block: Iterable[str]) -> dict[str, int]:
    """Replace the API-managed entries with these strings (each a domain, matching its subdomains
    too, a URL or a 64-hex sha256). Raises :class:`ValueError` naming the bad entry, and then
    nothing is replaced. Returns the entry counts."""
    snapshot = ListSnapshot.from_strings(list(allow), list(block), version=_pushed.version + 1)
    use_lists(snapshot)
    return {"allow": len(snapshot.allow), "block": len(snapshot.block)}


def dynamic_lists() -> tuple[ListEntries, ListEntries]:
    """The current API-managed ``(allow, block)`` entries."""
    return _pushed.allow, _pushed.block


# -- homoglyph folding ---------------------------------------------------------------------------

#: Letters from other scripts that render like Latin ones, and Latin letters that look alike.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "һ": "h", "ь": "b", "ү": "y", "ɡ": "g", "ո": "n", "ս": "u",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "γ": "y", "η": "n",
    # Latin look-alikes and ASCII digit/symbol swaps
    "ı": "i", "ł": "l", "ɑ": "a", "ȷ": "j", "ß": "b",
    "0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "3": "e", "4": "a", "5": "s", "7": "t",
    "$": "s", "@": "a",
})
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("nn", "m"))


def fold(label: str) -> str:
    """A canonical look-alike form: ``pаypa1`` (Cyrillic а, digit 1) and ``paypal`` fold alike."""
    text = unicodedata.normalize("NFKD", label.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.translate(_CONFUSABLES)
    for pair, single in _MULTI:
        if pair in text:
            text = text.replace(pair, single)
    return text


def damerau_levenshtein(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _deletes(word: str, depth: int) -> set[str]:
    """Every string made by deleting up to ``depth`` characters of ``word`` (SymSpell index)."""
    out = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


#: Ordinary words one edit away from a brand's name: a site called finance.com or switch.tv is
#: not imitating Binance or Twitch.
_NOT_TYPOS = frozenset(
    """finance strike strip stride strive strife striped stripes trust truest interact switch
    revolt twister webchat goggle shrill barclay telegraf transfer etransfer""".split()
)


_CACHE_SIZE = 16_384


def _max_distance(label: str) -> int:
    """Edits a look-alike of ``label`` may have: 0 below 6 letters, 1 up to 8, then 2."""
    return 0 if len(label) < 6 else 1 if len(label) < 9 else 2


#: A look-alike finding (no evidence yet) and the part of the address it is about.
_Lookalike = tuple[Finding, str]


class ReputationLayer:
    """Allowlists, blocklists and brand look-alikes."""

    name: ClassVar[str] = "reputation"
    version: ClassVar[str] = "1"

    def __init__(self, config: EngineConfig) -> None:
        rep = config.reputation
        self._allow, self._block = config_lists(config)
        brands = list(bundled_brands()) if rep.use_bundled_brands else []
        if rep.protected_brands_file:
            brands += load_brands(config.resolve(rep.protected_brands_file))
        self._brands = brands
        self._brand_domains = frozenset(d for b in brands for d in b.domains)
        self._by_label: dict[str, Brand] = {}
        self._by_fold: dict[str, Brand] = {}
        self._delete_index: dict[str, set[str]] = {}
        for brand in brands:
            self._by_label.setdefault(brand.label, brand)
            if len(brand.label) >= 4:
                self._by_fold.setdefault(fold(brand.label), brand)
            if not brand.common_word and _max_distance(brand.label):
                for variant in _deletes(brand.label, _max_distance(brand.label)):
                    self._delete_index.setdefault(variant, set()).add(brand.label)
        self._embeddable = frozenset(
            b.label for b in brands if not b.common_word and len(b.label) >= 4
        )
        # Brands of 6+ letters at the start or end of a word ("paypalsecure"), in one C pass.
        self._automaton = ahocorasick.Automaton()
        for brand_label in self._embeddable:
            if len(brand_label) >= 6:
                self._automaton.add_word(brand_label, brand_label)
        if len(self._automaton):
            self._automaton.make_automaton()
        self._longest_label = max((len(b.label) for b in brands), default=0)
        # Per-host cache of look-alike findings (a plain dict, so the layer stays picklable).
        self._lookalike_cache: dict[tuple[str, bool], tuple[_Lookalike, ...]] = {}

    # -- the layer ------------------------------------------------------------------------------

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        f = features.url
        pushed = _pushed
        blocks = self._block_indicators(capture, features, f, (self._block, pushed.block))
        if blocks:
            return LayerResult(layer=self.name, score=100.0, indicators=tuple(blocks),
                               details={"allowlisted": False, "blocklisted": True})
        allowed = self._allow_indicator(f, (self._allow, pushed.allow))
        if allowed is not None:
            return LayerResult(layer=self.name, score=0.0, indicators=(allowed,),
                               details={"allowlisted": True})
        findings = []
        for finding, where in self._lookalikes(f, bool(f.credential_words_host or f.credential_words_path)):
            start = max(0, f.url.lower().find(where.lower()))
            findings.append(finding.with_evidence([Evidence(snippet(f.url, start, start + len(where)), "url", start)]))
        indicators = tuple(finding.indicator() for finding in findings)
        return LayerResult(layer=self.name, score=combine(f.points for f in findings), indicators=indicators,
                           details={"allowlisted": False, "brand_domain": self.is_brand_domain(f.host)})

    def is_brand_domain(self, host: str) -> bool:
        """True when ``host`` is, or is under, a protected brand's own domain."""
        return bool(host) and owned_by(host, self._brand_domains) is not None

    # -- lists ----------------------------------------------------------------------------------

    def _block_indicators(self, capture: Capture, features: Features, f: UrlFeatures,
                          lists: tuple[ListEntries, ...]) -> list[Indicator]:
        found: list[Indicator] = []
        for entries in lists:
            if not len(entries):
                continue
            page = entries.match_address(capture.url, f.host)
            if page is not None and page.kind == "url":
                found.append(_list_indicator("reputation.blocklisted_url", page.hit, capture.url, "url"))
            elif page is not None:
                found.append(_list_indicator("reputation.blocklisted_domain", page.hit, f.host, "url",
                                             domain=page.key))
            for script in capture.scripts:
                source = entries.match_address(script.url, _host_of(script.url)) if script.url else None
                if source is not None:
                    found.append(_list_indicator("reputation.blocklisted_script", source.hit, script.url or "",
                                                 script.location, variant="address"))
            if entries.sha256:
                for view in features.scripts:
                    hit_hash = entries.match_sha256(view.script.sha256)
                    if hit_hash:
                        found.append(_list_indicator("reputation.blocklisted_script", hit_hash,
                                                     view.script.sha256 or "", view.location, variant="sha256"))
        return found

    def _allow_indicator(self, f: UrlFeatures, lists: tuple[ListEntries, ...]) -> Indicator | None:
        hit = first_address_hit(lists, f.url, f.host)
        if hit is None:
            return None
        if hit.kind == "url":
            return _list_indicator("reputation.allowlisted_url", hit.hit, f.url, "url")
        return _list_indicator("reputation.allowlisted_domain", hit.hit, f.host, "url", domain=hit.key)

    # -- look-alikes ----------------------------------------------------------------------------

    def _lookalikes(self, f: UrlFeatures, credential_words: bool) -> tuple[_Lookalike, ...]:
        key = (f.host, credential_words)
        found = self._lookalike_cache.get(key)
        if found is None:
            if len(self._lookalike_cache) >= _CACHE_SIZE:
                self._lookalike_cache.clear()
            found = self._lookalike_findings(f.host, f.registrable_domain, f.subdomain,
                                             f.domain_label, credential_words)
            self._lookalike_cache[key] = found
        return found

    def _lookalike_findings(self, host: str, reg: str, subdomain: str, label: str,
                            credential_words: bool) -> tuple[_Lookalike, ...]:
        """Brand imitations in ``host`` (cached per host and credential-word flag)."""
        if not host or not label or self.is_brand_domain(host) or _is_ip(host):
            return ()
        findings: list[_Lookalike] = []
        unicode_label = decode_punycode(label) if "xn--" in label else label
        suffix = reg[len(label) + 1 :] if reg.startswith(label + ".") else ""
        brand = self._by_label.get(label)
        if brand is not None:
            # The brand's exact name on a TLD it does not use. Brands own many country domains
            # (google.ca, amazon.cn), so a two-letter country TLD that is not a free one is fine;
            # common words (target.xyz) and short names (ups.org) belong to many owners.
            last = suffix.rsplit(".", 1)[-1]
            country = len(last) == 2 and last not in RISKY_TLDS
            if suffix and not country and not brand.common_word and len(label) >= 4:
                findings.append((_found("reputation.brand_other_tld", domain=reg, brand=brand.primary), reg))
        else:
            findings.extend(self._imitations(unicode_label, reg, credential_words))
        findings.extend(self._subdomain_findings(subdomain, reg, credential_words))
        return tuple(findings)

    def _imitations(self, unicode_label: str, reg: str, credential_words: bool) -> list[_Lookalike]:
        tokens = [t for t in re.split(r"[-_.]", unicode_label) if t]
        candidates = [unicode_label] + (tokens if len(tokens) > 1 else [])
        # 1. Homoglyphs: the label (or a hyphen-token) folds onto a brand's label.
        for text in candidates:
            target = self._by_fold.get(fold(text))
            if target is not None and text != target.label:
                whole = text == unicode_label
                return [(_found("reputation.lookalike_homoglyph", variant="whole" if whole else "part",
                                domain=reg, brand=target.primary), reg)]
        # 2. Typos: within 1-2 edits of a brand's label.
        for text in candidates:
            if not 5 <= len(text) <= self._longest_label + 2 or not text.isascii() or text in _NOT_TYPOS:
                continue
            # Two deletions only where a 2-edit brand (9+ letters) can be: the index holds the
            # brands' own deletions, so one deletion here still finds every single edit.
            for variant in _deletes(text, 2 if 9 <= len(text) <= 16 else 1):
                for brand_label in self._delete_index.get(variant, ()):
                    if brand_label == text:
                        continue
                    distance = damerau_levenshtein(text, brand_label)
                    if 0 < distance <= _max_distance(brand_label):
                        target = self._by_label[brand_label]
                        return [(_found("reputation.lookalike_typo", variant=_grade(credential_words),
                                        domain=reg, brand=target.primary), reg)]
        # 3. The brand inside another name: paypal-login.com, securepaypal.net.
        found = [t for t in tokens if t in self._embeddable]
        if not found and len(self._automaton):
            for token in tokens:
                for end, brand_label in self._automaton.iter(token):
                    if token != brand_label and (end == len(token) - 1 or end + 1 == len(brand_label)):
                        found.append(brand_label)
                        break
        if found:
            target = self._by_label[found[0]]
            return [(_found("reputation.brand_in_domain", variant=_grade(credential_words), domain=reg,
                            brand=target.primary), found[0])]
        return []

    def _subdomain_findings(self, subdomain: str, reg: str, credential_words: bool) -> list[_Lookalike]:
        if not subdomain:
            return []
        # The registrable label's first word joins the subdomain: appleid.apple.com-isupport.info
        # reads "apple.com" across the boundary.
        labels = subdomain.split(".") + [re.split(r"[-_]", reg)[0]]
        # A brand's whole domain before the real one: paypal.com.evil.net, secure-paypal.com.x.net
        for i in range(len(labels) - 1):
            head = re.split(r"[-_]", labels[i])[-1]
            for width in (2, 3):
                if i + width > len(labels):
                    break
                tail = labels[i + 1 : i + width]
                tail[-1] = re.split(r"[-_]", tail[-1])[0]
                candidate = ".".join([head, *tail])
                if candidate in self._brand_domains:
                    return [(_found("reputation.brand_domain_in_subdomain", brand_domain=candidate, domain=reg),
                             candidate)]
        words = [w for w in re.split(r"[-_.]", subdomain) if w]
        found = sorted(set(words) & self._embeddable)
        if not found and len(self._automaton):
            for word in words:  # wwwbankofamerica, paypalsecure
                for end, brand_label in self._automaton.iter(word):
                    if end == len(word) - 1 or end + 1 == len(brand_label):
                        found.append(brand_label)
                        break
        if found:
            brand = self._by_label[found[0]]
            return [(_found("reputation.brand_in_subdomain", variant=_grade(credential_words), brand=brand.primary,
                            domain=reg), brand.label)]
        return []


def _found(finding_id: str, variant: str = "", **values: Any) -> Finding:
    return catalogue().finding(finding_id, variant=variant, **values)


def _grade(credential_words: bool) -> str:
    """Look-alikes weigh more on an address that also asks for sign-in."""
    return "credentials" if credential_words else "plain"


def _list_indicator(finding_id: str, hit: ListHit, matched: str, location: str, variant: str = "",
                    **values: object) -> Indicator:
    """A list hit; a block takes the list's classification (malware, phishing ...)."""
    finding = _found(finding_id, variant, where=hit.where, **values)
    indicator = finding.with_evidence([Evidence(snippet(matched, 0, len(matched)), location)]).indicator()
    if finding.spec.strength is Strength.DECISIVE:
        indicator = replace(indicator, classification=hit.classification)
    return indicator


def _host_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    for ch in "/?#":
        rest = rest.split(ch, 1)[0]
    return rest.rpartition("@")[2].split(":", 1)[0].lower()


def _is_ip(host: str) -> bool:
    return ":" in host or host.replace(".", "").isdigit()
