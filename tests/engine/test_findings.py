"""One catalogue of findings: every indicator the engine can emit is in it, the published page
is the catalogue, and nothing builds an indicator around it."""

from __future__ import annotations

import re
from collections.abc import Container
from itertools import islice
from pathlib import Path

import pytest
from helpers.corpus import corpus_file, needs_corpus

from malwaresnipper.cli.findings import configured_catalogue
from malwaresnipper.engine import Capture, RiskEngine
from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.engine.findings import Strength, catalogue, combine, load_catalogue

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine"


def test_the_published_page_is_the_catalogue() -> None:
    page = (REPO / "docs" / "findings.md").read_text(encoding="utf-8")
    assert page == configured_catalogue().markdown(), "regenerate: malwaresnipper findings --markdown > docs/findings.md"


def test_only_the_catalogue_builds_indicators() -> None:
    builders = [str(p.relative_to(REPO)) for p in ENGINE.rglob("*.py")
                if re.search(r"\bIndicator\(\s*id=", p.read_text(encoding="utf-8"))]
    assert builders == ["engine/findings.py"]


def test_every_catalogue_entry_is_used_by_its_layer() -> None:
    """No dead entries: each finding's name appears in the code of the layer that reports it."""
    sources = {p.stem: p.read_text(encoding="utf-8") for p in (ENGINE / "layers").glob("*.py")}
    sources["engine"] = (ENGINE / "engine.py").read_text(encoding="utf-8") + (ENGINE / "verdict.py").read_text(
        encoding="utf-8")
    unused = []
    for spec in catalogue():
        name = spec.id.split(".", 1)[1]
        code = sources[spec.layer]
        if f'"{name}"' not in code and f'"{spec.id}"' not in code and f'.{name}"' not in code:
            unused.append(spec.id)
    assert not unused


def test_titles_fill_every_blank_and_refuse_missing_ones() -> None:
    cat = catalogue()
    finding = cat.finding("url.deep_subdomains", variant="many", depth=5)
    assert finding.title.startswith("The host name has 5 levels") and finding.points == 30
    with pytest.raises(ValueError, match="depth"):
        cat.finding("url.deep_subdomains", variant="many")
    with pytest.raises(KeyError, match="not in the findings catalogue"):
        cat.finding("url.no_such_thing")
    with pytest.raises(ValueError, match="points computed"):
        cat.finding("ml.js_model", variant="high", probability="0.9")


def test_a_bad_catalogue_entry_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "findings.toml"
    bad.write_text('[url.x]\ntitle = "t"\nseverity = "low"\npoints = 1\ncategory = "url"\nstrength = "weak"\ndoc = "d"\n')
    with pytest.raises(ConfigError, match="url.x"):
        load_catalogue(bad)
    bad.write_text('[url.x]\ntitle = "t"\nseverity = "low"\npoints = 1\ncategory = "url"\nstrength = "trait"\n'
                   'doc = "d"\nweight = 2\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_catalogue(bad)


def test_one_combination_for_every_layer() -> None:
    assert combine([]) == 0.0
    assert combine([50, 50]) == pytest.approx(75.0)
    assert combine([100]) < 100.0


def _check(engine: RiskEngine, capture: Capture, known: Container[str]) -> set[str]:
    verdict = engine.scan(capture)
    seen = set()
    for indicator in verdict.indicators:
        assert indicator.id in known, indicator.id
        spec = known.spec(indicator.id)  # type: ignore[attr-defined]
        assert indicator.strength == spec.strength.value and indicator.category == spec.category
        assert "{" not in indicator.title or "{" in spec.title.replace("{{", ""), indicator.title
        seen.add(indicator.id)
    return seen


def test_every_indicator_of_a_varied_scan_is_in_the_catalogue() -> None:
    engine = RiskEngine()
    known = configured_catalogue()
    pages = [
        Capture.build("http://93.184.216.34:8081/paypal/login.php?email=a@b.c", html=(
            "<title>PayPal</title><form action='mailto:x@y.z'><input type=password><input name=cc></form>"
            "<iframe src='http://evil.example/' width=0 height=0></iframe>")),
        Capture.build("https://shop.example/", scripts=[
            "var sh = new ActiveXObject('WScript.Shell'); sh.Run('cmd');",
            "eval(unescape('%61%6c%65%72%74'))", "document.write(unescape('%3Ciframe src=x%3E'))"]),
        Capture.build("https://paypa1.com/signin"),
    ]
    seen: set[str] = set()
    for capture in pages:
        seen |= _check(engine, capture, known)
    assert {"url.ip_host", "dom.form_action_mailto", "javascript.wsh_dropper"} <= seen


@needs_corpus
@pytest.mark.corpus
def test_every_indicator_the_engine_emits_on_the_corpus_is_in_the_catalogue() -> None:
    """A slice of every corpus (scripts, pages, URLs, both labels): nothing outside the catalogue,
    strengths and categories as the catalogue says."""
    from malwaresnipper.engine.training.corpus import capture_for, load_corpus

    engine = RiskEngine()
    known = configured_catalogue()
    limits = engine.config.capture_limits()
    seen: set[str] = set()
    for name, count in (("js_corpus.train.jsonl.gz", 400), ("html_corpus.train.jsonl.gz", 200),
                        ("url_corpus.train.jsonl.gz", 600), ("js_corpus_v2.train.jsonl.gz", 150)):
        corpus = load_corpus(str(corpus_file(name)))
        samples = corpus.samples
        step = max(1, len(samples) // count)
        for sample in islice(samples[::step], count):
            seen |= _check(engine, capture_for(sample, limits), known)
    strengths = {known.spec(i).strength for i in seen}
    assert Strength.BEHAVIOUR in strengths and Strength.TRAIT in strengths and len(seen) >= 40

