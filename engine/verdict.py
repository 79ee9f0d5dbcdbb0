"""Layer results in, one explained verdict out.

The combination rule
--------------------
Each enabled layer *i* returns a score ``s_i`` in [0, 100] and a confidence ``c_i`` in [0, 1]
(how much it could see), and has a configured weight ``w_i``. The risk score is a weighted
noisy-OR::

    risk = 100 * (1 - prod_i (1 - s_i / 100) ** (w_i * c_i))

so independent evidence accumulates (two layers at 50 with weight 1 give 75), one confident layer
can carry a verdict on its own (a layer at 90 with weight 1.5 gives 97), and a layer that saw
nothing (score 0 or confidence 0) changes nothing. The result is a float, fine-grained enough to
rank samples and draw ROC curves.

Overrides, applied after the formula:

* an allowlisted site is BENIGN with risk 0 and an indicator saying which list matched;
* a decisive indicator (a blocklist hit, a critical signature) forces MALICIOUS: the risk is
  raised to at least the MALICIOUS threshold;
* corroboration: MALICIOUS needs a ``decisive`` or ``behaviour`` finding among the reasons
  (``engine/findings.py``), or two independent layers that each found something
  (:data:`CORROBORATING_SCORE` points or more). One layer alone, made of traits that benign code
  shares or of a model's opinion, however strong, is capped at SUSPICIOUS: its risk is mapped
  onto the SUSPICIOUS band (``[suspicious, malicious)``, order kept, so curves still rank it)
  and an ``engine.uncorroborated`` indicator says why. Measured on code nobody trained on, a
  single model or generic obfuscation trait at its MALICIOUS point replaced real sites' scripts
  (models/README.md has the cross-validated figures of this rule).

The threat level follows the configured thresholds: ``risk >= malicious`` is MALICIOUS,
``risk >= suspicious`` is SUSPICIOUS, anything lower is BENIGN.

Incomplete scans
----------------
A scan that did not see everything (part of the content cut to fit the limits, layers skipped by
the time budget, a layer that failed) says so: ``complete`` is false, ``incomplete_reasons`` lists
what was missed, an ``engine.incomplete`` indicator explains it to the user, and the level is never
BENIGN: at least SUSPICIOUS (risk raised to the SUSPICIOUS threshold), while a MALICIOUS finding
on the part that was scanned stays MALICIOUS. Only the allowlist override (the user's own
decision) still makes such a verdict BENIGN. An attacker must never gain anything by making a
page too big or too slow to scan, so this is decided here, for every path, and nowhere else.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .config import EngineConfig
from .findings import Strength, catalogue
from .results import MAX_SNIPPET, Evidence, Indicator, LayerResult, Severity

_STRENGTHS = frozenset(s.value for s in Strength)


class ThreatLevel(str, Enum):
    BENIGN = "BENIGN"
    SUSPICIOUS = "SUSPICIOUS"
    MALICIOUS = "MALICIOUS"


@dataclass(frozen=True)
class Verdict:
    """The engine's answer for one capture: score, level, why, and how it was computed."""

    url: str
    risk_score: float
    threat_level: ThreatLevel
    classification: str
    indicators: tuple[Indicator, ...]
    layers: tuple[LayerResult, ...]
    duration_ms: float
    engine_version: str
    model_versions: dict[str, str] = field(default_factory=dict)
    source: str = "proxy"
    scripts: tuple[dict[str, Any], ...] = ()
    scanned_chars: int = 0
    truncated: bool = False
    #: False when part of the content or some layers were not analysed (see the module docstring).
    complete: bool = True
    incomplete_reasons: tuple[str, ...] = ()

    @property
    def is_malicious(self) -> bool:
        return self.threat_level is ThreatLevel.MALICIOUS

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "risk_score": round(self.risk_score, 4),
            "threat_level": self.threat_level.value,
            "classification": self.classification,
            "indicators": [i.to_dict() for i in self.indicators],
            "layers": {r.layer: r.to_dict() for r in self.layers},
            "duration_ms": round(self.duration_ms, 3),
            "engine_version": self.engine_version,
            "model_versions": dict(self.model_versions),
            "source": self.source,
            "scripts": [dict(s) for s in self.scripts],
            "scanned_chars": self.scanned_chars,
            "truncated": self.truncated,
            "complete": self.complete,
            "incomplete_reasons": list(self.incomplete_reasons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        layers = data.get("layers") or {}
        layer_items = layers.values() if isinstance(layers, dict) else layers
        indicators = tuple(Indicator.from_dict(i) for i in data.get("indicators", ()))
        truncated = bool(data.get("truncated", False))
        if "complete" in data:
            complete = bool(data["complete"])
            reasons = tuple(str(r) for r in data.get("incomplete_reasons") or ())
        else:  # stored before these fields existed: the old indicators say the same
            reasons = _legacy_incomplete_reasons(indicators, truncated)
            complete = not reasons
        return cls(
            url=data["url"],
            risk_score=float(data["risk_score"]),
            threat_level=ThreatLevel(data["threat_level"]),
            classification=data.get("classification", "unknown"),
            indicators=indicators,
            layers=tuple(LayerResult.from_dict(r) for r in layer_items),
            duration_ms=float(data.get("duration_ms", 0.0)),
            engine_version=data.get("engine_version", ""),
            model_versions=dict(data.get("model_versions") or {}),
            source=data.get("source", "proxy"),
            scripts=tuple(data.get("scripts") or ()),
            scanned_chars=int(data.get("scanned_chars", 0)),
            truncated=truncated,
            complete=complete,
            incomplete_reasons=reasons,
        )


#: Indicators that meant "not everything was analysed" before ``complete`` was recorded.
_LEGACY_INCOMPLETE_IDS = ("engine.truncated", "engine.time_budget", "engine.layer_error")


def _legacy_incomplete_reasons(indicators: tuple[Indicator, ...], truncated: bool) -> tuple[str, ...]:
    reasons = [i.title for i in indicators if i.id in _LEGACY_INCOMPLETE_IDS]
    if truncated and not any(i.id == "engine.truncated" for i in indicators):
        reasons.append("part of the content was cut")
    return tuple(reasons)


def combine_scores(results: list[LayerResult] | tuple[LayerResult, ...], config: EngineConfig) -> float:
    """The weighted noisy-OR of the module docstring, in [0, 100]."""
    log_keep = 0.0
    for result in results:
        p = min(result.score / 100.0, 0.999999)
        exponent = config.weight(result.layer) * result.confidence
        if p > 0 and exponent > 0:
            log_keep += exponent * math.log1p(-p)
    return 100.0 * (1.0 - math.exp(log_keep))


def level_for(score: float, config: EngineConfig) -> ThreatLevel:
    if score >= config.thresholds.malicious:
        return ThreatLevel.MALICIOUS
    if score >= config.thresholds.suspicious:
        return ThreatLevel.SUSPICIOUS
    return ThreatLevel.BENIGN


def sort_indicators(indicators: list[Indicator]) -> tuple[Indicator, ...]:
    """Most severe first; ties keep the engine's layer order."""
    return tuple(sorted(indicators, key=lambda i: -int(i.severity)))


def classify(indicators: tuple[Indicator, ...], level: ThreatLevel) -> str:
    """What the page is, from the indicators that say so, weighted by severity."""
    if level is ThreatLevel.BENIGN:
        return "benign"
    votes: Counter[str] = Counter()
    for ind in indicators:
        if ind.classification:
            votes[ind.classification] += 1 + int(ind.severity) ** 2
    return votes.most_common(1)[0][0] if votes else "unknown"


def build_verdict(
    *,
    url: str,
    results: list[LayerResult],
    extra_indicators: list[Indicator],
    config: EngineConfig,
    duration_ms: float,
    engine_version: str,
    model_versions: dict[str, str],
    source: str,
    scripts: tuple[dict[str, Any], ...],
    scanned_chars: int,
    truncated: bool,
    incomplete: Sequence[str] = (),
) -> Verdict:
    """Apply the combination rule and the overrides (see the module docstring).

    ``incomplete`` says what this scan did not analyse (cut content, skipped or failed layers);
    any entry makes the verdict incomplete, and an incomplete verdict is never BENIGN.
    """
    reasons = tuple(dict.fromkeys(r for r in incomplete if r))  # unique, in order
    indicators = [i for r in results for i in r.indicators] + list(extra_indicators)
    if reasons:
        indicators.append(incomplete_indicator(reasons))
    allowlisted = any(r.details.get("allowlisted") for r in results)
    if allowlisted:
        score = 0.0
        level = ThreatLevel.BENIGN
        indicators = [i for i in indicators if i.id.startswith("reputation.allow")] + [
            i for i in indicators if i.severity is Severity.INFO and not i.id.startswith("reputation.allow")
        ]
    else:
        score = combine_scores(results, config)
        if any(i.strength == Strength.DECISIVE.value for i in indicators):
            score = max(score, config.thresholds.malicious)
        elif score >= config.thresholds.suspicious and not _corroborated(indicators, results):
            score = _suspicious_band(score, config)
            if level_for(combine_scores(results, config), config) is ThreatLevel.MALICIOUS:
                indicators.append(uncorroborated_indicator(results))
        if reasons:
            score = max(score, config.thresholds.suspicious)
        level = level_for(score, config)
    ordered = sort_indicators(indicators)
    return Verdict(
        url=url,
        risk_score=score,
        threat_level=level,
        classification=classify(ordered, level),
        indicators=ordered,
        layers=tuple(results),
        duration_ms=duration_ms,
        engine_version=engine_version,
        model_versions=model_versions,
        source=source,
        scripts=scripts,
        scanned_chars=scanned_chars,
        truncated=truncated,
        complete=not reasons,
        incomplete_reasons=reasons,
    )


def incomplete_indicator(reasons: Sequence[str]) -> Indicator:
    """What a user reads when a scan could not look at everything."""
    evidence = [Evidence(snippet=r[:MAX_SNIPPET], location="engine") for r in reasons[:5]]
    return catalogue().finding("engine.incomplete", *evidence).indicator()


#: A layer "found something" toward corroboration at this score or more (a trait of 20 points,
#: a model at its 5 %-FPR point and above).
CORROBORATING_SCORE = 20.0


def _corroborated(indicators: Sequence[Indicator], results: Sequence[LayerResult]) -> bool:
    """A decisive or behaviour finding, or two layers that each found something."""
    if any(Strength(i.strength).corroborates for i in indicators if i.strength in _STRENGTHS):
        return True
    return len(_finding_layers(results)) >= 2


def _finding_layers(results: Sequence[LayerResult]) -> list[str]:
    return [r.layer for r in results if r.score >= CORROBORATING_SCORE and r.confidence > 0]


def _suspicious_band(score: float, config: EngineConfig) -> float:
    """Map an uncorroborated risk in [suspicious, 100] onto [suspicious, malicious): monotonic,
    so uncorroborated samples keep their order among themselves."""
    low, high = config.thresholds.suspicious, config.thresholds.malicious
    if high <= low or score < low:
        return score
    return low + (min(score, 100.0) - low) * (high - low) / max(1e-9, 100.0 - low) * 0.999


def uncorroborated_indicator(results: Sequence[LayerResult]) -> Indicator:
    """Why a verdict that scored MALICIOUS is reported as SUSPICIOUS."""
    layers = _finding_layers(results) or [max(results, key=lambda r: r.score).layer]
    shown = [i for r in results if r.layer in layers for i in r.indicators if i.severity >= Severity.LOW][:5]
    evidence = [Evidence(snippet=i.title[:MAX_SNIPPET], location=i.layer) for i in shown]
    return catalogue().finding("engine.uncorroborated", *evidence, layer=" and ".join(layers)).indicator()


# -- a page's verdict with its scripts' ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptVerdict:
    """A MALICIOUS verdict of one external script a page loads (its own scan)."""

    url: str
    sha256: str = ""
    scan_id: str | None = None
    classification: str = "unknown"
    #: the script verdict's first reason, shown as evidence on the page
    headline: str = ""


def with_malicious_scripts(verdict: Verdict, scripts: Sequence[ScriptVerdict], *,
                           suspicious: float) -> Verdict:
    """``verdict`` (a page's) with the MALICIOUS verdicts of scripts it loads folded in.

    Each script adds one ``engine.malicious_script`` indicator naming its URL and sha256 (a
    script already named is not added twice), and the page is at least SUSPICIOUS (risk raised to
    ``suspicious``). Not MALICIOUS: the script is decisive about itself, not about the page, and
    the gateway replaces it with an inert script wherever it serves it, so the page is served the
    same way whether or not the script's verdict was known when the page arrived (blocking the
    page only once the script is known gave one page two experiences). An allowlisted page (the
    user's decision) stays as it is.
    """
    if any(i.id.startswith("reputation.allow") for i in verdict.indicators):
        return verdict
    named = {e.snippet for i in verdict.indicators if i.id == "engine.malicious_script" for e in i.evidence}
    added: list[Indicator] = []
    for script in scripts:
        label = script.url[:MAX_SNIPPET]
        if label in named:
            continue
        named.add(label)
        evidence = [Evidence(snippet=label, location="script url")]
        if script.sha256:
            evidence.append(Evidence(snippet=f"sha256 {script.sha256}"[:MAX_SNIPPET], location="script sha256"))
        if script.scan_id:
            evidence.append(Evidence(snippet=f"scan {script.scan_id}"[:MAX_SNIPPET], location="script scan"))
        if script.headline:
            evidence.append(Evidence(snippet=script.headline[:MAX_SNIPPET], location=f"script {label}"))
        indicator = catalogue().finding("engine.malicious_script", *evidence, script=label).indicator()
        if script.classification and script.classification not in ("unknown", "benign"):
            indicator = replace(indicator, classification=script.classification)
        added.append(indicator)
    if not added:
        return verdict
    score = max(verdict.risk_score, suspicious)
    level = verdict.threat_level if verdict.threat_level is not ThreatLevel.BENIGN else ThreatLevel.SUSPICIOUS
    indicators = sort_indicators([*verdict.indicators, *added])
    return replace(verdict, risk_score=score, threat_level=level, indicators=indicators,
                   classification=classify(indicators, level))
