"""Recorded blocks and one-time tokens, and linking scripts to the pages that loaded them."""

from __future__ import annotations

import time

from malwaresnipper.addon.bypass import BypassTokens
from malwaresnipper.addon.linking import PageLinker, script_urls


def test_token_is_single_use_and_bound_to_its_client_block_and_action():
    tokens = BypassTokens()
    block = tokens.record_block("https://bad.example/", "10.0.0.1", reasons=("phishing",))
    assert tokens.block(block, "10.0.0.2") is None  # another client cannot even see it
    token = tokens.mint(block, "proceed", "10.0.0.1")
    assert tokens.redeem(token, "proceed", "10.0.0.2") is None  # wrong client: spent and refused
    assert tokens.redeem(token, "proceed", "10.0.0.1") is None  # already spent
    token = tokens.mint(block, "proceed", "10.0.0.1")
    assert tokens.redeem(token, "allow", "10.0.0.1") is None  # minted for another action
    token = tokens.mint(block, "proceed", "10.0.0.1")
    granted = tokens.redeem(token, "proceed", "10.0.0.1")
    assert granted is not None and granted.url == "https://bad.example/" and granted.reasons == ("phishing",)
    assert tokens.redeem(token, "proceed", "10.0.0.1") is None
    assert tokens.redeem("forged", "proceed", "10.0.0.1") is None


def test_a_blocklisted_page_cannot_be_allowed_even_with_a_token():
    tokens = BypassTokens()
    block = tokens.record_block("https://listed.example/", "c", may_allow=False)
    assert tokens.redeem(tokens.mint(block, "allow", "c"), "allow", "c") is None
    assert tokens.redeem(tokens.mint(block, "proceed", "c"), "proceed", "c") is not None


def test_expired_token_block_and_pass():
    tokens = BypassTokens(token_ttl_s=0.01, pass_ttl_s=0.01, block_ttl_s=0.01)
    block = tokens.record_block("https://bad.example/", "c")
    token = tokens.mint(block, "proceed", "c")
    time.sleep(0.02)
    assert tokens.redeem(token, "proceed", "c") is None and tokens.block(block, "c") is None
    tokens.allow_once("https://bad.example/", "c")
    time.sleep(0.02)
    assert tokens.take_pass("https://bad.example/", "c") is False


def test_pass_is_once_per_url_and_client():
    tokens = BypassTokens()
    tokens.allow_once("https://bad.example/", "c")
    assert tokens.take_pass("https://bad.example/other", "c") is False
    assert tokens.take_pass("https://bad.example/", "d") is False
    assert tokens.take_pass("https://bad.example/", "c") is True
    assert tokens.take_pass("https://bad.example/", "c") is False


def test_script_urls_resolve_relative_and_base_href():
    html = """<html><head><base href="https://cdn.example/lib/">
    <script src="a.js"></script><script src='/b.js#x'></script><script src=//other.example/c.js></script>
    <script src="data:text/javascript,alert(1)"></script><script>inline()</script></head></html>"""
    assert script_urls(html, "https://site.example/page") == [
        "https://cdn.example/lib/a.js", "https://cdn.example/b.js", "https://other.example/c.js",
    ]


def test_script_is_linked_by_referer_then_by_connection():
    linker = PageLinker()
    linker.page_seen("https://site.example/page#top", "conn-1", "scan-1")
    assert linker.page_for(referer="https://site.example/page", client_id=None).scan_id == "scan-1"
    assert linker.page_for(referer=None, client_id="conn-1").url == "https://site.example/page"
    unknown = linker.page_for(referer="https://elsewhere.example/", client_id="conn-9")
    assert unknown.url == "https://elsewhere.example/" and unknown.scan_id is None
    assert linker.page_for(referer=None, client_id="conn-9") is None


def test_known_scripts_go_into_the_page_capture_and_memory_is_bounded():
    linker = PageLinker(max_script_bytes=1000)
    linker.script_seen("https://site.example/app.js", "var a = 1;")
    page = '<script src="/app.js"></script><script src="/unknown.js"></script>'
    assert linker.known_scripts(page, "https://site.example/") == [
        {"url": "https://site.example/app.js", "text": "var a = 1;", "inline": False}
    ]
    for i in range(20):
        linker.script_seen(f"https://site.example/{i}.js", "x" * 200)
    assert linker._script_bytes <= 1000
    assert linker.known_scripts(page, "https://site.example/") == []
