"""The signatures layer: user-editable rules (TOML) matched against the URL, the HTML and scripts.

Rules load and compile once, when the layer is built (:mod:`..rules` explains the format and the
matchers); a broken rule file raises :class:`~malwaresnipper.engine.errors.RuleError` then, not
during a scan. Per scan, each target is scanned in one literal pass plus one regex pass.

Scoring: each rule is a catalogue entry (``signatures.<id>``, see :func:`rule_spec`) whose points
come from its severity (info 0, low 15, medium 35, high 65, critical 90), combined by the one
noisy-OR. No rule matched means score 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..findings import FindingSpec, Strength, catalogue, combine
from ..results import Evidence, LayerResult, Severity, snippet
from ..rules import DEFAULT_RULES_FILE, Rule, RuleHit, RuleSet, load_rule_files

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
#: External script and iframe URLs scanned with the ``url`` target, per page.
MAX_EXTRA_URLS = 200


def rule_spec(rule: Rule) -> FindingSpec:
    """A rule as a catalogue entry: its description is the title, its severity sets its points."""
    return FindingSpec(
        id=f"signatures.{rule.id}", layer="signatures", title=rule.description.replace("{", "{{").replace("}", "}}"),
        severity=rule.severity, points=100.0 * SEVERITY_WEIGHT[rule.severity], category=rule.category,
        classification=rule.classification, strength=Strength(rule.strength),
        doc=f"Signature rule {rule.id} ({_rule_file_name(rule)}): matches {', '.join(rule.targets)}.",
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
        #: each rule is a catalogue entry of its own (signatures.<id>)
        self.catalogue = catalogue().extended(rule_spec(rule) for rule in self.rules)

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        started = time.perf_counter()
        matched: dict[str, tuple[RuleHit, list[Evidence]]] = {}
        scanned = 0

        def record(hits: list[RuleHit], text: str, location: str) -> None:
            for hit in hits:
                entry = matched.setdefault(hit.rule.id, (hit, []))
                if len(entry[1]) < MAX_EVIDENCE:
                    _, start, end = hit.spans[0]
                    entry[1].append(Evidence(snippet(text, start, end), location, start))

        for location, url in self._urls(capture, features):
            record(self.ruleset.scan("url", url), url, location)
            scanned += len(url)
        if capture.html:
            record(self.ruleset.scan("html", capture.html), capture.html, "html")
            scanned += len(capture.html)
        for view in features.scripts:
            record(self.ruleset.scan("script", view.text), view.text, view.location)
            scanned += len(view.text)

        findings = [self.catalogue.finding(f"signatures.{hit.rule.id}", *evidence) for hit, evidence in matched.values()]
        indicators = [finding.indicator() for finding in findings]
        indicators.sort(key=lambda i: (-i.severity, i.id))
        return LayerResult(
            layer=self.name,
            score=combine(f.points for f in findings),
            indicators=tuple(indicators),
            confidence=1.0,
            duration_ms=(time.perf_counter() - started) * 1000,
            details={
                "rules": len(self.rules),
                "matched_rules": len(indicators),
                "scanned_chars": scanned,
                "regex_engine": self.ruleset.engine,
            },
        )

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
