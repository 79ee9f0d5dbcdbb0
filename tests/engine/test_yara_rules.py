"""YARA rules through YARA-X: loading, targets, metadata, evidence, errors, timeouts, the docs' example."""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest

from malwaresnipper.cli.scan import capture_for_target
from malwaresnipper.engine import Capture, RiskEngine, ThreatLevel
from malwaresnipper.engine.config import EngineConfig, Limits, Signatures
from malwaresnipper.engine.errors import ConfigError, RuleError
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.findings import Strength
from malwaresnipper.engine.layers.signatures import SignaturesLayer
from malwaresnipper.engine.results import LayerResult, Severity
from malwaresnipper.engine.yara_rules import compile_yara, load_yara_rules

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, source: str, name: str = "rules.yar") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def config(folder: Path, *yara_files: str, defaults: bool = False, **more: object) -> EngineConfig:
    return EngineConfig(
        signatures=Signatures(yara_files=list(yara_files), include_default_rules=defaults, **more),  # type: ignore[arg-type]
        base_dir=str(folder),
    )


def layer_with(folder: Path, source: str, name: str = "rules.yar") -> SignaturesLayer:
    write(folder, source, name)
    return SignaturesLayer(config(folder, name))


def scan(layer: SignaturesLayer, capture: Capture) -> LayerResult:
    return layer.analyze(capture, Features(capture))


def by_id(result: LayerResult) -> dict[str, object]:
    return {i.id: i for i in result.indicators}


# -- through the whole engine ----------------------------------------------------------------

MARKER_RULE = """
rule Campaign_Marker : script
{{
    meta:
        description = "Script carries the marker of campaign 7781"
        author = "tests"
        severity = "high"
        strength = "{strength}"
        classification = "skimmer"
        category = "skimmer"
    strings:
        $marker = "zx-skim-7781"
        $beacon = /sendBeacon\\(\\s*["'][^"']{{1,40}}/
    condition:
        $marker and $beacon
}}
"""
SCRIPT = ('var greeting = "grüße, naïve café";\nvar campaign = "zx-skim-7781";\n'
          'navigator.sendBeacon("/metrics", JSON.stringify({page: location.pathname}));\n')


@pytest.mark.parametrize(("strength", "expected"), [("behaviour", ThreatLevel.MALICIOUS),
                                                    ("trait", ThreatLevel.SUSPICIOUS)])
def test_a_yara_match_is_an_indicator_of_the_verdict_with_its_strength(
        tmp_path: Path, strength: str, expected: ThreatLevel) -> None:
    capture = Capture.build("https://shop.example/account", scripts=[
        {"text": SCRIPT, "url": "https://shop.example/app.js", "inline": False}])
    assert RiskEngine().scan(capture).threat_level is ThreatLevel.BENIGN  # nothing else sees it
    write(tmp_path, MARKER_RULE.format(strength=strength), "campaigns.yar")
    verdict = RiskEngine(config(tmp_path, "campaigns.yar", defaults=True)).scan(capture)

    assert verdict.threat_level is expected, verdict.to_dict()
    indicator = next(i for i in verdict.indicators if i.id == "signatures.yara.campaigns.Campaign_Marker")
    assert indicator.title == "Script carries the marker of campaign 7781"
    assert (indicator.severity, indicator.strength) == (Severity.HIGH, strength)
    assert (indicator.classification, indicator.category, indicator.layer) == ("skimmer", "skimmer", "signatures")
    marker, beacon = indicator.evidence
    assert marker.location == beacon.location == "script #1 https://shop.example/app.js"
    # character offsets (the text has non-ASCII letters before the match), identifier first
    assert SCRIPT[marker.offset:].startswith("zx-skim-7781") and marker.snippet.startswith("$marker: ")
    assert SCRIPT[beacon.offset:].startswith('sendBeacon("/metrics"') and beacon.snippet.startswith("$beacon: ")
    assert "\\n" in marker.snippet and "\n" not in marker.snippet  # escaped, one line
    assert verdict.classification == "skimmer"


