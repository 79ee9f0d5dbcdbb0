"""The ml layer: explicit "model unavailable" without models, calibrated scores with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Ml
from malwaresnipper.engine.engine import RiskEngine
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.ml import MlLayer
from malwaresnipper.engine.results import Severity
from malwaresnipper.engine.training.corpus import load_corpus
from malwaresnipper.engine.training.synthetic import write_all
from malwaresnipper.engine.training.train import train


@pytest.fixture(scope="module")
def fixture_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ml")
    data = write_all(root / "data", n=30)
    train(data, root / "models", quiet=True)
    return root / "models", data


def _analyze(layer: MlLayer, capture: Capture):
    return layer.analyze(capture, Features(capture))


def test_empty_models_dir_gives_model_unavailable(tmp_path: Path) -> None:
    layer = MlLayer(EngineConfig(ml=Ml(models_dir=str(tmp_path))))
    assert layer.model_versions == {}
    capture = Capture.build("https://example.org/", html="<html><script>var a = 1;</script></html>")
    result = _analyze(layer, capture)
    assert result.score == 0.0
    assert result.confidence == 0.0
    unavailable = [i for i in result.indicators if i.id == "ml.model_unavailable"]
    assert {i.evidence[0].location for i in unavailable} == {"URL model", "JavaScript model", "page model"}
    assert all(i.severity is Severity.INFO for i in unavailable)
    assert "model unavailable" in unavailable[0].title.lower()


def test_model_unavailable_reaches_the_verdict(tmp_path: Path) -> None:
    engine = RiskEngine(EngineConfig(ml=Ml(models_dir=str(tmp_path))), layers=["ml"])
    verdict = engine.scan(Capture.build("https://example.org/login"))
    assert any(i.id == "ml.model_unavailable" for i in verdict.indicators)
    assert verdict.risk_score == 0.0


def test_models_score_malicious_above_benign(fixture_models: tuple[Path, list[Path]]) -> None:
    models, data = fixture_models
    layer = MlLayer(EngineConfig(ml=Ml(models_dir=str(models))))
    assert set(layer.model_versions) == {"js_model", "url_model", "html_model"}
    js = load_corpus(data[0]).samples
    bad_js = next(s.text for s in js if s.y == 1)
    good_js = next(s.text for s in js if s.y == 0)

    bad = _analyze(layer, Capture.build("https://cdn.example.org/a.js", scripts=[good_js, bad_js]))
    good = _analyze(layer, Capture.build("https://cdn.example.org/a.js", scripts=[good_js]))
    assert bad.details["js_probability"] > 0.5 > good.details["js_probability"]
    assert bad.score > good.score
    ind = next(i for i in bad.indicators if i.id == "ml.js_model")
    assert "probability" in ind.evidence[0].snippet
    assert ind.evidence[0].location == "script #2 (inline)"  # the max comes from the bad script
    assert not any(i.id == "ml.js_model" for i in good.indicators)
    assert bad.confidence == 1.0

    pages = load_corpus(data[2]).samples
    phish = next(s.text for s in pages if s.y == 1)
    doc = next(s.text for s in pages if s.y == 0)
    p_phish = _analyze(layer, Capture.build("https://example.org/x", html=phish))
    p_doc = _analyze(layer, Capture.build("https://example.org/x", html=doc))
    assert p_phish.details["html_probability"] > p_doc.details["html_probability"]
    assert any(i.id == "ml.page_model" for i in p_phish.indicators)

    url_bad = _analyze(layer, Capture.build(
        "http://secure-login-mail3.verify-account-update.xyz/signin/paypal/webscr.php?cmd=3"))
    assert any(i.id == "ml.url_model" for i in url_bad.indicators)


def test_calibration_maps_onto_engine_thresholds(fixture_models: tuple[Path, list[Path]]) -> None:
    """At the model's 0.1 %-FPR point the ml layer alone makes the verdict MALICIOUS."""
    models, _ = fixture_models
    config = EngineConfig(ml=Ml(models_dir=str(models)))
    layer = MlLayer(config)
    cal = {"floor": 0.2, "suspicious": 0.5, "malicious": 0.8}
    from malwaresnipper.engine.results import LayerResult
    from malwaresnipper.engine.verdict import combine_scores, level_for

    def level(prob: float) -> str:
        score = layer._map(prob, cal)
        return level_for(combine_scores([LayerResult("ml", score)], config), config).value

    assert layer._map(0.0, cal) == 0.0
    assert 0.0 < layer._map(0.19, cal) <= 1.0  # ranks, but is no baseline
    assert layer._map(0.1, cal) < layer._map(0.19, cal)
    assert level(0.3) == "BENIGN"
    assert level(0.5) == "SUSPICIOUS"
    assert level(0.79) == "SUSPICIOUS"
    assert level(0.8) == "MALICIOUS"


