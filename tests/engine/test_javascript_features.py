"""The JavaScript feature extractor: counts, offsets, stable vectors, and no exception ever.

Fixtures are small scripts written for these tests; nothing here is executed.
"""

from __future__ import annotations

import math
from typing import cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from malwaresnipper.engine.features.javascript import (
    KEYWORDS,
    JsFeatures,
    extract_js_features,
    feature_names,
)

ESCAPED = 'var s = "' + "".join(f"\\x{ord(c):02x}" for c in "document.write('<iframe>')") + '";'
UNICODE_LOCALE = 'var zh = {hello: "' + "\\u4f60\\u597d" * 40 + '", bye: "' + "\\u518d\\u89c1" * 40 + '"};'
CHAR_CODES = "var c = [" + ",".join(str(ord(ch)) for ch in "new ActiveXObject('WScript.Shell')" * 3) + "];" \
    "var s = String.fromCharCode.apply(null, c);"


def test_empty_script_gives_zero_features() -> None:
    f = extract_js_features("")
    assert f == JsFeatures()
    assert all(v == 0.0 for v in f.vector().values())


def test_vector_has_the_stable_names_and_finite_values() -> None:
    f = extract_js_features(ESCAPED + CHAR_CODES)
    vector = f.vector()
    assert tuple(vector) == feature_names()
    assert len(set(vector)) == len(vector)
    assert all(isinstance(v, float) and math.isfinite(v) for v in vector.values())
    for name in KEYWORDS:
        assert f"kw_{name}" in vector


def test_keywords_are_counted_case_insensitively_with_first_offsets() -> None:
    text = 'var a = 1;\nvar sh = new ActiveXObject("WScript.Shell"); var t = new activexobject("x");'
    f = extract_js_features(text)
    assert f.count("activex") == 2
    assert f.count("wscript_shell") == 1
    assert f.offset("activex") == text.index("ActiveXObject")
    assert f.offset("wscript_shell") == text.index("WScript.Shell")
    assert f.count("eval") == 0 and f.offset("eval") == -1


def test_wscript_needs_a_boundary_so_new_script_does_not_count() -> None:
    assert extract_js_features('var newScript = document.createElement("script");').count("wscript") == 0
    assert extract_js_features("var x = WScript.CreateObject(p);").count("wscript") == 1
    assert extract_js_features("var w = [WScript][0];").count("wscript") == 1


def test_offsets_are_character_offsets_after_non_ascii_text() -> None:
    text = "// Grüße, 日本語のコメント\nvar x = eval(atob('YQ=='));"
    f = extract_js_features(text)
    assert f.offset("eval") == text.index("eval(")
    assert f.offset("atob") == text.index("atob(")
    assert text[f.longest_string_offset : f.longest_string_offset + 6] == "'YQ=='"


def test_hex_escapes_are_measured_as_ascii_escapes() -> None:
    f = extract_js_features(ESCAPED)
    assert f.escape_hex == len("document.write('<iframe>')")
    assert f.ascii_escape_density > 0.5
    assert f.escape_offset == ESCAPED.index("\\x")


def test_non_latin_unicode_escapes_are_not_ascii_escapes() -> None:
    """A translation file escapes CJK text; that is not hiding code."""
    f = extract_js_features(UNICODE_LOCALE)
    assert f.escape_unicode == 160
    assert f.escape_unicode_ascii == 0
    assert f.ascii_escape_density == 0.0
    assert f.escape_density > 0.5


def test_char_code_arrays_are_counted() -> None:
    f = extract_js_features(CHAR_CODES)
    assert f.charcode_list_items >= 90
    assert f.count("fromcharcode") == 1
    assert CHAR_CODES[f.charcode_list_offset].isdigit()


def test_string_literal_statistics() -> None:
    payload = "Qk9Zx7Wm" * 500
    text = f'var small = "hi"; var big = "{payload}"; var other = \'it\\\'s\';'
    f = extract_js_features(text)
    assert f.string_count == 3
    assert f.longest_string == len(payload)
    assert text[f.longest_string_offset + 1 : f.longest_string_offset + 9] == "Qk9Zx7Wm"
    assert f.long_string_count == 1
    assert f.base64_string_chars == len(payload)
    assert 2.9 < f.longest_string_entropy < 3.1  # eight distinct symbols, evenly used


def test_hex_payload_strings_are_recognised() -> None:
    f = extract_js_features('var str="' + "5552535E0F01120D0A4A0601" * 30 + '";')
    assert f.hex_string_chars == 24 * 30


def test_data_uris_are_not_payloads() -> None:
    f = extract_js_features('var img = "data:image/png;base64,' + "iVBORw0KGgo" * 600 + '";')
    assert f.longest_string_is_data_uri
    assert f.base64_string_chars == 0


