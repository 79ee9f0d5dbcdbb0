"""The combination rule, overrides and (de)serialisation of verdicts."""

from __future__ import annotations

import pytest

from malwaresnipper.engine import EngineConfig, LayerResult, Severity, ThreatLevel, Verdict
from malwaresnipper.engine.verdict import build_verdict, combine_scores, level_for
from helpers.verdicts import ind, result, verdict_for



def test_noisy_or_accumulates_and_ignores_silent_layers() -> None:
    config = EngineConfig()
    assert combine_scores([result("url", 0), result("dom", 0)], config) == 0
    one = combine_scores([result("url", 50)], config)
    two = combine_scores([result("url", 50), result("dom", 50)], config)
    assert one == pytest.approx(50.0)
    assert two == pytest.approx(75.0)
    assert combine_scores([result("url", 50, confidence=0.0)], config) == 0


def test_weights_make_a_layer_count_more() -> None:
    config = EngineConfig()
    assert combine_scores([result("javascript", 50)], config) > combine_scores([result("url", 50)], config)


def test_levels_follow_thresholds() -> None:
    config = EngineConfig()
    assert level_for(39.99, config) is ThreatLevel.BENIGN
    assert level_for(40, config) is ThreatLevel.SUSPICIOUS
    assert level_for(70, config) is ThreatLevel.MALICIOUS


def test_critical_indicator_forces_malicious() -> None:
    v = verdict_for(result("reputation", 5, ind("reputation.blocklisted_domain", Severity.CRITICAL, "malware")))
    assert v.threat_level is ThreatLevel.MALICIOUS
    assert v.risk_score >= 70
    assert v.classification == "malware"


def test_allowlisted_site_is_benign_with_a_reason() -> None:
    allow = ind("reputation.allowlisted_domain", Severity.INFO)
    v = verdict_for(result("reputation", 0, allow, allowlisted=True), result("javascript", 99, ind("javascript.eval", Severity.HIGH)))
    assert v.threat_level is ThreatLevel.BENIGN and v.risk_score == 0
    assert v.indicators[0].id == "reputation.allowlisted_domain"


def test_indicators_sorted_by_severity_and_classification_voted() -> None:
    v = verdict_for(
        result("url", 60, ind("url.ip_host", Severity.LOW, "phishing")),
        result("javascript", 80, ind("javascript.cryptominer", Severity.HIGH, "cryptominer")),
    )
    assert [i.severity for i in v.indicators] == [Severity.HIGH, Severity.LOW]
    assert v.classification == "cryptominer"


def test_verdict_round_trips_through_dict() -> None:
    v = verdict_for(result("url", 60, ind("url.ip_host", Severity.MEDIUM, "phishing")))
    again = Verdict.from_dict(v.to_dict())
    assert again.to_dict() == v.to_dict()


def incomplete_verdict(*results: LayerResult, reasons: tuple[str, ...]) -> Verdict:
    return build_verdict(url="https://a.test/", results=list(results), extra_indicators=[], config=EngineConfig(),
                         duration_ms=1.0, engine_version="t", model_versions={}, source="proxy", scripts=(),
                         scanned_chars=0, truncated=True, incomplete=reasons)


def test_an_incomplete_scan_is_never_benign_and_says_why() -> None:
    v = incomplete_verdict(result("url", 0), reasons=("cut: page HTML of 9000000 characters ...",))
    assert v.threat_level is ThreatLevel.SUSPICIOUS
    assert v.risk_score == EngineConfig().thresholds.suspicious
    assert not v.complete and v.incomplete_reasons == ("cut: page HTML of 9000000 characters ...",)
    top = v.indicators[0]
    assert top.id == "engine.incomplete" and top.severity is Severity.MEDIUM
    assert "not rated safe" in top.title and top.evidence[0].snippet.startswith("cut: page HTML")
    assert v.classification == "incomplete"


def test_a_malicious_finding_on_the_scanned_part_stays_malicious() -> None:
    v = incomplete_verdict(result("signatures", 95, ind("signatures.wsh_dropper", Severity.HIGH, "malware", "behaviour")),
                           reasons=("the 1000 ms time budget ran out: ml did not run",))
    assert v.threat_level is ThreatLevel.MALICIOUS and v.classification == "malware"
    assert not v.complete