def test_scripts_of_a_page_use_the_page_calibration(fixture_models: tuple[Path, list[Path]]) -> None:
    models, _ = fixture_models
    layer = MlLayer(EngineConfig(ml=Ml(models_dir=str(models))))
    bundle = layer.loaded.bundles["js"]
    # The fixture corpora include pages, so training recorded page-level operating points.
    assert {"page_floor", "page_suspicious", "page_malicious"} <= set(bundle.calibration)
    page = Capture.build("https://example.org/", html="<html><script>var a = 1;</script></html>")
    bare = Capture.build("https://example.org/a.js", scripts=["var a = 1;"])
    assert layer._calibration("js", bundle, page)["suspicious"] == bundle.calibration["page_suspicious"]
    assert layer._calibration("js", bundle, bare)["suspicious"] == bundle.calibration["suspicious"]
    assert bundle.calibration["page_suspicious"] >= bundle.calibration["suspicious"]


def test_shipped_models_leave_a_plain_page_benign() -> None:
    """No baseline: an ordinary page gets (almost) nothing from the shipped models."""
    layer = MlLayer(EngineConfig())
    if not layer.model_versions:
        pytest.fail(f"shipped models did not load: {layer.loaded.problems}")
    capture = Capture.build("https://www.wikipedia.org/", html="<html><head><title>Wikipedia</title></head>"
                            "<body><p>An encyclopedia.</p><a href='/wiki/Main_Page'>Main</a></body></html>")
    result = _analyze(layer, capture)
    assert result.score <= 1.0
    assert not [i for i in result.indicators if i.id.startswith("ml.")]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback or private address"),
        ("[::1]", "loopback or private address"),
        ("10.1.2.3", "loopback or private address"),
        ("localhost", "single-label host name"),
        ("intranet", "single-label host name"),
        ("benign.test", "special-use top-level domain"),
        ("site1.example", "special-use top-level domain"),
        ("printer.local", "special-use top-level domain"),
        ("8.8.8.8", None),
        ("smallbakery.de", None),
    ],
)
def test_url_model_is_not_asked_about_hosts_it_never_saw(host: str, reason: str | None) -> None:
    from malwaresnipper.engine.layers.ml import url_model_skip_reason

    assert url_model_skip_reason(host) == reason


def test_url_model_alone_reaches_suspicious_but_never_malicious(fixture_models: tuple[Path, list[Path]]) -> None:
    """The URL model alone flags an address at its own 1 %-FPR point (SUSPICIOUS); MALICIOUS
    needs another layer. Above the SUSPICIOUS score its scores are compressed, still in order."""
    models, _ = fixture_models
    config = EngineConfig(ml=Ml(models_dir=str(models)))
    engine = RiskEngine(config, layers=["ml"])
    layer = engine.layers[0]
    assert isinstance(layer, MlLayer)
    phishing = "http://secure-login-mail3.verify-account-update.xyz/signin/paypal/webscr.php?cmd=3"
    verdict = engine.scan(Capture.build(phishing))
    assert verdict.layers[0].details["url_probability"] > 0.99
    assert verdict.threat_level.value == "SUSPICIOUS", verdict.risk_score
    assert any(i.id == "ml.url_model" for i in verdict.indicators)
    cal = {"floor": 0.2, "suspicious": 0.5, "malicious": 0.8}
    from malwaresnipper.engine.results import LayerResult
    from malwaresnipper.engine.verdict import combine_scores, level_for

    def url_level(prob: float) -> str:
        score = layer._compress_above_suspicious(layer._map(prob, cal), layer._url_ceiling_score)
        return level_for(combine_scores([LayerResult("ml", score)], config), config).value

    assert [url_level(p) for p in (0.3, 0.5, 0.8, 0.99, 1.0)] == ["BENIGN"] + ["SUSPICIOUS"] * 4
    ranked = [layer._compress_above_suspicious(layer._map(p, cal), layer._url_ceiling_score)
              for p in (0.3, 0.5, 0.8, 0.99, 1.0)]
    assert ranked == sorted(ranked) and len(set(ranked)) == 5
    # Another layer's agreement can still make it MALICIOUS.
    other = LayerResult("url", 50.0)
    top = LayerResult("ml", ranked[-1])
    assert level_for(combine_scores([top, other], config), config).value == "MALICIOUS"


STUB = '<html><head><title>App</title><script src="/dl.js"></script></head><body>hi</body></html>'
LOGIN_STUB = ('<html><head><title>App</title></head><body>hi<form action="/go" method="post">'
              '<input name="email"><input type="password" name="pw"></form></body></html>')


