"""Request bodies to Captures: the current body, the older extension body, and what is refused."""

from __future__ import annotations

import pytest

from malwaresnipper.engine.capture import CaptureLimits, Source
from malwaresnipper.server.captures import BadRequest, capture_from_body, is_legacy, parse_json_body

LIMITS = CaptureLimits()


def test_current_body_maps_every_field() -> None:
    cap = capture_from_body({
        "url": " https://shop.example/login ", "title": "Sign in", "html": "<p>x</p>",
        "scripts": [{"url": "https://cdn.example/a.js", "text": "a()", "inline": False}, {"text": "b()"}],
        "headers": {"content-type": "text/html"}, "content_type": "text/html",
        "dom": {"forms": [{"action": "/x", "has_password": True, "input_count": 2}], "element_count": 9},
        "unknown_future_field": 1,
    }, LIMITS)
    assert cap.url == "https://shop.example/login" and cap.source is Source.EXTENSION
    assert cap.title == "Sign in" and cap.html == "<p>x</p>"
    assert [(s.url, s.text, s.inline) for s in cap.scripts] == [("https://cdn.example/a.js", "a()", False), (None, "b()", True)]
    assert cap.header("Content-Type") == "text/html"
    assert cap.dom.forms[0].has_password and cap.dom.element_count == 9


def test_legacy_body_is_recognised_and_mapped() -> None:
    body = {"url": "http://old.example/", "page_title": "Old", "scripts": ["http://old.example/a.js"],
            "inline_scripts": ["var x;"], "dom_structure": {"element_count": 40, "link_count": 3},
            "forms": 2, "iframes": [{"src": "http://ads.example/", "hidden": True}]}
    assert is_legacy(body)
    cap = capture_from_body(body, LIMITS, legacy=True)
    assert cap.title == "Old"
    assert [(s.url, s.text) for s in cap.scripts] == [("http://old.example/a.js", None), (None, "var x;")]
    assert len(cap.dom.forms) == 2 and cap.dom.iframes[0].hidden and cap.dom.element_count == 40
    # On the current endpoint a string script is inline text, never a URL.
    assert capture_from_body({"url": "http://a.example/", "scripts": ["x()"]}, LIMITS).scripts[0].text == "x()"


def test_oversized_content_is_truncated_not_refused() -> None:
    cap = capture_from_body({"url": "https://a.example/", "html": "x" * 50},
                            CaptureLimits(max_page_chars=10), legacy=False)
    assert len(cap.html) == 10 and cap.truncations


@pytest.mark.parametrize(("body", "code"), [
    ([], "invalid_body"),
    ({}, "missing_url"),
    ({"url": None}, "missing_url"),
    ({"url": ["x"]}, "invalid_field"),
    ({"url": "mailto:a@b.example"}, "invalid_url"),
    ({"url": "https://"}, "invalid_url"),
    ({"url": "https://a.example/", "dom": []}, "invalid_field"),
    ({"url": "https://a.example/", "dom": {"iframes": [{"width": "wide"}]}}, "invalid_field"),
    ({"url": "https://a.example/", "headers": {"a": 1}}, "invalid_field"),
])
def test_refusals_say_what_is_wrong(body: object, code: str) -> None:
    with pytest.raises(BadRequest) as info:
        capture_from_body(body, LIMITS, legacy=True)
    assert info.value.code == code and info.value.status == 400 and info.value.message


@pytest.mark.parametrize(("raw", "where"), [
    (b'{"url": "https://a.example/", "title": "x\\ud800"}', '"title"'),
    (b'{"url": "https://a.example/\\uDFFF"}', '"url"'),
    (b'{"url": "https://a.example/", "scripts": [{"text": "ok"}, {"text": "\\udbff!"}]}', '"scripts"[1].text'),
    (b'{"url": "https://a.example/", "dom": {"\\ud800": 1}}', 'a key of "dom"'),
])
def test_unpaired_surrogates_are_refused_naming_where(raw: bytes, where: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_json_body(raw)
    assert info.value.code == "invalid_json" and info.value.status == 400
    assert info.value.message.startswith(where)


def test_paired_surrogates_and_lookalike_text_are_json_as_usual() -> None:
    assert parse_json_body(b'{"title": "\\ud83d\\ude00 \\\\ud800"}') == {"title": "\U0001f600 \\ud800"}
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(BadRequest, match="not a JSON number"):
            parse_json_body(b'{"dom": {"element_count": ' + constant + b"}}")
