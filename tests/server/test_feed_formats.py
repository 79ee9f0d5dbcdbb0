"""The feed parsers: one per format, bytes in, entries naming the feed out; bad bodies refused."""

from __future__ import annotations

import json

import pytest

from malwaresnipper.engine.lists import ALLOWLISTED
from malwaresnipper.server.feed_formats import (
    FEED_FORMATS,
    FeedFormatError,
    FeedParse,
    check_source,
    parse_feed,
)
from helpers.feeds import HOSTS, OPENPHISH, PHISHTANK_CSV, PHISHTANK_JSON, SHA, THREATFOX, URLHAUS


def parse(fmt: str, data: bytes, *, kind: str = "block", max_errors: int = 0) -> FeedParse:
    return parse_feed(fmt, data, name="t", kind=kind, max_errors=max_errors)


def test_urlhaus_csv_reads_urls_and_threat_column() -> None:
    out = parse("urlhaus_csv", URLHAUS)
    assert set(out.entries.urls) == {"//evil.example/bins/x86", "//phish.example/login?a=1"}
    assert out.entries.urls["//evil.example/bins/x86"].classification == "malware"
    assert out.entries.urls["//phish.example/login?a=1"].classification == "phishing"
    hit = out.entries.urls["//evil.example/bins/x86"]
    assert hit.source == "feed t" and hit.where == "feed t"


def test_openphish_and_plain_lists() -> None:
    out = parse("openphish", OPENPHISH)
    assert set(out.entries.urls) == {"//login-bank.example/verify", "//paypa1.example/signin/"}
    assert {h.classification for h in out.entries.urls.values()} == {"phishing"}
    assert set(parse("domains", b"# c\nEvil.Example\n*.bad.example\n").entries.domains) == {"evil.example", "bad.example"}
    assert set(parse("urls", b"http://x.example/a\n").entries.urls) == {"//x.example/a"}
    assert set(parse("sha256", (SHA + "\n").encode()).entries.sha256) == {SHA}


def test_plain_list_refuses_the_wrong_kind_of_entry() -> None:
    with pytest.raises(FeedFormatError, match="is a url, not a domain"):
        parse("domains", b"evil.example\nhttp://x.example/a\n")
    out = parse("domains", b"evil.example\nhttp://x.example/a\n", max_errors=1)
    assert set(out.entries.domains) == {"evil.example"} and out.errors == 1


def test_phishtank_csv_and_json() -> None:
    out = parse("phishtank_csv", PHISHTANK_CSV)
    assert set(out.entries.urls) == {"//steal.example/a", "//steal.example/b?x=1,2"}
    out = parse("phishtank_json", PHISHTANK_JSON)
    assert set(out.entries.urls) == {"//steal.example/a", "//steal.example/b"}
    assert {h.classification for h in out.entries.urls.values()} == {"phishing"}
    with pytest.raises(FeedFormatError, match="not a PhishTank CSV header"):
        parse("phishtank_csv", b"1,https://steal.example/a\n")


def test_threatfox_json_export_and_api_forms() -> None:
    out = parse("threatfox_json", THREATFOX)
    assert set(out.entries.domains) == {"c2.example", "203.0.113.7"}
    assert set(out.entries.urls) == {"//drop.example/p.exe"}
    assert set(out.entries.sha256) == {SHA}
    assert out.skipped == 1  # the md5 names nothing the gateway can match
    api = json.dumps({"query_status": "ok", "data": [{"ioc": "c2.example", "ioc_type": "domain"}]}).encode()
    assert set(parse("threatfox_json", api).entries.domains) == {"c2.example"}


def test_hosts_file_names_not_addresses() -> None:
    out = parse("hosts", HOSTS)
    assert set(out.entries.domains) == {"ads.example", "tracker.example"}


def test_allow_feed_entries_read_as_allowlisted() -> None:
    out = parse("domains", b"good.example\n", kind="allow")
    assert out.entries.domains["good.example"].classification == ALLOWLISTED


@pytest.mark.parametrize("fmt", FEED_FORMATS)
def test_an_html_page_is_refused_by_every_format(fmt: str) -> None:
    page = b"<!DOCTYPE html><html><head><title>Rate limited</title></head><body>try later</body></html>"
    with pytest.raises(FeedFormatError, match="HTML page"):
        parse(fmt, page, max_errors=1000)


@pytest.mark.parametrize("fmt", FEED_FORMATS)
def test_an_empty_body_is_refused(fmt: str) -> None:
    with pytest.raises(FeedFormatError):
        parse(fmt, b"", max_errors=1000)


def test_truncated_json_is_refused_with_a_hint() -> None:
    with pytest.raises(FeedFormatError, match="truncated"):
        parse("phishtank_json", PHISHTANK_JSON[:-20])
    with pytest.raises(FeedFormatError, match="truncated"):
        parse("threatfox_json", THREATFOX[: len(THREATFOX) // 2])


def test_error_budget_counts_unreadable_rows() -> None:
    body = b"evil.example\nnot a domain!\nbad..example\nok.example\n"
    with pytest.raises(FeedFormatError, match="more than 1 unreadable rows"):
        parse("domains", body, max_errors=1)
    out = parse("domains", body, max_errors=2)
    assert out.errors == 2 and set(out.entries.domains) == {"evil.example", "ok.example"}
    assert out.error_samples[0].startswith("line 2:")


def test_check_source() -> None:
    assert check_source("https://urlhaus.abuse.ch/downloads/csv_recent/") == "url"
    assert check_source("lists/feed.txt") == "file"
    assert check_source("http://127.0.0.1:8000/f", allow_http_loopback=True) == "url"
    with pytest.raises(ValueError, match="plain http"):
        check_source("http://127.0.0.1:8000/f")
    with pytest.raises(ValueError, match="plain http"):
        check_source("http://feeds.example/f", allow_http_loopback=True)
    with pytest.raises(ValueError, match="only https"):
        check_source("ftp://feeds.example/f")
    with pytest.raises(ValueError):
        check_source("")