def test_the_allowlist_still_wins_over_incompleteness() -> None:
    allow = ind("reputation.allowlisted_domain", Severity.INFO)
    v = incomplete_verdict(result("reputation", 0, allow, allowlisted=True), reasons=("cut: x",))
    assert v.threat_level is ThreatLevel.BENIGN and not v.complete


def test_complete_verdicts_are_unchanged_by_the_policy() -> None:
    v = verdict_for(result("url", 10))
    assert v.complete and v.incomplete_reasons == () and v.threat_level is ThreatLevel.BENIGN
    assert not any(i.id == "engine.incomplete" for i in v.indicators)


def test_incompleteness_round_trips_and_old_records_still_load() -> None:
    v = incomplete_verdict(result("url", 0), reasons=("cut: a", "the dom layer failed: boom"))
    data = v.to_dict()
    assert data["complete"] is False and data["incomplete_reasons"] == ["cut: a", "the dom layer failed: boom"]
    assert Verdict.from_dict(data).to_dict() == data
    # records stored before the fields existed: the old indicators and flag say the same
    old = verdict_for(result("url", 10)).to_dict()
    del old["complete"], old["incomplete_reasons"]
    assert Verdict.from_dict(old).complete is True
    old_cut = dict(old, truncated=True)
    assert Verdict.from_dict(old_cut).complete is False
    budget = {"id": "engine.time_budget", "title": "The scan ran out of its 1000 ms budget; some layers did not run",
              "severity": "INFO", "layer": "engine", "category": "engine", "classification": None,
              "evidence": [{"snippet": "skipped: ml", "location": "engine", "offset": None}]}
    old_budget = dict(old, indicators=[budget])
    restored = Verdict.from_dict(old_budget)
    assert restored.complete is False and "budget" in restored.incomplete_reasons[0]
    assert restored.threat_level is ThreatLevel.BENIGN  # what was stored is shown as stored


def test_one_layer_alone_never_makes_malicious() -> None:
    """Corroboration: the JS model at its MALICIOUS point (or a layer of generic obfuscation
    traits) is what flagged real libraries nobody trained on; alone it stays SUSPICIOUS, ranked,
    and says why."""
    alone = verdict_for(result("ml", 99.9, ind("ml.js_model", Severity.HIGH, "malware")))
    assert alone.threat_level is ThreatLevel.SUSPICIOUS and 40 <= alone.risk_score < 70
    assert "engine.uncorroborated" in {i.id for i in alone.indicators}
    weaker = verdict_for(result("ml", 95, ind("ml.js_model", Severity.HIGH, "malware")))
    assert weaker.risk_score < alone.risk_score  # the order among capped verdicts is kept
    traits = verdict_for(result("javascript", 95, ind("javascript.eval_decoded", Severity.HIGH, "obfuscated")))
    assert traits.threat_level is ThreatLevel.SUSPICIOUS
    # a second layer that found little (under 20 points) confirms nothing
    faint = verdict_for(result("ml", 99.9, ind("ml.js_model", Severity.HIGH)), result("url", 10, ind("url.long_url", Severity.LOW)))
    assert faint.threat_level is ThreatLevel.SUSPICIOUS


def test_two_layers_that_each_found_something_corroborate() -> None:
    v = verdict_for(result("ml", 95, ind("ml.page_model", Severity.HIGH, "phishing")),
                    result("dom", 35, ind("dom.form_action_external", Severity.MEDIUM, "phishing")))
    assert v.threat_level is ThreatLevel.MALICIOUS and "engine.uncorroborated" not in {i.id for i in v.indicators}


def test_a_behaviour_finding_corroborates() -> None:
    model = result("ml", 99, ind("ml.js_model", Severity.HIGH, "malware"))
    dropper = result("javascript", 85, ind("javascript.wsh_dropper", Severity.HIGH, "dropper"))
    v = verdict_for(model, dropper)
    assert v.threat_level is ThreatLevel.MALICIOUS and v.risk_score >= 70
    assert "engine.uncorroborated" not in {i.id for i in v.indicators}
    alone = verdict_for(dropper)  # a behaviour measured rare on benign code needs no second opinion
    assert alone.threat_level is ThreatLevel.MALICIOUS


def test_suspicious_verdicts_are_left_as_they_are_below_the_band() -> None:
    low = verdict_for(result("url", 20, ind("url.long_url", Severity.LOW)))
    assert low.threat_level is ThreatLevel.BENIGN and low.risk_score == pytest.approx(100 * (1 - (1 - 0.2) ** 1.0))