def test_page_model_only_corroborates_on_pages_that_ask_nothing() -> None:
    """Near-empty pages look like kit stubs to the page model: without a form, input, frame,
    refresh or download they stay below SUSPICIOUS; the same page with a login form does not."""
    engine = RiskEngine(layers=["ml"])
    stub = engine.scan(Capture.build("https://app.example.com/app.html", html=STUB))
    ml = stub.layers[0]
    assert ml.details["html_probability"] > 0.5  # the model does rate the stub highly
    assert ml.details["page_model_capped"]
    assert stub.risk_score < engine.config.thresholds.suspicious
    login = engine.scan(Capture.build("https://app.example.com/app.html", html=LOGIN_STUB))
    assert "page_model_capped" not in login.layers[0].details


def test_url_model_still_ranks_urls() -> None:
    engine = RiskEngine(layers=["ml"])
    low = engine.scan(Capture.build("https://en.wikipedia.org/wiki/Cat")).risk_score
    high = engine.scan(Capture.build("http://paypal-secure-login.xyz/webscr/verify")).risk_score
    assert high > low


def test_fast_logistic_path_equals_predict_proba() -> None:
    """ModelBundle.predict skips scikit-learn's per-call checks; the numbers must not move."""
    from malwaresnipper.engine.models import design_matrix, featurize

    layer = MlLayer(EngineConfig())
    raws = {
        "js": ["var a = document.createElement('div'); a.id = 'x';", "eval(unescape('%61%6c%65%72%74'))"],
        "url": ["https://paypal.com.secure-login.example.net/webscr?cmd=_login", "https://www.python.org/"],
        "html": ["<form action='login.php'><input type=password name=pw></form>", "<p>Hello</p>"],
    }
    for kind, bundle in layer.loaded.bundles.items():
        assert bundle._binary_logistic is not None, kind
        inputs = [featurize(kind, raw, numeric_keys=bundle.numeric_keys) for raw in raws[kind]]
        X = design_matrix(inputs, bundle.numeric_keys, bundle.numeric_mean, bundle.numeric_scale,
                          numeric_weight=bundle.numeric_weight, n_features=bundle.n_features)
        assert bundle.predict(inputs) == [float(p) for p in bundle.estimator.predict_proba(X)[:, 1]]


def test_script_scores_are_cached_and_cleared_with_the_feature_cache() -> None:
    from malwaresnipper.engine.features.javascript import clear_cache
    from malwaresnipper.engine.layers.ml import SCRIPT_SCORES

    layer = MlLayer(EngineConfig())
    script = "function greet(name) { return 'Hello, ' + name + '!'; }\n" * 20  # over MIN_CHARS
    capture = Capture.build("https://example.org/", scripts=[{"url": "https://example.org/a.js", "text": script}])
    clear_cache()
    model = layer.loaded.bundles["js"].meta["sha256"]
    assert SCRIPT_SCORES.get(model, script) is None
    cold = _analyze(layer, capture)
    assert SCRIPT_SCORES.get(model, script) == pytest.approx(cold.details["js_probability"], abs=1e-6)
    warm = _analyze(layer, capture)
    assert warm.score == cold.score and warm.details == cold.details
    clear_cache()
    assert SCRIPT_SCORES.get(model, script) is None


def test_page_scores_are_cached_per_model_url_and_html_and_cleared_with_the_feature_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from malwaresnipper.engine import models
    from malwaresnipper.engine.features.javascript import clear_cache
    from malwaresnipper.engine.layers.ml import PAGE_SCORES

    layer = MlLayer(EngineConfig())
    html = ("<html><head><title>Sign in</title></head><body><form action='login.php'>"
            "<input type=password name=pw></form>" + "<p>Welcome back to your account.</p>" * 30 + "</body></html>")
    page = Capture.build("https://shop.example/login", html=html)
    clear_cache()
    cold = _analyze(layer, page)
    key = f"{layer.loaded.bundles['html'].meta['sha256']}\x00https://shop.example/login"
    assert PAGE_SCORES.get(key, html) == pytest.approx(cold.details["html_probability"], abs=1e-6)
    featurized: list[str] = []
    real = models.featurize

    def counted(kind: str, raw: str, **kwargs):  # noqa: ANN003, ANN202 - the real featurize, counted
        featurized.append(kind)
        return real(kind, raw, **kwargs)

    monkeypatch.setattr("malwaresnipper.engine.layers.ml.featurize", counted)
    warm = _analyze(layer, page)
    assert warm.score == cold.score and warm.details == cold.details and "html" not in featurized
    # Another address (links resolve against it) or other HTML is scored afresh.
    _analyze(layer, Capture.build("https://other.example/login", html=html))
    assert featurized.count("html") == 1
    clear_cache()
    assert PAGE_SCORES.get(key, html) is None
