"""The in-page notice's loader: where it goes, how the page's CSP is made to allow it (never
weakened otherwise), and the token that ties a replaced script to its page's notice."""

from __future__ import annotations

import base64
import hashlib
import re

from mitmproxy import http

from malwaresnipper.addon import pagenotice

PAGE = "https://shop.example/checkout"


def response(body: str, csp: list[str] | None = None, ctype: str = "text/html; charset=utf-8") -> http.Response:
    headers = [(b"content-type", ctype.encode())] + [(b"content-security-policy", c.encode()) for c in csp or []]
    return http.Response.make(200, body.encode(), headers)


def loader_hash() -> str:
    script = pagenotice.loader("https://shop.example")
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def test_loader_goes_first_in_head_and_carries_the_pages_token() -> None:
    resp = response('<!doctype html><html lang="en"><HEAD data-x=1><title>T</title></head>'
                    '<body><script>var x;</script></body></html>')
    assert pagenotice.inject(resp, PAGE)
    text = resp.text or ""
    assert text.startswith('<!doctype html><html lang="en"><HEAD data-x=1><script>(function(){')
    assert pagenotice.event_name("https://shop.example") in text
    assert "attachShadow" in text and "mode:'closed'" in text and pagenotice.NOTICE_URL in text
    assert text.index("</script>") < text.index("<title>")
    # without <head>, after <html>; without either, first
    bare = response('<p>hi</p><script src="/a.js"></script>')
    assert pagenotice.inject(bare, PAGE) and (bare.text or "").startswith("<script>(function(){")
    # a page that runs no script has nothing to replace: left alone
    static = response("<html><head><title>T</title></head><body>text</body></html>")
    assert not pagenotice.inject(static, PAGE)
    assert static.text == "<html><head><title>T</title></head><body>text</body></html>"


def test_not_html_is_left_alone() -> None:
    resp = response("<svg xmlns='http://www.w3.org/2000/svg'/>", ctype="image/svg+xml")
    assert not pagenotice.inject(resp, PAGE)
    assert resp.text == "<svg xmlns='http://www.w3.org/2000/svg'/>"


def test_tokens_are_per_origin_and_unguessable() -> None:
    a, b = pagenotice.token("https://shop.example"), pagenotice.token("https://other.example")
    assert a != b and re.fullmatch(r"[0-9a-f]{24}", a)
    assert pagenotice.origin_of("https://Shop.example/checkout?x=1") == "https://shop.example"
    assert pagenotice.origin_of("https://shop.example:8443/") == "https://shop.example:8443"
    assert pagenotice.origin_of("javascript:alert(1)") is None and pagenotice.origin_of(None) is None


def test_the_inert_scripts_trigger_names_the_referers_page() -> None:
    stub = http.Response.make(200, b"console.warn('blocked');\n", {"content-type": "application/javascript"})
    assert pagenotice.add_trigger(stub, "https://shop.example/", "https://cdn.evil/x.js?</script>")
    body = (stub.content or b"").decode()
    assert pagenotice.event_name("https://shop.example") in body
    assert "</script>" not in body  # the hostile URL is a safe JS string
    plain = http.Response.make(200, b"x", {})
    assert not pagenotice.add_trigger(plain, None, "https://cdn.evil/x.js") and plain.content == b"x"


def test_a_nonce_csp_lends_its_nonce_and_is_not_changed() -> None:
    csp = "script-src 'nonce-abc123' 'strict-dynamic'; object-src 'none'"
    resp = response("<html><head></head><script src=/a.js></script></html>", [csp])
    pagenotice.inject(resp, PAGE)
    assert '<script nonce="abc123">' in (resp.text or "")
    assert resp.headers.get_all("content-security-policy") == [csp]


def test_a_strict_csp_gets_the_loaders_hash_only() -> None:
    resp = response("<html><head></head><script src=/a.js></script></html>",
                    ["default-src 'self'; img-src *", "script-src 'none'"])
    pagenotice.inject(resp, PAGE)
    first, second = resp.headers.get_all("content-security-policy")
    digest = loader_hash()
    assert first == f"default-src 'self'; img-src *; script-src 'self' '{digest}'"
    assert second == f"script-src '{digest}'"
    hashed = response("<html><head></head><script src=/a.js></script></html>",
                      ["script-src 'self' 'sha256-AAAA' 'unsafe-inline'"])
    pagenotice.inject(hashed, PAGE)
    assert hashed.headers["content-security-policy"] == f"script-src 'self' 'sha256-AAAA' 'unsafe-inline' '{digest}'"


def test_unsafe_inline_or_no_csp_is_not_touched() -> None:
    for csp in ([], ["script-src 'self' 'unsafe-inline'"], ["img-src 'self'"]):
        resp = response("<html><head></head><script src=/a.js></script></html>", csp)
        pagenotice.inject(resp, PAGE)
        assert resp.headers.get_all("content-security-policy") == csp
        assert "<script>(function(){" in (resp.text or "")


def test_a_compressed_page_is_served_decoded_with_the_loader_and_a_broken_one_as_it_came() -> None:
    import gzip

    page = '<html><head><title>T</title></head><body><script src="/a.js"></script></body></html>'
    resp = response("")
    resp.headers["content-encoding"] = "gzip"
    resp.raw_content = gzip.compress(page.encode())
    assert pagenotice.inject(resp, PAGE)
    assert "content-encoding" not in resp.headers  # not compressed again on the event loop
    assert resp.raw_content is not None and resp.raw_content.startswith(b"<html><head><script>(function(){")
    assert resp.raw_content.endswith(b'<title>T</title></head><body><script src="/a.js"></script></body></html>')
    assert resp.headers["content-length"] == str(len(resp.raw_content))
    broken = response("")
    broken.headers["content-encoding"] = "gzip"
    broken.raw_content = b"<html><script>not gzip at all</script>"
    assert not pagenotice.inject(broken, PAGE)
    assert broken.headers["content-encoding"] == "gzip" and broken.raw_content == b"<html><script>not gzip at all</script>"