def test_identifier_statistics_tell_generated_names_from_camel_case() -> None:
    written = extract_js_features("function getElementById(elementId) { return document.getElementById(elementId); }")
    generated = extract_js_features(
        "var NYbNDRVQXDwfeUo = 1; var qWeRtYuIoPaS = NYbNDRVQXDwfeUo + 2; var zXcVbNmAsD = qWeRtYuIoPaS;"
    )
    assert written.identifier_random_ratio == 0.0
    assert generated.identifier_random_ratio > 0.5
    assert written.identifier_count == 7
    assert written.identifier_max_length == len("getElementById")


def test_obfuscator_names_and_bracket_access() -> None:
    text = "var _0x1a2b=['push','shift'];(function(_0x3c4d,_0x5e6f){_0x3c4d['push'](_0x3c4d['shift']());})(_0x1a2b);"
    f = extract_js_features(text)
    assert f.count("hex_name") == 6
    assert f.count("obfuscator_rotate") >= 1
    assert f.bracket_string == 3  # two accesses plus the array literal, which also opens with a quote


def test_minified_style_is_recognised_as_style_only() -> None:
    line = ";".join(f"function a{i}(b,c){{return b+c*{i}}}" for i in range(200))
    f = extract_js_features(line)
    assert f.is_minified_style
    assert f.identifier_short_ratio > 0.5


def test_new_function_is_case_sensitive() -> None:
    assert extract_js_features("var o = new function(){ this.a = 1; };").new_function == 0
    assert extract_js_features('var f = new Function("a", "return a");').new_function == 1


def test_bad_input_never_raises() -> None:
    for text in ("\ud800\udfff\ud800", "\x00\x01\x02" * 1000, "'" * 10_001, '"\\' * 5000, "a" * 300_000):
        f = extract_js_features(text)
        assert f.error is None
        assert f.length == len(text)
        assert all(math.isfinite(v) for v in f.vector().values())


def test_a_non_string_is_read_as_its_text_not_raised() -> None:
    f = extract_js_features(12345)  # type: ignore[arg-type]
    assert f.error is None and f.length == 5
    assert f.vector() == extract_js_features("12345").vector()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000))
def test_any_text_gives_finite_features(text: str) -> None:
    f = extract_js_features(text)
    assert f.error is None
    assert f.length == len(text)
    values = f.vector()
    assert tuple(values) == feature_names()
    assert all(math.isfinite(v) for v in values.values())
    for name, offset in f.first.items():
        assert 0 <= offset < len(text), name


def test_repeated_scripts_come_from_the_cache_and_the_cache_is_bounded(monkeypatch) -> None:
    from malwaresnipper.engine.features import javascript as js

    js.clear_cache()
    text = "var lib = function(a){ return a + 1; };\n" * 40
    first = js.extract_js_features(text)
    assert js.extract_js_features(text) is first
    assert js.extract_js_features(text, cache=False) is not first
    assert js.extract_js_features(text, cache=False) == first
    js.clear_cache()
    assert js.extract_js_features(text) is not first

    monkeypatch.setattr(js, "CACHE_MAX_CHARS", 5 * len(text))
    js.clear_cache()
    texts = [text + f"//{i}\n" for i in range(10)]
    for t in texts:
        js.extract_js_features(t)
    assert js._cache_chars <= js.CACHE_MAX_CHARS
    assert texts[0] not in js._CACHE and texts[-1] in js._CACHE
    js.clear_cache()


def test_separator_encoded_strings_are_recognised() -> None:
    glued = "".join("KqPzWv" + f"{ord(ch):02x}" for ch in "<script src=http://x.invalid/a.js></script>")
    interleaved = "?".join("var a=new ActiveXObject('WScript.Shell');a.Run(p);" * 2)
    prose = "The quick brown fox jumps over the lazy dog, again and again, until the evening comes. " * 3
    assert extract_js_features(f"var g = '{glued}';").separator_string_chars == len(glued)
    assert extract_js_features(f'var i = "{interleaved}";').separator_string_chars == len(interleaved)
    assert extract_js_features(f'var p = "{prose}";').separator_string_chars == 0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcXYZ_$09 .;(){}'\"+=\nKve8G_TEgetElementById\u00e9", max_size=600))
def test_small_and_vectorised_identifier_statistics_agree(text: str) -> None:
    """Short scripts take a plain-Python path; it must measure exactly what the numpy path does."""
    from malwaresnipper.engine.features import javascript as js

    sample = text.encode("utf-8")
    small = js._identifier_stats_small(sample)
    saved = js.SMALL_SAMPLE_BYTES
    js.SMALL_SAMPLE_BYTES = -1
    try:
        vectorised = js._identifier_stats(sample)
    finally:
        js.SMALL_SAMPLE_BYTES = saved
    assert small.keys() == vectorised.keys()
    small_values, vectorised_values = cast(dict[str, float], small), cast(dict[str, float], vectorised)
    for key, value in small_values.items():
        assert math.isclose(value, vectorised_values[key], abs_tol=1e-9), key
