"""The signatures layer: user-editable rules matched against the URL, the HTML and scripts.

Two rule languages, both loaded and compiled once, when the layer is built (in each worker):
the project's TOML rules (:mod:`..rules` explains the format and the matchers) and YARA rules
through YARA-X (:mod:`..yara_rules`, ``[engine.signatures] yara_files``). A broken rule file of
either kind raises :class:`~malwaresnipper.engine.errors.RuleError` then, not during a scan. Per
scan, each target is scanned in one literal pass plus one regex pass, and once by YARA-X.

Scoring: each rule is a catalogue entry (``signatures.<id>``, ``signatures.yara.<namespace>.<rule>``,
see :func:`rule_spec`) whose points come from its severity (info 0, low 15, medium 35, high 65,
critical 90), combined by the one noisy-OR. No rule matched means score 0. A YARA scan that runs
out of time leaves that text unscanned by YARA: the layer reports it as an error, so the verdict
is incomplete (never BENIGN), and keeps every match it did find.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import RuleError
from ..findings import FindingSpec, Strength, catalogue, combine
from ..results import Evidence, LayerResult, Severity, snippet
from ..features.javascript import on_clear_cache
from ..rules import DEFAULT_RULES_FILE, Rule, RuleHit, RuleSet, load_rule_files
from ..yara_rules import (
    SCAN_ERRORS,
    YARA_X_VERSION,
    YaraRule,
    YaraRuleSet,
    YaraScanner,
    load_yara_rules,
)

if TYPE_CHECKING:
    from ..capture import Capture
    from ..config import EngineConfig
    from ..features import Features

SEVERITY_WEIGHT = {
    Severity.INFO: 0.0,
    Severity.LOW: 0.15,
    Severity.MEDIUM: 0.35,
    Severity.HIGH: 0.65,
    Severity.CRITICAL: 0.9,
}
#: Places shown as evidence per rule (a rule matching 80 scripts needs only a few shown).
MAX_EVIDENCE = 3
#: Matched strings shown per place for a YARA rule (its fields, its encoder and its sender ...).
MAX_STRINGS_SHOWN = 3
#: External script and iframe URLs scanned with the ``url`` target, per page.
MAX_EXTRA_URLS = 200


class ScriptHitCache:
    """Per-process LRU of the TOML rules' hits on a script, keyed by rule set and the text itself.

    A gateway sees the same library files on page after page: their rule scan (a literal pass and
    a regex pass over the whole text) then costs one lookup. Keys hold the text, not a hash of it
    (no collision can hand one script another's hits), and name the rule set by a serial number
    given when a layer compiles its rules (new rules, new serial); texts are bounded in
    characters. Only TOML hits: a YARA rule may read the page URL. Emptied by
    ``features.javascript.clear_cache()`` with the other per-script caches (cold scans stay cold).
    """

    MIN_CHARS = 512  # shorter scripts are cheap to scan again
    MAX_CHARS = 8_000_000

    def __init__(self) -> None:
        self._hits: OrderedDict[tuple[int, str], tuple[RuleHit, ...]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, ruleset: int, text: str) -> tuple[RuleHit, ...] | None:
        if len(text) < self.MIN_CHARS:
            return None
        with self._lock:
            hits = self._hits.get((ruleset, text))
            if hits is not None:
                self._hits.move_to_end((ruleset, text))
            return hits

    def put(self, ruleset: int, text: str, hits: tuple[RuleHit, ...]) -> None:
        if not self.MIN_CHARS <= len(text) <= self.MAX_CHARS // 4:
            return
        with self._lock:
            if (ruleset, text) in self._hits:
                return
            self._hits[(ruleset, text)] = hits
            self._chars += len(text)
            while self._chars > self.MAX_CHARS and self._hits:
                (_, old), _ = self._hits.popitem(last=False)
                self._chars -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()
            self._chars = 0


SCRIPT_HITS = ScriptHitCache()
on_clear_cache(SCRIPT_HITS.clear)
_RULESET_SERIALS = itertools.count(1)


def rule_spec(rule: Rule | YaraRule) -> FindingSpec:
    """A rule as a catalogue entry: its description is the title, its severity sets its points."""
    if isinstance(rule, YaraRule):
        doc = f"YARA rule {rule.namespace}.{rule.identifier} ({rule.source}): matches {', '.join(rule.targets)}."
    else:
        doc = f"Signature rule {rule.id} ({_rule_file_name(rule)}): matches {', '.join(rule.targets)}."
    return FindingSpec(
        id=f"signatures.{rule.id}", layer="signatures", title=rule.description.replace("{", "{{").replace("}", "}}"),
        severity=rule.severity, points=100.0 * SEVERITY_WEIGHT[rule.severity], category=rule.category,
        classification=rule.classification, strength=Strength(rule.strength), doc=doc,
    )


def _rule_file_name(rule: Rule) -> str:
    """Where a rule comes from, the same on every machine for the bundled rules (the catalogue page is generated)."""
    if not rule.source or Path(rule.source) == DEFAULT_RULES_FILE:
        return "bundled default rules"
    return rule.source


class SignaturesLayer:
    """Matches the loaded rule set against one capture."""

    name: ClassVar[str] = "signatures"
    version: ClassVar[str] = "1"

    def __init__(self, config: EngineConfig, *, use_re2: bool | None = None) -> None:
        settings = config.signatures
        paths = [config.resolve(p) for p in settings.rule_files]
        self.rules = load_rule_files(paths, include_default=settings.include_default_rules)
        self.ruleset = RuleSet(self.rules, use_re2=use_re2)
        #: names this compiled rule set in :data:`SCRIPT_HITS`
        self.ruleset_serial = next(_RULESET_SERIALS)
        yara_paths = [config.resolve(p) for p in settings.yara_files]
        self.yara: YaraRuleSet | None = load_yara_rules(yara_paths) if yara_paths else None
        self.yara_rules: list[YaraRule] = self.yara.rules if self.yara is not None else []
        _check_unique_ids(self.rules, self.yara_rules)
        #: each rule is a catalogue entry of its own (signatures.<id>)
        every_rule: list[Rule | YaraRule] = [*self.rules, *self.yara_rules]
        self.catalogue = catalogue().extended(rule_spec(rule) for rule in every_rule)
        #: one text's YARA scan may take at least the engine's whole time budget (see YaraScanner)
        self.yara_timeout_s = math.ceil(config.limits.time_budget_ms / 1000) + 1

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        started = time.perf_counter()
        #: finding id -> evidence, in the order rules first matched
        matched: dict[str, list[Evidence]] = {}
        not_scanned: list[str] = []
        scanned = 0
        yara = self.yara.scanner(capture.page_url or capture.url, timeout_s=self.yara_timeout_s) if self.yara else None

        def scan(target: str, text: str, location: str) -> None:
            for hit in self._rule_hits(target, text):
                evidence = matched.setdefault(f"signatures.{hit.rule.id}", [])
                if len(evidence) < MAX_EVIDENCE:
                    _, start, end = hit.spans[0]
                    evidence.append(Evidence(snippet(text, start, end), location, start))
            if yara is not None:
                self._scan_yara(yara, target, text, location, matched, not_scanned)

        for location, url in self._urls(capture, features):
            scan("url", url, location)
            scanned += len(url)
        if capture.html:
            scan("html", capture.html, "html")
            scanned += len(capture.html)
        for view in features.scripts:
            scan("script", view.text, view.location)
            scanned += len(view.text)

        findings = [self.catalogue.finding(finding_id, *evidence) for finding_id, evidence in matched.items()]
        indicators = [finding.indicator() for finding in findings]
        indicators.sort(key=lambda i: (-i.severity, i.id))
        details: dict[str, object] = {
            "rules": len(self.rules) + len(self.yara_rules),
            "matched_rules": len(indicators),
            "scanned_chars": scanned,
            "regex_engine": self.ruleset.engine,
        }
        if self.yara is not None:
            details.update(yara_rules=len(self.yara_rules), yara_engine=f"yara-x {YARA_X_VERSION}")
        return LayerResult(
            layer=self.name,
            score=combine(f.points for f in findings),
            indicators=tuple(indicators),
            confidence=1.0,
            duration_ms=(time.perf_counter() - started) * 1000,
            details=details,
            error=_not_scanned_summary(not_scanned),
        )

    def _rule_hits(self, target: str, text: str) -> tuple[RuleHit, ...]:
        """The TOML rules' hits on ``text``; a script's through :data:`SCRIPT_HITS`."""
        if target != "script":
            return tuple(self.ruleset.scan(target, text))
        hits = SCRIPT_HITS.get(self.ruleset_serial, text)
        if hits is None:
            hits = tuple(self.ruleset.scan(target, text))
            SCRIPT_HITS.put(self.ruleset_serial, text, hits)
        return hits

    @staticmethod
    def _scan_yara(yara: YaraScanner, target: str, text: str, location: str, matched: dict[str, list[Evidence]],
                   not_scanned: list[str]) -> None:
        """Run the YARA rules on one text; evidence is each matched pattern's first match.

        After a scan that could not finish, the capture's other texts are not given to YARA-X
        (a rule slow on this page is slow on all of it: one timeout per capture, not one per
        script); each is listed as not scanned."""
        if not_scanned:
            not_scanned.append(f"YARA rules not run on {location}")
            return
        try:
            hits = yara.scan(target, text)
        except SCAN_ERRORS as exc:
            not_scanned.append(f"YARA rules did not finish on {location} ({type(exc).__name__}: {exc})")
            return
        for hit in hits:
            evidence = matched.setdefault(f"signatures.{hit.rule.id}", [])
            if len({e.location for e in evidence}) >= MAX_EVIDENCE:
                continue
            if not hit.spans:  # matched on its condition alone (the url variable, filesize): show the text
                evidence.append(Evidence(f"(condition): {snippet(text, 0, min(len(text), 80), escape=True)}", location))
                continue
            for identifier, start, end in _shown_strings(hit.spans):
                evidence.append(Evidence(f"{identifier}: {snippet(text, start, end, escape=True)}", location, start))

    @staticmethod
    def _urls(capture: Capture, features: Features) -> list[tuple[str, str]]:
        """The page URL, then each external script's and iframe's URL (deduplicated)."""
        urls: dict[str, str] = {capture.url: "url"}
        if capture.page_url:
            urls.setdefault(capture.page_url, "page url")
        for script in capture.scripts:
            if script.url:
                urls.setdefault(script.url, f"script {script.url}")
        page = features.page
        if page is not None:
            for src in page.external_scripts:
                urls.setdefault(src, f"script {src}")
        dom = features.dom
        if dom is not None:
            for index, iframe in enumerate(dom.iframes):
                if iframe.src:
                    urls.setdefault(iframe.src, f"iframe #{index + 1}")
        return [(location, url) for url, location in list(urls.items())[: MAX_EXTRA_URLS + 1]]


def check_signature_rules(config: EngineConfig) -> None:
    """Load and compile the configured rule files (TOML and YARA) once, or raise RuleError.

    The scan workers build the layer themselves; a gateway calls this before starting them, so
    that a broken rule file stops start-up with its file and line instead of leaving workers that
    can never start."""
    if "signatures" in config.layers.enabled:
        SignaturesLayer(config)


def _check_unique_ids(rules: list[Rule], yara_rules: list[YaraRule]) -> None:
    """A TOML rule may not take a YARA rule's finding id (a TOML id such as ``yara.x.y``)."""
    toml_ids = {rule.id: rule.source for rule in rules}
    for rule in yara_rules:
        if rule.id in toml_ids:
            raise RuleError(f"{toml_ids[rule.id]}: rule '{rule.id}': the id of YARA rule "
                            f"{rule.namespace}.{rule.identifier} in {rule.source}; rename the TOML rule")


def _shown_strings(spans: tuple[tuple[str, int, int], ...]) -> list[tuple[str, int, int]]:
    """Up to :data:`MAX_STRINGS_SHOWN` matched strings of one rule in one place, from different
    families first (``$field_number`` and ``$field_cvv`` are one family, ``$send_image`` another;
    ``$s1`` and ``$s2`` one), so the evidence shows what the rule needed rather than three
    spellings of one thing; in the order they occur."""
    chosen: list[tuple[str, int, int]] = []
    families: set[str] = set()
    for span in spans:
        family = re.sub(r"(_[^_]*|\d+)$", "", span[0])
        if family not in families:
            families.add(family)
            chosen.append(span)
    chosen += [span for span in spans if span not in chosen]
    return sorted(chosen[:MAX_STRINGS_SHOWN], key=lambda span: span[1])


def _not_scanned_summary(not_scanned: list[str]) -> str | None:
    """The layer's error when YARA-X did not scan everything: the first failure and a count."""
    if not not_scanned:
        return None
    skipped = len(not_scanned) - 1
    return not_scanned[0] + (f"; not run on {skipped} more text(s) of this capture" if skipped else "")
