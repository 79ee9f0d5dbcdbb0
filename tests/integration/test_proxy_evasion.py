"""Header and encoding tricks against block mode, in a real Chromium through a real mitmdump.

One gateway (block mode) and one headless Chromium serve the whole matrix. A test-only upstream
sends each trick of issue 13 item 3 with a page and a script that the engine rates MALICIOUS when
served plainly. Each payload first sets ``window.__pwned`` (and the title), so the test reads
from the browser whether it ran. For every trick the test asserts three things: the gateway
replaced the content (block page or inert script), Chromium did not run the payload, and the
history holds a MALICIOUS, blocked record. Benign controls of each kind pass untouched, and the
browser behaviours the scan rules rely on (an unknown coding renders the raw bytes, a script
served as an image never runs, a corrupt tail renders its head) are shown here too.
"""

from __future__ import annotations

import gzip
import os

import pytest
from helpers.proxy import BENIGN, CHROMIUM, DROPPER, launch_chromium, make_self_signed, Route, start_gateway, Upstream


pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MARK = "window.__pwned = (window.__pwned || 0) + 1; document.title = 'PWNED';\n"
EVIL_PAGE = DROPPER.replace(b"<script>", b"<script>" + MARK.encode(), 1)
EVIL_JS = EVIL_PAGE.split(b"<script>")[1].split(b"</script>")[0]
EVIL_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>' + EVIL_JS + b"</script></svg>"
BENIGN_JS = b"window.__ok = (window.__ok || 0) + 1; document.title = 'ok';"
BENIGN_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><circle cx="5" cy="5" r="4"/></svg>'
BOM = b"\xef\xbb\xbf"

#: trick name -> (content types, content-encoding, body transform) for pages and scripts
PAGE_TRICKS: dict[str, tuple[list[str], str | None, bytes]] = {
    "two-content-types": (["image/png", "text/html"], None, EVIL_PAGE),
    "svg-document": (["image/svg+xml"], None, EVIL_SVG),
    "coding-x-foo": (["text/html"], "x-foo", EVIL_PAGE),
    "coding-identity-foo": (["text/html"], "identity,foo", EVIL_PAGE),
    "charset-cp037": (["text/html; charset=cp037"], None, EVIL_PAGE),
    "charset-utf-32": (["text/html; charset=utf-32"], None, EVIL_PAGE),
    "charset-base64": (["text/html; charset=base64"], None, EVIL_PAGE),
    "charset-rot13": (["text/html; charset=rot13"], None, EVIL_PAGE),
    "bom-utf8-header-utf16le": (["text/html; charset=utf-16le"], None, BOM + EVIL_PAGE),
}
SCRIPT_TRICKS: dict[str, tuple[list[str], str | None, bytes]] = {
    **{f"as-{t.replace('/', '-')}": ([t], None, EVIL_JS) for t in (
        "application/json", "text/css", "font/woff2", "text/xml", "application/zip", "application/pdf", "text/html")},
    "two-content-types": (["image/png", "text/javascript"], None, EVIL_JS),
    "coding-x-foo": (["text/javascript"], "x-foo", EVIL_JS),
    "coding-identity-foo": (["text/javascript"], "identity,foo", EVIL_JS),
    "charset-cp037": (["text/javascript; charset=cp037"], None, EVIL_JS),
    "charset-utf-32": (["text/javascript; charset=utf-32"], None, EVIL_JS),
    "charset-base64": (["text/javascript; charset=base64"], None, EVIL_JS),
    "charset-rot13": (["text/javascript; charset=rot13"], None, EVIL_JS),
    "bom-utf8-header-utf16le": (["text/javascript; charset=utf-16le"], None, BOM + EVIL_JS),
}
BENIGN_PAGES = {
    "two-content-types": (["image/png", "text/html"], None, BENIGN),
    "svg-document": (["image/svg+xml"], None, BENIGN_SVG),
    "coding-x-foo": (["text/html"], "x-foo", BENIGN),
    "charset-cp037": (["text/html; charset=cp037"], None, BENIGN),
}
BENIGN_SCRIPTS = {
    "as-application-json": (["application/json"], None, BENIGN_JS),
    "as-text-html": (["text/html"], None, BENIGN_JS),
    "coding-x-foo": (["text/javascript"], "x-foo", BENIGN_JS),
    "bom-utf8-header-utf16le": (["text/javascript; charset=utf-16le"], None, BOM + BENIGN_JS),
}


