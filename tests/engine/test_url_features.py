"""URL feature extraction: correct facts, stable numeric names, and no exception on any input."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malwaresnipper.engine.features.url import (
    UrlFeatures,
    decode_punycode,
    entropy,
    extract_url_features,
    feature_names,
    ip_literal_kind,
)


def test_ordinary_url_parts() -> None:
    f = extract_url_features("https://www.Example.co.uk:8443/a/b/login.php?x=1&y=2#frag")
    assert f.scheme == "https"
    assert f.host == "www.example.co.uk"
    assert f.registrable_domain == "example.co.uk"
    assert f.domain_label == "example"
    assert f.public_suffix == "co.uk"
    assert f.tld == "uk"
    assert f.subdomain == "www" and f.subdomain_depth == 1
    assert f.port == 8443
    assert f.path == "/a/b/login.php" and f.path_depth == 3
    assert f.query == "x=1&y=2" and f.query_param_count == 2
    assert f.file_extension == "php"
    assert f.credential_words_path == ("login",)
    assert not f.is_ip and not f.userinfo and not f.parse_error


@pytest.mark.parametrize(
    ("url", "kind", "private"),
    [
        ("http://93.184.216.34/", "ipv4", False),
        ("http://192.168.1.1/admin", "ipv4", True),
        ("http://3232235777/", "integer", True),  # 192.168.1.1 as one number
        ("http://1572395042/", "integer", False),
        ("http://0x5DB8D822/", "hex", False),
        ("http://0300.0250.0001.0001/", "octal", True),
        ("http://0x7f.1/", "mixed", True),
        ("http://[2606:4700:4700::1111]:8080/", "ipv6", False),
        ("http://[::1]/", "ipv6", True),
        ("http://example.com/", "", False),
        ("http://1.example.com/", "", False),
    ],
)
def test_ip_literal_hosts(url: str, kind: str, private: bool) -> None:
    f = extract_url_features(url)
    assert f.ip_kind == kind
    assert f.is_ip is bool(kind)
    assert f.ip_private is private


def test_ip_literal_kind_rejects_names() -> None:
    assert ip_literal_kind("0x.example") == ("", False)
    assert ip_literal_kind("1.2.3.4.5") == ("", False)


def test_punycode_and_mixed_script() -> None:
    f = extract_url_features("https://xn--pypal-4ve.com/")  # "pаypal" with a Cyrillic а
    assert f.punycode and f.non_ascii_host and f.mixed_script
    assert f.host_unicode == "p\u0430ypal.com"
    assert decode_punycode("xn--pypal-4ve.com") == "p\u0430ypal.com"
    g = extract_url_features("https://\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444/")  # пример.рф
    assert g.non_ascii_host and g.host.startswith("xn--") and not g.mixed_script
    assert not extract_url_features("https://example.com/").punycode


def test_userinfo_trick() -> None:
    f = extract_url_features("http://www.paypal.com@evil.example/login")
    assert f.host == "evil.example"
    assert f.userinfo == "www.paypal.com" and f.at_in_authority
    assert not f.brand_domain


def test_subdomains_brands_and_words() -> None:
    f = extract_url_features("http://secure-paypal.com.account.evil.net/signin/webscr?cmd=_login")
    assert f.registrable_domain == "evil.net"
    assert f.subdomain_depth == 3
    assert f.tld_in_subdomain
    assert f.brand_in_subdomain == ("paypal",)
    assert set(f.credential_words_host) == {"secure", "account"}
    assert {"signin", "webscr", "login"} <= set(f.credential_words_path)
    real = extract_url_features("https://www.paypal.com/signin")
    assert real.brand_domain and real.credential_words_host == () and real.brand_in_path == ()


def test_brand_inside_a_label_only_at_word_edges() -> None:
    assert extract_url_features("http://paypalsecure.com/").brand_in_domain_label == ("paypal",)
    assert extract_url_features("http://paypal-login.com/").brand_in_domain_label == ("paypal",)
    assert extract_url_features("http://cbsinteractive.com/").brand_in_domain_label == ()


def test_platforms_tlds_and_downloads() -> None:
    assert extract_url_features("https://bit.ly/abc").shortener
    assert extract_url_features("http://x.duckdns.org/").dynamic_dns == "duckdns.org"
    assert extract_url_features("http://x.000webhostapp.com/").free_hosting == "000webhostapp.com"
    f = extract_url_features("http://evil.tk/files/setup.exe")
    assert f.free_tld and f.risky_tld and f.risky_extension and f.file_extension == "exe"
    assert not extract_url_features("https://example.com/a.png").risky_extension


def test_cms_folder_pages_and_email() -> None:
    assert extract_url_features("http://a.com/wp-includes/css/boa/index.php").cms_folder_page
    assert extract_url_features("http://a.com/wp-content/x/login/").cms_folder_page
    assert not extract_url_features("http://a.com/wp-content/uploads/pic.jpg").cms_folder_page
    assert extract_url_features("http://a.com/.well-known/office/index.html").cms_folder_page
    assert not extract_url_features("http://a.com/.well-known/acme-challenge/tok").cms_folder_page
    assert extract_url_features("http://a.com/x.php?email=bob%40corp.com").email_in_url
    assert not extract_url_features("http://a.com/x.php?q=at").email_in_url


def test_scheme_less_and_non_web_schemes() -> None:
    f = extract_url_features("www.example.com/files/a.bin")
    assert f.scheme == "http" and f.host == "www.example.com" and f.risky_extension
    d = extract_url_features("data:text/html;base64,PGgxPg==")
    assert d.scheme == "data" and d.host == "" and d.path.startswith("text/html")
    j = extract_url_features("javascript:alert(1)")
    assert j.scheme == "javascript" and j.host == ""


def test_lengths_entropy_and_ratios() -> None:
    f = extract_url_features("http://a1b2.example.com/0123456789")
    assert f.url_length == len("http://a1b2.example.com/0123456789")
    assert f.host_length == len("a1b2.example.com")
    assert f.path_digit_ratio == pytest.approx(10 / 11)
    assert 0 < f.host_digit_ratio < 0.2
    assert entropy("aaaa") == 0.0
    assert entropy("abcd") == pytest.approx(2.0)
    assert entropy("") == 0.0
    long_text = "".join(chr(97 + i % 26) for i in range(10_000))
    assert entropy(long_text) == pytest.approx(math.log2(26), rel=1e-3)


def test_vector_names_are_stable_and_numeric() -> None:
    names = feature_names()
    assert len(names) == len(set(names)) >= 40
    for url in ("https://www.google.com/search?q=x", "http://3232235777/", "data:,x", "", "%%%"):
        vector = extract_url_features(url).vector()
        assert list(vector) == names
        assert all(isinstance(v, float) and math.isfinite(v) for v in vector.values())
    v = extract_url_features("http://1.2.3.4:8080/login").vector()
    assert v["is_ip"] == 1.0 and v["has_port"] == 1.0 and v["credential_words_path"] == 1.0


@pytest.mark.parametrize("url", ["https://www.example.com/a?b=c", "data:text/html,x", "javascript:x", "%%%"])
def test_every_field_is_set(url: str) -> None:
    """The fast constructor fills the instance dict directly: it must hold every field."""
    f = extract_url_features(url)
    assert set(vars(f)) == {field.name for field in dataclasses.fields(UrlFeatures)}


def test_features_are_frozen_and_picklable() -> None:
    f = extract_url_features("https://www.example.com/a?b=c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.host = "other"  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(f))
    assert copy == f and copy.vector() == f.vector()
    assert isinstance(f, UrlFeatures)


@pytest.mark.parametrize(
    "garbage",
    ["", " ", "http://", "http://[::1", "http://a:99999/", "http://a:port/", "://x", "\x00\xff\ud800",
     "http://" + "a." * 400 + "com", "http://ex ample.com/%zz", "http://@/", "h" * 70_000, "http://xn--/",
     "http://xn--zz-.com/", "http://0x/", "http://999.999.999.999/"],
)
def test_garbage_never_raises(garbage: str) -> None:
    f = extract_url_features(garbage)
    assert isinstance(f, UrlFeatures)
    assert len(f.vector()) == len(feature_names())


def test_bad_port_is_noted() -> None:
    assert extract_url_features("http://a.com:99999/").parse_error == "invalid port"
    assert extract_url_features("http://a.com:99999/").port is None


def test_non_string_input_never_raises() -> None:
    assert isinstance(extract_url_features(None), UrlFeatures)
    assert isinstance(extract_url_features(b"http://x"), UrlFeatures)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    f = extract_url_features(text)
    assert all(math.isfinite(v) for v in f.vector().values())


@settings(max_examples=200, deadline=None)
@given(host=st.text(max_size=60), path=st.text(max_size=120))
def test_arbitrary_hosts_and_paths_never_raise(host: str, path: str) -> None:
    f = extract_url_features(f"https://{host}/{path}")
    assert f.scheme == "https"
    assert all(math.isfinite(v) for v in f.vector().values())
