"""The shortcut removal in the model features does what the model card claims."""

from __future__ import annotations

import math
import re

import pytest

from malwaresnipper.engine.features.text import (
    JS_BIGRAM_CHARS,
    js_tokens,
    page_tokens,
    sanitize_html,
    scripts_in_markup,
    url_tokens,
)

FROZEN_LOGIN = """<html><head>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'">
<meta http-equiv="Memento-Datetime" content="Tue, 01 Jan 2019 00:00:00 GMT">
<link rel="original" href="https://example.com/login">
<link rel="stylesheet" href="resources/1a2b3c.css">
</head><body><?php echo $title; ?>{% csrf_token %}{{ form.errors }}
<a href="https://example.com/help" data-original-href="/help">Help</a>
<script>var tracker = 1;</script>
<form method="post"><input type="password" name="pw"></form></body></html>"""


def test_sanitize_removes_source_marks_and_scripts() -> None:
    clean = sanitize_html(FROZEN_LOGIN).lower()
    for mark in ("content-security-policy", "memento-datetime", 'rel="original"', "data-original-href",
                 "resources/", "<?php", "csrf_token", "form.errors", "<script", "tracker"):
        assert mark not in clean, mark
    # What a rendered page really shows stays.
    assert 'type="password"' in clean and "help" in clean


def test_page_tokens_do_not_see_php_or_freeze_dry() -> None:
    tokens = page_tokens(sanitize_html(FROZEN_LOGIN))
    assert "v:input.type=password" in tokens
    # Case-insensitive: the character 4-grams are upper case.
    assert not any(m in t.lower() for t in tokens for m in ("php", "memento", "original", "resources/", "csrf"))


def test_page_char_grams_never_collide_with_tokens() -> None:
    tokens = page_tokens(sanitize_html("<p>t:br w:ab</p><br><p>ab</p>"))
    assert "t:br" in tokens and "w:ab" in tokens and "T:BR" in tokens  # the gram is kept apart
    assert tokens["t:br"] == pytest.approx(math.log1p(1))


def test_url_tokens_see_host_labels_and_path_shape() -> None:
    tokens = url_tokens("https://secure.paypal.com-verify.example.net/a/b/login.php?user=1&token=2")
    assert {"hl0:example", "hl1:com-verify", "ext:php", "qk:user", "qk:token", "pb:b login"} <= tokens.keys()


def test_url_tokens_ignore_the_scheme() -> None:
    assert url_tokens("http://login.example.com/a/b?c=1") == url_tokens("https://login.example.com/a/b?c=1")


def test_markup_scripts_are_extracted() -> None:
    assert scripts_in_markup("<p>x</p><script src=a.js></script><SCRIPT>eval(1)</SCRIPT>") == ["eval(1)"]


def test_js_tokens_are_bounded_for_huge_scripts() -> None:
    tokens = js_tokens("var a = 1;\n" * 500_000)  # 5.5 MB: only head and tail are read
    assert tokens["var"] > 0 and len(tokens) < 50


def test_sanitize_skips_passes_only_when_they_cannot_match() -> None:
    # re.IGNORECASE folds long s (U+017F), dotless i (U+0131), dotted I (U+0130) and the Kelvin
    # sign to ASCII letters; the literal pre-checks must still let those pages through the passes.
    for page in ('<img src="reſources/a.png">', '<a data-orıginal-href="/x">x</a>',
                 '<img src="RESOURCES/a.png"><p>é</p>', '<a DATA-ORIGINAL-HREF="/x">x</a>'):
        clean = sanitize_html(page)
        assert "ources/" not in clean.lower() and "ginal-href" not in clean.lower(), (page, clean)
    # Template tags need two characters: a lone brace (CSS, JSON) is left alone, {{ }} is cut.
    assert sanitize_html("<style>a{color:red}</style>") == "<style>a{color:red}</style>"
    assert "name" not in sanitize_html("<p>{{ name }}</p>")


def test_js_tokens_bigrams_stop_at_the_head_wherever_it_is_cut() -> None:
    # The head's tokens are shared with the full scan up to the last space; a head with no space
    # at all, or a token running across the head's end, must give the same bigrams as a rescan.
    pattern = re.compile(r"[A-Za-z_$][\w$]{0,40}|\d+|[^\w\s]{1,3}")
    for text in ("a" * (JS_BIGRAM_CHARS + 5) + " b c",
                 "x=1;" * (JS_BIGRAM_CHARS // 4) + "longname" * 20 + " tail",
                 "var q = 1; " * 1000 + "zz" * JS_BIGRAM_CHARS):
        tokens = js_tokens(text)
        head_tokens = pattern.findall(text[:JS_BIGRAM_CHARS])
        expected = {f"{a} {b}" for a, b in zip(head_tokens, head_tokens[1:], strict=False)}
        assert {k for k in tokens if " " in k} == expected