def _route(content_types: list[str], encoding: str | None, body: bytes, *extra: tuple[str, str]) -> Route:
    return Route(body, None, encoding, headers=tuple(("Content-Type", t) for t in content_types) + extra)


def _bad_checksum(body: bytes) -> bytes:
    packed = gzip.compress(body)
    return packed[:-8] + bytes(b ^ 0xFF for b in packed[-8:-4]) + packed[-4:]


def _host(script: str) -> Route:
    return Route(f'<html><head><title>host</title></head><body><p>app</p><script src="{script}"></script>'
                 f"</body></html>".encode(), "text/html")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("evasion")
    cert, key = make_self_signed(tmp)
    routes: dict[str, Route] = {}
    for prefix, tricks in (("/evil", PAGE_TRICKS), ("/fine", BENIGN_PAGES)):
        for name, (types, encoding, body) in tricks.items():
            routes[f"{prefix}/page/{name}"] = _route(types, encoding, body)
    for prefix, tricks in (("/evil", SCRIPT_TRICKS), ("/fine", BENIGN_SCRIPTS)):
        for name, (types, encoding, body) in tricks.items():
            routes[f"{prefix}/script/{name}"] = _route(types, encoding, body)
            routes[f"{prefix}/host/{name}"] = _host(f"{prefix}/script/{name}")
    # a script the browser refuses to run (an image type) is not an unscanned pass
    routes["/evil/script/as-image-png"] = _route(["image/png"], None, EVIL_JS)
    routes["/evil/host/as-image-png"] = _host("/evil/script/as-image-png")
    # a gzip body whose checksum is wrong: Chromium renders it, a strict decoder gives up
    for prefix, body in (("/evil", EVIL_PAGE + os.urandom(20_000).hex().encode()), ("/fine", BENIGN)):
        routes[f"{prefix}/page/gzip-bad-checksum"] = _route(["text/html"], "gzip", _bad_checksum(body))
    # the cache must not replay fetch()'s unscanned JSON to a later <script src> of the same URL
    routes["/evil/cached.json"] = _route(["application/json"], None, EVIL_JS, ("Cache-Control", "max-age=3600"))
    routes["/evil/host/cache-replay"] = Route(
        b"<html><head><title>host</title></head><body><script>"
        b"fetch('/evil/cached.json').then(r => r.text()).then(() => {"
        b" const s = document.createElement('script'); s.src = '/evil/cached.json';"
        b" s.onload = s.onerror = () => { window.__done = true; }; document.body.appendChild(s); });"
        b"</script></body></html>", "text/html")
    upstream = Upstream(routes)
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=15000"])
    with sync_playwright() as pw:
        browser = launch_chromium(pw, gw)
        try:
            yield browser, gw, upstream
        finally:
            browser.close()
            gw.stop()
            upstream.stop()


def _open(browser, url: str, *, wait_for: str | None = None):
    context = browser.new_context()
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(url, wait_until="load")
    if wait_for:
        page.wait_for_function(wait_for, timeout=15_000)
    page.wait_for_timeout(300)
    state = page.evaluate("({pwned: window.__pwned || 0, ok: window.__ok || 0, title: document.title,"
                          " text: document.documentElement ? document.documentElement.textContent : ''})")
    context.close()
    return state, messages


