"""parse_html: the proxy path's DOM facts, scripts and visible text, and that it never raises."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malwaresnipper.engine.capture import Capture, sha256_text
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.features.html import ParsedPage, parse_html, refresh_target

PAGE_URL = "https://shop.example.com/account/login.html"

LOGIN_PAGE = """<!doctype html>
<html><head><title>  Sign in
 to  Example Shop </title>
<script>window.dataLayer = [];</script>
<script src="/static/app.js"></script>
<script src="https://cdn.other-cdn.net/lib.js"></script>
<script type="application/ld+json">{"@type": "Organization"}</script>
<script type="text/template"><div>template</div></script>
<style>body { color: red }</style>
<link rel="stylesheet" href="https://fonts.example-fonts.org/a.css">
</head>
<body>
<h1>Welcome back</h1>
<form action="/session" method="POST">
  <input type="email" name="email">
  <input type="PASSWORD" name="pw">
  <input type="hidden" name="csrf" value="x">
</form>
<form action="https://pay.example.com/charge">
  <input name="cc-number" autocomplete="cc-number">
  <input name="cvv">
</form>
<form action="mailto:thief@evil.test" style="display:none"><input name="q"></form>
<a href="/help">Help</a> <a href="https://www.example.com/about">About</a>
<a href="https://twitter.com/exampleshop">Twitter</a> <a href="#">Top</a>
<a href="javascript:void(0)">Menu</a>
<img src="/logo.png"><img src="https://ads.tracker.test/pixel.gif">
<noscript><iframe src="https://www.googletagmanager.com/ns.html" width="0" height="0"></iframe></noscript>
</body></html>
"""


def test_title_scripts_and_text() -> None:
    page = parse_html(LOGIN_PAGE, PAGE_URL)
    assert page.error is None
    assert page.title == "Sign in to Example Shop"
    assert [s.text for s in page.inline_scripts] == ["window.dataLayer = [];"]
    script = page.inline_scripts[0]
    assert script.inline and script.url is None
    assert script.sha256 == sha256_text("window.dataLayer = [];")
    assert page.external_scripts == (
        "https://shop.example.com/static/app.js",
        "https://cdn.other-cdn.net/lib.js",
    )
    assert "Welcome back" in page.text
    # Script, style and template bodies are not visible text.
    assert "dataLayer" not in page.text and "color: red" not in page.text
    assert page.dom.text_excerpt == page.text[:5000]


def test_forms() -> None:
    forms = parse_html(LOGIN_PAGE, PAGE_URL).dom.forms
    assert len(forms) == 3
    login, card, mail = forms
    assert login.action == "https://shop.example.com/session"  # resolved against the page
    assert login.method == "post" and login.has_password and not login.has_card
    assert login.input_count == 3 and not login.hidden
    assert card.has_card and not card.has_password and card.method == "get"
    assert card.action == "https://pay.example.com/charge"
    assert mail.action == "mailto:thief@evil.test" and mail.hidden


def test_links_and_resources_counted_by_registrable_domain() -> None:
    page = parse_html(LOGIN_PAGE, PAGE_URL)
    dom = page.dom
    assert dom.link_count == 5
    # www.example.com is another host but the same registrable domain: not external.
    assert dom.external_link_count == 1  # twitter.com
    assert page.null_link_count == 2
    # app.js, lib.js, a.css, logo.png, pixel.gif
    assert dom.resource_count == 5
    assert dom.external_resource_count == 3
    assert dict(page.external_domains)["twitter.com"] == 1


def test_noscript_iframe_is_not_an_element() -> None:
    # With scripting on (a real browser, the extension) <noscript> content is text.
    assert parse_html(LOGIN_PAGE, PAGE_URL).dom.iframes == ()


def test_hidden_iframes() -> None:
    html = """<body>
    <iframe src="https://a.test/1" width="0" height="0"></iframe>
    <iframe src="https://a.test/2" style="display: none"></iframe>
    <iframe src="https://a.test/3" style="visibility:hidden"></iframe>
    <iframe src="https://a.test/4" width="1px" height="1"></iframe>
    <iframe src="//a.test/5" hidden></iframe>
    <iframe src="https://a.test/6" width="600" height="400"></iframe>
    <iframe src="/7" style="width:100%"></iframe>
    </body>"""
    iframes = parse_html(html, "http://site.test/").dom.iframes
    assert [i.hidden for i in iframes] == [True, True, True, True, True, False, False]
    assert iframes[4].src == "http://a.test/5"
    assert iframes[6].src == "http://site.test/7"
    assert (iframes[5].width, iframes[5].height) == (600, 400)


def test_meta_refresh_right_click_and_auto_download() -> None:
    html = """<html><head><meta http-equiv="Refresh" content="0; URL='https://dl.test/setup.exe?x=1'">
    </head><body oncontextmenu="return false;">hi</body></html>"""
    dom = parse_html(html, "https://site.test/").dom
    assert dom.meta_refresh == "0; URL='https://dl.test/setup.exe?x=1'"
    assert dom.right_click_disabled
    assert dom.auto_download == "https://dl.test/setup.exe?x=1"

    clicked = """<a id="d" href="/files/invoice.zip" download>x</a>
    <script>document.getElementById('d').click();</script>"""
    assert parse_html(clicked, "https://site.test/p").dom.auto_download == "https://site.test/files/invoice.zip"

    plain = """<meta http-equiv="refresh" content="5;url=/next.html"><a href="/f.zip" download>get</a>"""
    dom = parse_html(plain, "https://site.test/").dom
    assert dom.auto_download is None and not dom.right_click_disabled
    assert refresh_target(dom.meta_refresh, "https://site.test/") == "https://site.test/next.html"


def test_contextmenu_blocked_from_script() -> None:
    html = "<script>document.addEventListener('contextmenu', function(e){ e.preventDefault(); });</script>"
    assert parse_html(html, "https://a.test/").dom.right_click_disabled


def test_base_href_changes_resolution() -> None:
    html = '<head><base href="https://cdn.other.test/x/"></head><script src="a.js"></script><a href="b">b</a>'
    page = parse_html(html, "https://site.test/")
    assert page.external_scripts == ("https://cdn.other.test/x/a.js",)
    assert page.dom.external_link_count == 1


def test_identity_inputs_and_orphan_password() -> None:
    html = """<div><input type=password name=p><input name="ssn"><input name="dob"><input name="otp_code"></div>"""
    page = parse_html(html, "https://a.test/")
    assert page.dom.forms == ()
    assert page.password_inputs == 1
    assert page.sensitive_inputs == 3


def test_vector_is_numeric_and_stable() -> None:
    page = parse_html(LOGIN_PAGE, PAGE_URL)
    vec = page.vector()
    assert all(isinstance(v, float) for v in vec.values())
    assert vec["form_count"] == 3.0
    assert vec["password_form_count"] == 1.0
    assert vec["external_form_action_count"] == 1.0  # the mailto: form; pay.example.com is same-site
    assert vec["external_link_ratio"] == pytest.approx(1 / 5)
    # The empty page has the same keys, all finite.
    empty = ParsedPage().vector()
    assert empty.keys() == vec.keys()
    assert all(v == v and abs(v) < 1e9 for v in empty.values())


@pytest.mark.parametrize(
    "html",
    [
        "",
        "<",
        "<<<>>>",
        "<form><input type=password",  # unterminated
        "<div>" * 20_000 + "deep" + "</div>" * 10,  # deeply nested, mostly unclosed
        "<table><tr><td><form action=x><td><input type=password></table>",
        "\x00\x01\x02<script>\x00</script>\ufffd\ud800",
        "<iframe width=99999999999999999999 height=-5 src='http://[::1'>",
        "<a href='http://[bad'>x</a><meta http-equiv=refresh content='0;url=http://[x'>",
    ],
)
def test_never_raises_on_broken_html(html: str) -> None:
    page = parse_html(html, "https://site.test/")
    assert isinstance(page, ParsedPage)
    assert isinstance(page.vector(), dict)


def test_binary_garbage() -> None:
    rng = random.Random(7)
    blob = bytes(rng.randrange(256) for _ in range(200_000)).decode("latin-1")
    page = parse_html(blob, "https://site.test/")
    assert isinstance(page, ParsedPage)


def test_two_megabyte_page() -> None:
    row = '<div class="r"><a href="https://ext.test/{0}">link {0}</a><img src="/i{0}.png"></div>\n'
    html = "<html><body>" + "".join(row.format(i) for i in range(24_000)) + "</body></html>"
    assert len(html) > 2_000_000
    page = parse_html(html, "https://site.test/")
    assert page.error is None
    assert page.dom.link_count == 24_000
    assert page.dom.external_link_count == 24_000
    assert page.dom.resource_count == 24_000


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=3000))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert isinstance(parse_html(text, "https://site.test/"), ParsedPage)


def test_features_uses_parsed_page() -> None:
    capture = Capture.build(PAGE_URL, html=LOGIN_PAGE)
    features = Features(capture)
    assert features.title == "Sign in to Example Shop"
    assert features.dom is not None and len(features.dom.forms) == 3
    assert [v.text for v in features.scripts] == ["window.dataLayer = [];"]
