"""Lists changed while verdicts are cached, through a real mitmdump in block mode.

The gateway reuses a verdict for the same URL and bytes (``[proxy] dedupe_window_s``). A list
change must end that reuse: a verdict computed under the old lists says nothing about the new
ones. Each test first gets a BENIGN verdict cached, then blocklists (through the real API) a
script's sha256, a script's URL or the domain a script comes from, and loads the same bytes
again: they must now be blocked. And a URL entry is matched at request time the way the engine
matches it (host case, default port), before any upstream connection.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator

import pytest

from helpers.proxy import TOKEN, Gateway, Route, Upstream, make_self_signed, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SCRIPT = b"var basket = []; function add(item) { basket.push(item); return basket.length; }\n"
LIB = b"function price(n) { return (n * 1.2).toFixed(2); }\n"
CDN = b"window.shopReady = function () { return true; };\n"
BLOCKED_SCRIPT = b"/* MalwareSnipper blocked this script"


def _page(title: str, script_src: str) -> bytes:
    return (f'<!DOCTYPE html><html><head><title>{title}</title><script src="{script_src}"></script></head>'
            f"<body><h1>{title}</h1><p>Plain text about products and prices.</p></body></html>").encode()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("upstream")
    cert, key = make_self_signed(tmp)
    server = Upstream({
        "/lists/basket.js": Route(SCRIPT, "application/javascript"),
        "/lists/lib.js": Route(LIB, "application/javascript"),
        "/lists/page.html": Route(_page("Shop", "/lists/lib.js"), "text/html; charset=utf-8"),
        "/lists/cdn.js": Route(CDN, "application/javascript"),
        "/lists/Login": Route(_page("Sign in", "/lists/none.js"), "text/html; charset=utf-8"),
    })
    server.start(cert, key)
    # a page on "localhost" whose script comes from another host, 127.0.0.1 (the same server)
    server.routes["/lists/cross.html"] = Route(_page("Cross", f"http://127.0.0.1:{server.http_port}/lists/cdn.js"),
                                               "text/html; charset=utf-8")
    server.cert = cert
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("lists")
    gateway = start_gateway(tmp, upstream.cert, options=["malwaresnipper_mode=block",
                                                         "malwaresnipper_budget_ms=15000"])
    yield gateway
    gateway.stop()


def _get(gw: Gateway, url: str):  # noqa: ANN202 - helpers.proxy.Response
    with gw.session() as s:
        return s.get(url, timeout=60)


def _scanned_benign(gw: Gateway, url: str) -> None:
    """Load ``url`` twice: scanned BENIGN, then the same bytes again (a cached verdict)."""
    for _ in range(2):
        r = _get(gw, url)
        assert r.status_code == 200 and r.headers.get("x-malwaresnipper", "").startswith("BENIGN"), \
            (r.status_code, r.headers.get("x-malwaresnipper"), gw.log())


def _block(gw: Gateway, entry: str, kind: str) -> None:
    body = json.dumps({"entry": entry, "kind": kind, "note": "test"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{gw.api_port}/api/v1/lists/block", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as resp:
        assert resp.status == 201


def _unblock(gw: Gateway, entry: str) -> None:
    gw.api("/api/v1/lists/block", method="DELETE", params={"entry": entry})


def test_a_script_sha256_blocklisted_after_its_verdict_was_cached_is_blocked(gw: Gateway, upstream: Upstream) -> None:
    url = upstream.url("/lists/basket.js")
    _scanned_benign(gw, url)
    digest = hashlib.sha256(SCRIPT).hexdigest()
    _block(gw, digest, "sha256")
    try:
        again = _get(gw, url)
        assert again.content.startswith(BLOCKED_SCRIPT), (again.headers.get("x-malwaresnipper"), again.content[:80])
    finally:
        _unblock(gw, digest)
    assert _get(gw, url).content == SCRIPT  # unlisted again: the script is served as it is


def test_a_page_whose_script_url_is_blocklisted_after_its_verdict_was_cached_is_blocked(
        gw: Gateway, upstream: Upstream) -> None:
    _get(gw, upstream.url("/lists/lib.js"))  # the script first: the page's scan then includes it
    page = upstream.url("/lists/page.html")
    _scanned_benign(gw, page)
    entry = upstream.url("/lists/lib.js")
    _block(gw, entry, "url")
    try:
        again = _get(gw, page)
        assert again.status_code == 403 and "MalwareSnipper blocked this page" in again.text, \
            (again.status_code, again.headers.get("x-malwaresnipper"))
    finally:
        _unblock(gw, entry)


def test_a_page_whose_script_domain_is_blocklisted_after_its_verdict_was_cached_is_blocked(
        gw: Gateway, upstream: Upstream) -> None:
    _get(gw, f"http://127.0.0.1:{upstream.http_port}/lists/cdn.js")
    page = f"http://localhost:{upstream.http_port}/lists/cross.html"
    _scanned_benign(gw, page)
    _block(gw, "127.0.0.1", "domain")  # the script's host; the page's own host is "localhost"
    try:
        again = _get(gw, page)
        assert again.status_code == 403 and "MalwareSnipper blocked this page" in again.text, \
            (again.status_code, again.headers.get("x-malwaresnipper"))
    finally:
        _unblock(gw, "127.0.0.1")


def test_a_url_entry_matches_at_request_time_as_in_the_engine(gw: Gateway, upstream: Upstream) -> None:
    """``http://LocalHost:<port>/lists/Login`` names the same resource as the request for
    ``http://localhost:<port>/lists/Login``: it is refused before any upstream connection."""
    entry = f"http://LocalHost:{upstream.http_port}/lists/Login"
    _block(gw, entry, "url")
    try:
        r = _get(gw, f"http://localhost:{upstream.http_port}/lists/Login")
        assert r.status_code == 403 and "blocklist" in r.text
        assert upstream.hits["/lists/Login"] == 0, "blocked at request time, never fetched"
    finally:
        _unblock(gw, entry)
