"""A page's verdict with the MALICIOUS verdicts of the scripts it loads folded in."""

from __future__ import annotations

from malwaresnipper.engine import EngineConfig, Evidence, Indicator, Severity, ThreatLevel, Verdict
from malwaresnipper.engine.verdict import ScriptVerdict, with_malicious_scripts

from helpers.verdicts import ind, result, verdict_for

SUSPICIOUS = EngineConfig().thresholds.suspicious
SKIMMER = ScriptVerdict(url="https://cdn.evil.test/pay.js", sha256="ab" * 32, scan_id="s-1",
                        classification="skimmer", headline="Sends card fields to another site")


def test_benign_page_becomes_suspicious_naming_the_script() -> None:
    page = verdict_for(result("url", 0))
    assert page.threat_level is ThreatLevel.BENIGN
    folded = with_malicious_scripts(page, [SKIMMER], suspicious=SUSPICIOUS)
    assert folded.threat_level is ThreatLevel.SUSPICIOUS
    assert folded.risk_score >= SUSPICIOUS
    assert folded.classification == "skimmer"
    top = folded.indicators[0]
    assert top.id == "engine.malicious_script"
    assert SKIMMER.url in top.title
    snippets = [e.snippet for e in top.evidence]
    assert SKIMMER.url in snippets and f"sha256 {SKIMMER.sha256}" in snippets and "scan s-1" in snippets
    # the page's own layers are untouched: the fold adds a reason, it does not rescore them
    assert folded.layers == page.layers
    assert Verdict.from_dict(folded.to_dict()).indicators == folded.indicators


def test_fold_is_idempotent_and_never_lowers() -> None:
    page = verdict_for(result("url", 0))
    once = with_malicious_scripts(page, [SKIMMER], suspicious=SUSPICIOUS)
    twice = with_malicious_scripts(once, [SKIMMER, SKIMMER], suspicious=SUSPICIOUS)
    assert twice == once
    assert [i.id for i in twice.indicators].count("engine.malicious_script") == 1
    other = ScriptVerdict(url="https://cdn.evil.test/miner.js", classification="cryptominer")
    both = with_malicious_scripts(once, [other], suspicious=SUSPICIOUS)
    assert [i.id for i in both.indicators].count("engine.malicious_script") == 2


def test_malicious_page_stays_malicious() -> None:
    page = verdict_for(result("reputation", 100, ind("reputation.blocklisted_url", Severity.CRITICAL,
                                                     classification="phishing")))
    assert page.threat_level is ThreatLevel.MALICIOUS
    folded = with_malicious_scripts(page, [SKIMMER], suspicious=SUSPICIOUS)
    assert folded.threat_level is ThreatLevel.MALICIOUS
    assert folded.risk_score == page.risk_score


def test_nothing_to_fold_returns_the_same_verdict() -> None:
    page = verdict_for(result("url", 0))
    assert with_malicious_scripts(page, [], suspicious=SUSPICIOUS) is page


def test_allowlisted_page_stays_benign() -> None:
    allow = Indicator(id="reputation.allowlisted_domain", title="allowed", severity=Severity.INFO,
                      layer="reputation", evidence=(Evidence("a.test", "url"),), strength="decisive")
    page = verdict_for(result("reputation", 0, allow, allowlisted=True))
    folded = with_malicious_scripts(page, [SKIMMER], suspicious=SUSPICIOUS)
    assert folded.threat_level is ThreatLevel.BENIGN
