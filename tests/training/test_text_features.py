"""The shortcut removal in the model features does what the model card claims."""

from __future__ import annotations

from malwaresnipper.engine.features.text import js_tokens, page_tokens, sanitize_html, scripts_in_markup, url_tokens

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
    assert not any("php" in t or "memento" in t or "original" in t for t in tokens)


def test_url_tokens_ignore_the_scheme() -> None:
    assert url_tokens("http://login.example.com/a/b?c=1") == url_tokens("https://login.example.com/a/b?c=1")


def test_markup_scripts_are_extracted() -> None:
    assert scripts_in_markup("<p>x</p><script src=a.js></script><SCRIPT>eval(1)</SCRIPT>") == ["eval(1)"]


def test_js_tokens_are_bounded_for_huge_scripts() -> None:
    tokens = js_tokens("var a = 1;\n" * 500_000)  # 5.5 MB: only head and tail are read
    assert tokens["var"] > 0 and len(tokens) < 50
