"""Capture: validation with clear errors, and caps that truncate and say so."""

from __future__ import annotations

import pytest

from malwaresnipper.engine import Capture, CaptureError, CaptureLimits, RiskEngine, Script, Source
from malwaresnipper.engine.capture import sha256_text


def test_build_minimal_http_capture() -> None:
    cap = Capture.build("https://Example.COM/path?q=1", source="extension")
    assert cap.url == "https://Example.COM/path?q=1"
    assert cap.host == "example.com"
    assert cap.source is Source.EXTENSION
    assert cap.scripts == () and cap.truncations == ()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("example.com", "no scheme"),
        ("ftp://example.com/", "unsupported URL scheme"),
        ("https://", "no host"),
        ("http://example.com:99999/", "not a valid URL"),
        (42, "must be a string"),
    ],
)
def test_invalid_urls_are_clear_errors(url: object, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        Capture.build(url)  # type: ignore[arg-type]


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(CaptureError, match="title must be a string"):
        Capture.build("https://a.test/", title=5)  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match=r"scripts\[1\]"):
        Capture.build("https://a.test/", scripts=["ok", 3])  # type: ignore[list-item]
    with pytest.raises(CaptureError, match="scripts must be a list"):
        Capture.build("https://a.test/", scripts="alert(1)")  # type: ignore[arg-type]
    with pytest.raises(CaptureError, match=r"dom\.forms\[0\]\.has_password"):
        Capture.build("https://a.test/", dom={"forms": [{"has_password": "yes"}]})
    with pytest.raises(CaptureError, match="source must be one of"):
        Capture.build("https://a.test/", source="carrier-pigeon")


def test_scripts_accept_text_mappings_and_script_objects() -> None:
    cap = Capture.build(
        "https://a.test/",
        scripts=["var a = 1;", {"url": "https://cdn.test/x.js", "text": "var b;"}, {"src": "https://cdn.test/y.js"}],
    )
    assert [s.inline for s in cap.scripts] == [True, False, False]
    assert cap.scripts[0].sha256 == sha256_text("var a = 1;")
    assert cap.scripts[2].text is None and cap.scripts[2].url == "https://cdn.test/y.js"


def test_oversized_script_and_page_are_truncated_and_noted() -> None:
    limits = CaptureLimits(max_page_chars=100, max_script_chars=50, max_scripts=2)
    cap = Capture.build(
        "https://a.test/", html="<p>" + "x" * 500, scripts=["y" * 80, "z", "w"], limits=limits
    )
    assert len(cap.html or "") <= 100 and cap.html.startswith("<p>x") and cap.html.endswith("xxx")
    assert len(cap.scripts) == 2
    assert cap.scripts[0].truncated and cap.scripts[0].original_chars == 80
    assert cap.scripts[0].sha256 == sha256_text("y" * 80), "hash is of the script as sent"
    assert len(cap.truncations) == 3


def test_truncation_becomes_an_indicator_in_the_verdict() -> None:
    limits = CaptureLimits(max_script_chars=10)
    cap = Capture.build("https://a.test/", scripts=["var x = 'a long script';"], limits=limits)
    verdict = RiskEngine().scan(cap)
    assert verdict.truncated
    assert any(i.id == "engine.truncated" for i in verdict.indicators)
    # a cut capture is incomplete, and an incomplete verdict is never BENIGN
    assert not verdict.complete and verdict.incomplete_reasons
    assert verdict.threat_level.value == "SUSPICIOUS"


def test_bytes_html_is_decoded_with_replacement() -> None:
    cap = Capture.build("https://a.test/", html=b"<p>\xff\xfe caf\xc3\xa9</p>")
    assert "café" in (cap.html or "") and "\ufffd" in (cap.html or "")


def test_capture_is_immutable() -> None:
    cap = Capture.build("https://a.test/")
    with pytest.raises(AttributeError):
        cap.url = "https://b.test/"  # type: ignore[misc]


def test_script_location_names_url_or_inline() -> None:
    assert Script(url="https://x.test/a.js").location == "script https://x.test/a.js"
    assert Script(text="1").location == "inline script"