def test_metadata_map_onto_catalogue_entries(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, """
        rule Full : html { meta: description = "Kit {name} page" severity = "LOW" strength = "behaviour"
                              classification = "phishing" category = "kit" strings: $a = "x" condition: $a }
        rule Bare { strings: $a = "x" condition: $a }
        rule Worst : url { meta: severity = "critical" strings: $a = "x" condition: $a }
        """, "kits.yar")
    full, bare, worst = (layer.catalogue.spec(f"signatures.yara.kits.{name}") for name in ("Full", "Bare", "Worst"))
    assert (full.title, full.severity, full.points, full.strength) == (
        "Kit {{name}} page", Severity.LOW, 15.0, Strength.BEHAVIOUR)  # braces are not blanks to fill
    assert (full.classification, full.category, full.layer) == ("phishing", "kit", "signatures")
    assert "kits.yar" in full.doc and "matches html" in full.doc
    # no metadata: a public rule as it comes is a medium trait that runs on html and scripts
    assert (bare.title, bare.severity, bare.points, bare.strength, bare.category, bare.classification) == (
        "YARA rule kits.Bare matched", Severity.MEDIUM, 35.0, Strength.TRAIT, "signature", None)
    assert "matches html, script" in bare.doc
    assert (worst.severity, worst.strength) == (Severity.CRITICAL, Strength.DECISIVE)  # as for TOML rules
    assert [r.id for r in layer.yara_rules] == ["yara.kits.Full", "yara.kits.Bare", "yara.kits.Worst"]


# -- targets: tags and external variables ----------------------------------------------------

TARGET_RULES = """
rule T_Url : url { strings: $a = "marker" condition: $a }
rule T_Html : HTML { strings: $a = "marker" condition: $a }
rule T_Script : Script { strings: $a = "marker" condition: $a }
rule T_Default : skimmer { strings: $a = "marker" condition: $a }
rule T_UrlAndScript : url script { strings: $a = "marker" condition: $a }
rule V_Target { strings: $a = "marker" condition: $a and target == "html" }
rule V_Checkout : script { strings: $a = "marker" condition: $a and url contains "/checkout" }
rule V_ConditionOnly : url { condition: url endswith "/checkout?marker" and target == "url" }
"""


def locations(result: LayerResult) -> dict[str, set[str]]:
    return {i.id.rsplit(".", 1)[1]: {e.location for e in i.evidence} for i in result.indicators}


def test_tags_choose_the_texts_and_variables_narrow_them(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, TARGET_RULES, "t.yar")
    page = Capture.build(
        "https://shop.example/checkout?marker",
        html='<html><body><p>marker</p><script src="https://cdn.example/marker.js"></script>'
             '<script>var a = "marker";</script></body></html>',
    )
    found = locations(scan(layer, page))
    url, external, html, inline = "url", "script https://cdn.example/marker.js", "html", "script #1 (inline)"
    assert found["T_Url"] == {url, external}
    assert found["T_Html"] == {html}
    assert found["T_Script"] == {inline}
    assert found["T_Default"] == {html, inline}  # no target tag: html and scripts, never URLs
    assert found["T_UrlAndScript"] == {url, external, inline}
    assert found["V_Target"] == {html}
    assert found["V_Checkout"] == {inline}
    assert found["V_ConditionOnly"] == {url, external}  # `url` is the page's: true for each of its URLs
    condition_only = next(i for i in scan(layer, page).indicators if i.id.endswith("V_ConditionOnly"))
    assert condition_only.evidence[0].snippet == "(condition): https://shop.example/checkout?marker"
    assert condition_only.evidence[0].offset is None

    elsewhere = Capture.build("https://shop.example/blog", scripts=["var a = 'marker';"])
    assert "V_Checkout" not in locations(scan(layer, elsewhere))
    # A script captured on its own: `url` is the page that loaded it.
    alone = Capture.build("https://cdn.example/app.js", scripts=[{"text": "marker", "url": "https://cdn.example/app.js"}],
                          page_url="https://shop.example/checkout/")
    assert "V_Checkout" in locations(scan(layer, alone))