@pytest.mark.parametrize("trick", sorted(PAGE_TRICKS))
def test_page_trick_is_blocked_and_not_rendered(setup, trick):
    browser, gw, upstream = setup
    url = upstream.url(f"/evil/page/{trick}", tls=True)
    state, _ = _open(browser, url)
    assert state["pwned"] == 0 and state["title"] != "PWNED", state
    assert "MalwareSnipper blocked this page" in state["text"], state
    record = gw.wait_for_scan(url)
    assert record["threat_level"] == "MALICIOUS" and record["blocked"] is True, record


@pytest.mark.parametrize("trick", sorted(SCRIPT_TRICKS))
def test_script_trick_is_replaced_and_not_run(setup, trick):
    browser, gw, upstream = setup
    state, messages = _open(browser, upstream.url(f"/evil/host/{trick}", tls=True))
    script_url = upstream.url(f"/evil/script/{trick}", tls=True)
    assert state["pwned"] == 0 and state["title"] == "host", state
    assert any("MalwareSnipper blocked the script" in m for m in messages), messages
    record = gw.wait_for_scan(script_url)
    assert record["threat_level"] == "MALICIOUS" and record["blocked"] is True, record


@pytest.mark.parametrize("trick", sorted(BENIGN_PAGES))
def test_benign_page_with_the_same_trick_passes(setup, trick):
    browser, gw, upstream = setup
    url = upstream.url(f"/fine/page/{trick}", tls=True)
    state, _ = _open(browser, url)
    assert "MalwareSnipper" not in state["text"]
    if trick != "svg-document":
        assert state["title"] == "Bread recipes" and "Sourdough" in state["text"], state
    assert gw.wait_for_scan(url)["threat_level"] == "BENIGN"


@pytest.mark.parametrize("trick", sorted(BENIGN_SCRIPTS))
def test_benign_script_with_the_same_trick_runs(setup, trick):
    browser, gw, upstream = setup
    state, messages = _open(browser, upstream.url(f"/fine/host/{trick}", tls=True))
    assert state["ok"] == 1 and state["title"] == "ok", (state, messages)
    assert gw.wait_for_scan(upstream.url(f"/fine/script/{trick}", tls=True))["threat_level"] == "BENIGN"


def test_a_script_served_as_an_image_is_neither_run_by_chromium_nor_an_unscanned_pass(setup):
    browser, gw, upstream = setup
    state, _ = _open(browser, upstream.url("/evil/host/as-image-png", tls=True))
    assert state["pwned"] == 0 and state["title"] == "host"  # Chromium refuses image/* scripts
    assert upstream.hits["/evil/script/as-image-png"] == 1
    url = upstream.url("/evil/script/as-image-png", tls=True)
    assert not [i for i in gw.api("/api/v1/scans?limit=200")["items"] if i["url"] == url]


def test_a_corrupt_gzip_body_is_scanned_as_far_as_it_decodes(setup):
    browser, gw, upstream = setup
    fine, _ = _open(browser, upstream.url("/fine/page/gzip-bad-checksum", tls=True))
    assert "Sourdough" in fine["text"], fine  # Chromium renders a body with a wrong checksum
    url = upstream.url("/evil/page/gzip-bad-checksum", tls=True)
    state, _ = _open(browser, url)
    assert state["pwned"] == 0 and "MalwareSnipper blocked this page" in state["text"], state
    record = gw.wait_for_scan(url)
    assert record["blocked"] is True
    detail = gw.api(f"/api/v1/scans/{record['scan_id']}")
    assert "gzip" in str(detail["verdict"]), "the verdict says the body was only partly decoded"


def test_the_cache_does_not_replay_unscanned_json_to_a_script(setup):
    browser, gw, upstream = setup
    state, messages = _open(browser, upstream.url("/evil/host/cache-replay", tls=True), wait_for="window.__done")
    assert state["pwned"] == 0, (state, messages)
    assert upstream.hits["/evil/cached.json"] == 2  # Vary: Sec-Fetch-Dest sent the script to the network
    assert any("MalwareSnipper blocked the script" in m for m in messages), messages
    assert gw.wait_for_scan(upstream.url("/evil/cached.json", tls=True))["blocked"] is True
