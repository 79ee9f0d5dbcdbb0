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
        Capture.build("https://a.test/", scripts="alert(1)")
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


@pytest.mark.parametrize("url", [
    "http://exa mple.com/",          # a space in the host
    "http://%zz/",                   # a bad percent escape in the host
    "http://a@b@c/",                 # two '@' before the path
    "http://1.2.3.4.5/",             # five IPv4 numbers
    "http://999.1.1.1/",
    "http://a.example/x\x00y",       # NUL
    "http://a.exa\x01mple/",         # C0 control
    "http://a.example/x\ty",         # tab: the WHATWG parser would drop it
    "http://a.example/x\ny",
    "http://a.example/x\x7fy",       # DEL
    "http://evil.example\\@bank.example/",   # urlsplit and browsers disagree on the host
    "http://a.exa\u00a0mple/",        # no-break space in the host
    "http://a.example/\ud800",       # an unpaired surrogate
    "http:example.com/",
    "http://user@/",
    "http://[fe80::1%25eth0]/",      # zone ids: browsers refuse them
])
def test_urls_no_browser_would_load_are_refused(url: str) -> None:
    with pytest.raises(CaptureError, match="URL|url"):
        Capture.build(url)


@pytest.mark.parametrize("url", [
    "https://xn--bcher-kva.example/", "https://bücher.example/", "http://[::1]:8080/x", "http://[2001:db8::1]/",
    "https://203.0.113.7:8443/login", "https://paypal.com@203.0.113.7/", "https://u:p@a.example/",
    "https://a.example/%zz?q=%zz#%zz",  # bad escapes after the host are the site's business
    "http://a.example/x?y=\\z", "https://EXAMPLE.com./", "http://0x7f.1/", "http://localhost/",
    "data:text/html,<b>x y</b>", "javascript:alert(1)", "file:///tmp/x.html", "about:blank",
])
def test_urls_browsers_load_are_kept_as_given(url: str) -> None:
    assert Capture.build(url).url == url


def test_dom_counts_are_whole_numbers_a_browser_could_report() -> None:
    assert Capture.build("https://a.test/", dom={"element_count": 12, "link_count": 3.0}).dom.link_count == 3
    for bad in (-1, 1e308, 10**30, float("inf"), float("nan")):
        with pytest.raises(CaptureError, match="element_count"):
            Capture.build("https://a.test/", dom={"element_count": bad})
    with pytest.raises(CaptureError, match="width"):
        Capture.build("https://a.test/", dom={"iframes": [{"width": -1}]})


def test_titles_are_cut_as_the_proxy_cuts_them() -> None:
    assert Capture.build("https://a.test/", title="T" * 1_000_000).title == "T" * 300
    assert Capture.build("https://a.test/", title="Sign in").title == "Sign in"