def test_a_namespace_named_after_a_target_chooses_it_and_tags_still_win(tmp_path: Path) -> None:
    """rules/url.yar runs on URLs only, rules/script.yar on scripts only; a tag overrides the file."""
    write(tmp_path, 'rule N_Url { strings: $m = "marker" condition: $m }\n', "rules/url.yar")
    write(tmp_path, 'rule N_Script { strings: $m = "marker" condition: $m }\n'
                    'rule N_ScriptTaggedHtml : html { strings: $m = "marker" condition: $m }\n', "rules/Script.yar")
    write(tmp_path, 'rule N_Other { strings: $m = "marker" condition: $m }\n', "rules/scripts_extra.yar")
    layer = SignaturesLayer(config(tmp_path, "rules"))
    assert {r.id: r.targets for r in layer.yara_rules} == {
        "yara.url.N_Url": ("url",), "yara.Script.N_Script": ("script",),
        "yara.Script.N_ScriptTaggedHtml": ("html",), "yara.scripts_extra.N_Other": ("html", "script")}
    page = Capture.build(
        "https://shop.example/marker",
        html='<html><body><p>marker</p><script>var a = "marker";</script></body></html>',
    )
    found = locations(scan(layer, page))
    assert found == {"N_Url": {"url"}, "N_Script": {"script #1 (inline)"}, "N_ScriptTaggedHtml": {"html"},
                     "N_Other": {"html", "script #1 (inline)"}}


# -- evidence --------------------------------------------------------------------------------


def test_evidence_is_escaped_and_counts_characters(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, r"""
        rule Hidden : script { strings: $s1 = "evil" $s2 = { 00 65 76 } $bidi = "\xe2\x80\xae" condition: any of them }
        """)
    text = "/* ünïcödé */ var x = 'a\u202eb'; var y = 'z\x00ev'; // evil\n"
    result = scan(layer, Capture.build("https://a.example/", scripts=[text]))
    (indicator,) = result.indicators
    shown = {e.snippet.split(":", 1)[0]: e for e in indicator.evidence}
    assert set(shown) == {"$s1", "$s2", "$bidi"}
    assert text[shown["$s1"].offset:].startswith("evil")
    assert text[shown["$s2"].offset:].startswith("\x00ev")
    assert text[shown["$bidi"].offset] == "\u202e"
    for evidence in indicator.evidence:  # nothing that does not print reaches a log or a screen as is
        assert "\u202e" not in evidence.snippet and "\x00" not in evidence.snippet and "\n" not in evidence.snippet
    assert "\\u202e" in shown["$bidi"].snippet and "\\x00ev" in shown["$s2"].snippet


def test_evidence_shows_each_family_of_strings_and_several_places(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, """
        rule Kit { strings: $field_a = "alpha" $field_b = "bravo" $field_c = "charlie" $send = "delta"
                   condition: all of them }
        """)
    script = "alpha bravo charlie delta"
    result = scan(layer, Capture.build("https://a.example/", scripts=[script, script + " ", script + "  ", script + "   "]))
    (indicator,) = result.indicators
    per_place: dict[str, list[str]] = {}
    for evidence in indicator.evidence:
        per_place.setdefault(evidence.location, []).append(evidence.snippet.split(":", 1)[0])
    assert len(per_place) == 3  # MAX_EVIDENCE places
    for shown in per_place.values():  # $send is shown though it comes last: another family
        assert shown == ["$field_a", "$field_b", "$send"]


# -- errors at start-up ----------------------------------------------------------------------


