"""Every kind of bad request gets its 4xx JSON error saying what to fix, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from helpers.api import Gateway, small_page

pytestmark = pytest.mark.integration

CAP = 100_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gw-bad"),
                 config=f"[server]\nmax_body_bytes = {CAP}\nrate_limit_per_minute = 0\n")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def raw(text: str) -> bytes:
    return text.encode()


# (method, path, body: dict | bytes | None, status, error code)
BAD = [
    ("POST", "/api/v1/scans", raw("{not json"), 400, "invalid_json"),
    ("POST", "/api/v1/scans", raw(""), 400, "invalid_json"),
    ("POST", "/api/v1/scans", b"\xff\xfe\x00", 400, "invalid_json"),
    ("POST", "/api/v1/scans", raw("[1, 2]"), 400, "invalid_body"),
    ("POST", "/api/v1/scans", raw("[" * 50_000 + "]" * 50_000), 400, "invalid_json"),
    ("POST", "/api/v1/scans", raw('"https://example.com/"'), 400, "invalid_body"),
    ("POST", "/api/v1/scans", {"title": "no url"}, 400, "missing_url"),
    ("POST", "/api/v1/scans", {"url": ""}, 400, "missing_url"),
    ("POST", "/api/v1/scans", {"url": 42}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "ftp://files.example.com/x"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "javascript:alert(1)"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "file:///etc/passwd"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "title": 5}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "html": ["x"]}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "scripts": "alert(1)"}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "scripts": [5]}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "scripts": [{"inline": True}]}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "headers": [1, 2]}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"forms": "many"}}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"element_count": "lots"}}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "page_url": "data:,x"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans?wait=maybe", small_page("w"), 400, "invalid_parameter"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "html": "x" * CAP}, 413, "body_too_large"),
    ("POST", "/api/scan-realtime", {"url": "https://a.example/", "inline_scripts": "x"}, 400, "invalid_field"),
    ("POST", "/api/scan-realtime", {"url": "https://a.example/", "forms": -1}, 400, "invalid_field"),
    ("POST", "/api/scan-realtime", {"page_title": "no url"}, 400, "missing_url"),
    ("GET", "/api/v1/scans?limit=0", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/scans?limit=abc", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/scans?level=EVIL", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/scans?source=email", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/scans?since=yesterday", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/scans/0000", None, 404, "not_found"),
    ("GET", "/api/v1/export?format=xlsx", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/stats?bucket_s=1", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/nothing-here", None, 404, "not_found"),
    ("PUT", "/api/v1/scans", {"url": "https://a.example/"}, 405, "method_not_allowed"),
    ("POST", "/api/v1/lists/allow", {"entry": "https://a.example/x"}, 400, "invalid_field"),
    ("POST", "/api/v1/lists/allow", {"entry": "a.example", "kind": "ip"}, 400, "invalid_field"),
    ("POST", "/api/v1/lists/allow", {"entry": "deadbeef", "kind": "sha256"}, 400, "invalid_field"),
    ("POST", "/api/v1/lists/allow", {"kind": "domain"}, 400, "missing_entry"),
    ("POST", "/api/v1/lists/allow", {"entry": "a.example", "note": 7}, 400, "invalid_field"),
    ("POST", "/api/v1/lists/grey", {"entry": "a.example"}, 404, "not_found"),
    ("DELETE", "/api/v1/lists/block", None, 400, "missing_entry"),
    # Unpaired surrogates (valid JSON escapes, not Unicode): 400, never a 500 from the store.
    ("POST", "/api/v1/scans", raw('{"url": "https://a.example/", "title": "x\\ud800y"}'), 400, "invalid_json"),
    ("POST", "/api/v1/scans", raw('{"url": "https://a.example/\\udfff"}'), 400, "invalid_json"),
    ("POST", "/api/scan-realtime", raw('{"url": "https://a.example/", "page_title": "\\uDBFF"}'), 400, "invalid_json"),
    ("POST", "/api/v1/lists/block", raw('{"entry": "a.example", "note": "\\ud83d"}'), 400, "invalid_json"),
    ("POST", "/api/v1/scans", raw('{"url": "https://a.example/", "dom": {"element_count": Infinity}}'), 400,
     "invalid_json"),
    ("POST", "/api/v1/scans", raw('{"url": "https://a.example/", "dom": {"link_count": NaN}}'), 400, "invalid_json"),
    # URLs no browser would load, or that parsers read differently.
    ("POST", "/api/v1/scans", {"url": "http://exa mple.com/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://%zz/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://a@b@c/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://1.2.3.4.5/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://a.example/x\u0000y"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://a.exa\u0001mple/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://a.example/x\ty"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://evil.example\\@bank.example/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "http://a.example:65536/"}, 400, "invalid_url"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "page_url": "http://exa mple.com/"}, 400, "invalid_url"),
    ("POST", "/api/v1/lists/block", {"entry": "http://%zz/", "kind": "url"}, 400, "invalid_url"),
    # Counts a browser cannot report.
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"element_count": -1}}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"link_count": 1e308}}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"resource_count": 10**30}}, 400, "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"iframes": [{"width": -5}]}}, 400,
     "invalid_field"),
    ("POST", "/api/v1/scans", {"url": "https://a.example/", "dom": {"forms": [{"input_count": 1e300}]}}, 400,
     "invalid_field"),
    ("POST", "/api/scan-realtime", {"url": "https://a.example/", "dom_structure": {"element_count": -3}}, 400,
     "invalid_field"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD,
                         ids=[f"{m} {p} {s} {c} #{i}" for i, (m, p, _b, s, c) in enumerate(BAD)])
async def test_bad_request_gets_its_error(gateway: Gateway, method: str, path: str, body: object,
                                          status: int, code: str) -> None:
    async with aiohttp.ClientSession() as s:
        data = body if isinstance(body, bytes) else None
        got, answer = await gateway.call(s, method, path, None if data is not None else body, data=data,
                                         headers={"Content-Type": "application/json"})
    assert got == status, answer
    assert answer["error"]["code"] == code
    assert len(answer["error"]["message"]) > 10  # a sentence, not just a code
    if status == 413:
        assert str(CAP) in answer["error"]["message"]


async def test_auth_failures(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {gateway.token}"},
                        {"Authorization": "Bearer"}):
            async with s.post(gateway.base_url + "/api/v1/scans", json=small_page("auth"), headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        status, answer = await gateway.call(s, "POST", "/api/v1/scans", small_page("origin"),
                                            headers={"Origin": "https://evil.example"})
        assert status == 403 and answer["error"]["code"] == "forbidden_origin"


async def test_nothing_was_stored_by_bad_requests(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        _, stats = await gateway.call(s, "GET", "/api/v1/stats")
        _, scans = await gateway.call(s, "GET", "/api/v1/scans")
        _, allow = await gateway.call(s, "GET", "/api/v1/lists/allow")
    assert stats["total"] == 0 and scans["total"] == 0 and allow["items"] == []


async def test_too_many_requests_get_429(tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = Gateway(tmp_path_factory.mktemp("gw-rate"), config="[server]\nrate_limit_per_minute = 5\n")
    gw.start()
    try:
        async with aiohttp.ClientSession() as s:
            statuses = []
            for i in range(8):
                status, answer = await gw.call(s, "POST", "/api/v1/scans", small_page(f"rate{i}"))
                statuses.append(status)
            assert statuses[:5] == [202] * 5
            assert statuses[5:] == [429] * 3
            assert answer["error"]["code"] == "rate_limited"
            # Health stays reachable for monitoring.
            status, _ = await gw.call(s, "GET", "/api/v1/health", auth=False)
            assert status == 200
    finally:
        gw.stop()
    # Exactly the accepted scans are in history (read after restart from the file).
    gw.start()
    try:
        async with aiohttp.ClientSession() as s:
            # The limiter is per process: a fresh start has a full bucket again.
            _, scans = await gw.call(s, "GET", "/api/v1/scans")
        assert scans["total"] == 5
    finally:
        gw.stop()



async def test_chunked_body_over_the_cap_gets_413(gateway: Gateway) -> None:
    """Without a Content-Length the cap is hit while reading; still a clean 413, nothing stored."""
    async def body():
        yield b'{"url": "https://chunked.example/", "html": "'
        for _ in range(CAP // 1000 + 5):
            yield b"x" * 1000
        yield b'"}'

    async with aiohttp.ClientSession() as s:
        async with s.post(gateway.base_url + "/api/v1/scans", data=body(),
                          headers={**gateway.headers(), "Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "body_too_large"
        _, scans = await gateway.call(s, "GET", "/api/v1/scans?q=chunked")
    assert scans["total"] == 0
