"""Layer results, indicators and verdicts built by hand for the verdict tests."""

from __future__ import annotations

from malwaresnipper.engine import EngineConfig, Evidence, Indicator, LayerResult, Severity, Verdict
from malwaresnipper.engine.findings import catalogue
from malwaresnipper.engine.verdict import build_verdict


def result(layer: str, score: float, *indicators: Indicator, confidence: float = 1.0, **details: object) -> LayerResult:
    return LayerResult(layer=layer, score=score, indicators=indicators, confidence=confidence, details=dict(details))


def ind(id_: str, severity: Severity, classification: str | None = None, strength: str | None = None) -> Indicator:
    """An indicator as its layer would report it: its strength from the catalogue when listed."""
    if strength is None:
        strength = catalogue().spec(id_).strength.value if id_ in catalogue() else "trait"
    return Indicator(id=id_, title=id_, severity=severity, layer=id_.split(".")[0],
                     evidence=(Evidence("x", "url"),), classification=classification, strength=strength)


def verdict_for(*results: LayerResult) -> Verdict:
    return build_verdict(url="https://a.test/", results=list(results), extra_indicators=[], config=EngineConfig(),
                         duration_ms=1.0, engine_version="t", model_versions={}, source="proxy", scripts=(),
                         scanned_chars=0, truncated=False)