def test_a_rule_that_does_not_compile_stops_start_up_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        rule Fine { condition: true }
        rule Broken : script {
          strings:
            $a = "x"
          condition:
            $a and $b
        }
        """, "broken.yar")
    for build in (lambda: SignaturesLayer(config(tmp_path, "broken.yar")),
                  lambda: RiskEngine(config(tmp_path, "broken.yar"))):
        with pytest.raises(RuleError) as info:
            build()
        message = str(info.value)
        assert f"{path}:6:" in message and "unknown pattern `$b`" in message
        assert isinstance(info.value, ConfigError)
    # a syntax error, in a file loaded from a folder
    write(tmp_path / "rules", "rule Ok { condition: true }\n", "a.yar")
    bad = write(tmp_path / "rules", "rule Bad {\n  strings:\n    $a = \"x\n  condition: $a\n}\n", "b.yara")
    with pytest.raises(RuleError, match=re.escape(f"{bad}:3:")):
        SignaturesLayer(config(tmp_path, "rules"))


@pytest.mark.parametrize(
    ("meta", "line", "needle"),
    [
        ('severity = "severe"', 3, "'severity' must be one of info, low, medium, high, critical"),
        ("severity = 3", 3, "'severity' must be one of"),
        ('strength = "strong"', 3, "'strength' must be one of decisive, behaviour, trait"),
        ('strength = "model"', 3, "'strength' must be one of decisive, behaviour, trait"),
        ('description = "   "', 3, "'description' must be a non-empty string"),
        ("classification = true", 3, "'classification' must be a non-empty string"),
        ('category = ""', 3, "'category' must be a non-empty string"),
    ],
)
def test_bad_metadata_is_refused_with_file_and_line(tmp_path: Path, meta: str, line: int, needle: str) -> None:
    path = write(tmp_path, f'rule R : script {{\n  meta:\n    {meta}\n  strings: $a = "x"\n  condition: $a\n}}\n')
    with pytest.raises(RuleError) as info:
        SignaturesLayer(config(tmp_path, "rules.yar"))
    assert f"{path}:{line}:" in str(info.value) and needle in str(info.value)


def test_a_metadata_key_given_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, 'rule Twice { meta: severity = "low" severity = "critical" strings: $a = "x" condition: $a }\n')
    with pytest.raises(RuleError, match=r"rules\.yar: rule 'Twice': metadata 'severity' is given twice"):
        SignaturesLayer(config(tmp_path, "rules.yar"))


def test_paths_folders_and_namespaces(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such YARA rule file or folder"):
        SignaturesLayer(config(tmp_path, "missing.yar"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no rules here")
    with pytest.raises(RuleError, match="no .yar or .yara files in this folder"):
        SignaturesLayer(config(tmp_path, "empty"))
    # folders are searched recursively; each file is a namespace; rule names may repeat across files
    write(tmp_path / "sets" / "skimmers", 'rule Same : script { strings: $a = "skim" condition: $a }', "magecart.yar")
    write(tmp_path / "sets" / "phishing", 'rule Same : html { strings: $a = "kit" condition: $a }', "kits.YARA")
    layer = SignaturesLayer(config(tmp_path, "sets"))
    assert sorted(r.id for r in layer.yara_rules) == ["yara.kits.Same", "yara.magecart.Same"]
    write(tmp_path / "sets" / "more", 'rule Other { condition: false }', "magecart.yar")
    with pytest.raises(RuleError, match="namespace 'magecart' .* is already used by"):
        SignaturesLayer(config(tmp_path, "sets"))


def test_includes_are_found_next_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "common", 'rule Shared : script { strings: $a = "shared" condition: $a }', "shared.yar")
    write(tmp_path / "rules", 'include "common/shared.yar"\nrule Own : script { condition: Shared }', "main.yar")
    layer = SignaturesLayer(config(tmp_path, "rules/main.yar"))
    result = scan(layer, Capture.build("https://a.example/", scripts=["var shared = 1;"]))
    assert {i.id for i in result.indicators} == {"signatures.yara.main.Shared", "signatures.yara.main.Own"}


def test_toml_rules_keep_working_beside_yara_rules(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        '[[rule]]\nid = "toml_marker"\ndescription = "d"\nseverity = "low"\ntarget = "script"\npatterns = ["marker"]\n')
    write(tmp_path, 'rule yara_marker : script { strings: $a = "marker" condition: $a }', "mine.yar")
    layer = SignaturesLayer(config(tmp_path, "mine.yar", defaults=True, rule_files=["mine.toml"]))
    html = '<script src="https://coinhive.com/lib/coinhive.min.js"></script><script>var marker;</script>'
    found = {i.id for i in scan(layer, Capture.build("https://a.example/", html=html)).indicators}
    assert {"signatures.toml_marker", "signatures.yara.mine.yara_marker", "signatures.miner_host_url"} <= found
    # a TOML id may not take a YARA rule's finding id
    (tmp_path / "clash.toml").write_text(
        '[[rule]]\nid = "yara.mine.yara_marker"\ndescription = "d"\nseverity = "low"\ntarget = "url"\n'
        'patterns = ["x"]\n')
    with pytest.raises(RuleError, match=r"clash\.toml: rule 'yara\.mine\.yara_marker': the id of YARA rule"):
        SignaturesLayer(config(tmp_path, "mine.yar", rule_files=["clash.toml"]))


# -- no rule can hang a scan -----------------------------------------------------------------

SLOW_RULE = """
rule Slow { condition: for any i in (0..filesize) : (for any j in (0..filesize) : (uint8(i) == uint8(j) + 300)) }
rule PageUrl : url { strings: $a = "slow-page" condition: $a }
"""


@pytest.mark.timeout(60)
def test_a_yara_scan_out_of_time_makes_the_verdict_incomplete_and_keeps_matches(tmp_path: Path) -> None:
    write(tmp_path, SLOW_RULE, "slow.yar")
    engine = RiskEngine(EngineConfig(
        signatures=Signatures(yara_files=["slow.yar"]), limits=Limits(time_budget_ms=1000), base_dir=str(tmp_path)),
        layers=["signatures"])
    miner = "var miner = new CoinHive.Anonymous('KEY'); miner.start();"
    capture = Capture.build("https://slow-page.example/", scripts=[miner + " " * 100_000, "var b = 2;", "var c = 3;"])
    started = time.monotonic()
    verdict = engine.scan(capture)
    elapsed = time.monotonic() - started
    assert elapsed < 10  # one timeout for the capture (1 to 2 s), not one per script
    assert not verdict.complete and verdict.threat_level is not ThreatLevel.BENIGN
    (result,) = verdict.layers
    assert result.error.startswith("YARA rules did not finish on script #1")
    assert "not run on 2 more text(s)" in result.error
    found = {i.id for i in verdict.indicators}
    assert {"signatures.yara.slow.PageUrl", "signatures.miner_coinhive"} <= found  # matches found are kept
    assert "engine.incomplete" in found


@pytest.mark.timeout(60)
def test_counting_rules_on_hostile_input_stay_fast(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, 'rule Many : script { strings: $a = "aa" $b = /a{1,50}b?/ condition: #a > 100 and #b > 5 }')
    started = time.monotonic()
    result = scan(layer, Capture.build("https://a.example/", scripts=["a" * 4_000_000]))
    assert time.monotonic() - started < 5 and result.error is None
    assert [i.id for i in result.indicators] == ["signatures.yara.rules.Many"]


# -- the worked example in docs/yara.md ------------------------------------------------------


def _blocks(language: str) -> list[str]:
    doc = (REPO / "docs" / "yara.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", doc, re.DOTALL)


def test_every_yara_block_of_the_docs_compiles(tmp_path: Path) -> None:
    blocks = _blocks("yara")
    assert len(blocks) >= 2
    for index, block in enumerate(blocks):
        compiled = compile_yara([write(tmp_path, block, f"block{index}.yar")])
        assert compiled.errors == (), compiled.errors


def test_the_documented_example_finds_the_documented_skimmer(tmp_path: Path) -> None:
    rules = next(b for b in _blocks("yara") if "WebSkimmer_" in b)
    (page,) = _blocks("html")
    (indicator_json,) = _blocks("json")
    write(tmp_path, rules, "web_skimmers.yar")
    (tmp_path / "checkout.html").write_text(page, encoding="utf-8")
    assert len(load_yara_rules([tmp_path / "web_skimmers.yar"]).rules) == 4
    engine = RiskEngine(config(tmp_path, "web_skimmers.yar", defaults=True), layers=["signatures"])
    verdict = engine.scan(capture_for_target(str(tmp_path / "checkout.html"), engine.config.capture_limits()))
    assert verdict.threat_level is ThreatLevel.MALICIOUS and verdict.classification == "skimmer"
    assert [i.id for i in verdict.indicators if i.layer == "signatures"] == [
        "signatures.yara.web_skimmers.WebSkimmer_ObfuscatedCheckoutStrings",
        "signatures.yara.web_skimmers.WebSkimmer_LookalikeCdnHost",
    ]
    # the indicator shown in the docs is the one the engine reports
    shown = next(i for i in verdict.indicators if i.id.endswith("ObfuscatedCheckoutStrings"))
    assert shown.to_dict() == json.loads(indicator_json)
    doc = (REPO / "docs" / "yara.md").read_text(encoding="utf-8")
    assert f"MALICIOUS (risk {verdict.risk_score:.1f}/100, skimmer)" in doc
    # and an ordinary checkout page does not match
    plain = re.sub(r"<script>.*?</script>", "", page, flags=re.DOTALL).replace("googletagmanager-cdn.test", "shop.example")
    (tmp_path / "plain.html").write_text(plain, encoding="utf-8")
    verdict = engine.scan(capture_for_target(str(tmp_path / "plain.html"), engine.config.capture_limits()))
    assert not [i for i in verdict.indicators if i.id.startswith("signatures.yara")]
