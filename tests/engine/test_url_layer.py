"""The url layer: silent on ordinary URLs, explained indicators on the tricks phishers use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig, Reputation
from malwaresnipper.engine.errors import CaptureError
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.reputation import ReputationLayer
from malwaresnipper.engine.layers.url import UrlLayer
from malwaresnipper.engine.results import LayerResult, Severity

LAYER = UrlLayer(EngineConfig())
REPUTATION = ReputationLayer(EngineConfig())


def analyze(url: str, layer: UrlLayer = LAYER) -> LayerResult:
    capture = Capture.build(url)
    return layer.analyze(capture, Features(capture))


def ids(result: LayerResult) -> set[str]:
    return {i.id for i in result.indicators}


@pytest.mark.parametrize(
    "url",
    [
        "https://www.google.com/search?q=x",
        "https://github.com/org/repo",
        "https://cdn.jsdelivr.net/npm/jquery@3.7.1/dist/jquery.min.js",
        "https://d3c3cq33003psk.cloudfront.net/static/js/main.8f3a2b1c.chunk.js",
        "https://ajax.googleapis.com/ajax/libs/jquery/3.5.1/jquery.min.js",
        "https://fonts.gstatic.com/s/roboto/v30/KFOmCnqEu92Fr1Mu4mxK.woff2",
        "https://www.wikipedia.org/",
        "https://en.wikipedia.org/wiki/Phishing",
        "https://login.microsoftonline.com/common/oauth2/authorize?client_id=1",
        "https://accounts.google.com/signin/v2/identifier",
        "https://secure.chase.com/web/auth/dashboard",
        "https://www.paypal.com/signin?returnUri=%2Fmyaccount",
        "https://www.bbc.co.uk/news/technology-12345678",
        "https://stackoverflow.com/questions/123/how-to-parse-a-url",
        "https://www.amazon.co.uk/gp/cart/view.html",
        "http://localhost:8080/",
        "http://192.168.1.1/admin",
    ],
)
def test_ordinary_urls_score_zero(url: str) -> None:
    result = analyze(url)
    assert result.score == 0.0, [(i.id, i.title) for i in result.indicators]
    assert result.indicators == ()
    assert result.layer == "url" and result.confidence == 1.0


@pytest.mark.parametrize(
    ("url", "indicator", "severity", "evidence"),
    [
        ("http://93.184.216.34/login", "url.ip_host", Severity.MEDIUM, "93.184.216.34"),
        ("http://3232235777/", "url.obfuscated_ip_host", Severity.HIGH, "3232235777"),
        ("http://0x5DB8D822/x", "url.obfuscated_ip_host", Severity.HIGH, "0x5DB8D822"),
        ("http://[2606:4700:4700::1111]/", "url.ip_host", Severity.MEDIUM, "2606:4700"),
        ("http://www.paypal.com@evil.example/", "url.userinfo_in_authority", Severity.HIGH, "www.paypal.com@"),
        ("https://xn--pypal-4ve.com/", "url.mixed_script_host", Severity.HIGH, "xn--pypal-4ve.com"),
        ("https://xn--80ak6aa92e.com/", "url.punycode_host", Severity.LOW, "xn--80ak6aa92e.com"),
        ("http://a.b.c.d.example.com/", "url.deep_subdomains", Severity.MEDIUM, "a.b.c.d"),
        ("http://www.paypal.com.example.net/", "url.domain_in_subdomain", Severity.MEDIUM, "www.paypal.com"),
        ("http://" + "x" * 70 + ".com/", "url.long_host", Severity.LOW, "xxxx"),
        ("http://a-b-c-d-e.com/", "url.many_hyphens", Severity.LOW, "a-b-c-d-e.com"),
        ("http://shop.example.tk/", "url.risky_tld", Severity.MEDIUM, ".tk"),
        ("http://shop.example.xyz/", "url.risky_tld", Severity.LOW, ".xyz"),
        ("https://bit.ly/3abcDEF", "url.shortener", Severity.LOW, "bit.ly"),
        ("http://secure-login-update.com/", "url.credential_words_domain", Severity.MEDIUM, "secure"),
        ("http://login.example.com/", "url.credential_words_host", Severity.LOW, "login"),
        ("http://example.com/account/verify", "url.credential_words_path", Severity.LOW, "account"),
        ("http://example.com/paypal/signin", "url.brand_and_credential_path", Severity.MEDIUM, "paypal"),
        ("http://example.com/www.paypal.com/x", "url.domain_in_path", Severity.LOW, "www.paypal.com"),
        ("http://example.com:4444/", "url.odd_port", Severity.LOW, ":4444"),
        ("http://example.com/files/invoice.exe", "url.risky_download", Severity.MEDIUM, ".exe"),
        ("http://example.com/wp-includes/css/bank/index.php", "url.page_in_cms_folder", Severity.MEDIUM, "wp-includes"),
        ("http://example.com/x.php?email=bob@corp.example", "url.email_in_url", Severity.LOW, "@"),
        ("http://host.duckdns.org/", "url.dynamic_dns", Severity.MEDIUM, "duckdns.org"),
        ("http://someone.000webhostapp.com/", "url.free_hosting", Severity.LOW, "000webhostapp.com"),
        ("data:text/html;base64,PGgxPkhpPC9oMT4=", "url.data_scheme", Severity.HIGH, "data:text/html"),
        ("javascript:alert(document.cookie)", "url.javascript_scheme", Severity.HIGH, "javascript:"),
    ],
)
def test_each_heuristic_is_explained(url: str, indicator: str, severity: Severity, evidence: str) -> None:
    result = analyze(url)
    found = [i for i in result.indicators if i.id == indicator]
    assert found, (indicator, sorted(ids(result)))
    ind = found[0]
    assert ind.severity is severity
    assert ind.layer == "url" and ind.title
    assert ind.evidence and ind.evidence[0].location == "url"
    assert evidence.lower() in ind.evidence[0].snippet.lower()
    assert result.score > 0


def test_data_images_are_not_pages() -> None:
    assert analyze("data:image/png;base64,iVBORw0KGgo=").score == 0.0


def test_private_ips_are_local_devices_not_tricks() -> None:
    assert "url.ip_host" not in ids(analyze("http://10.0.0.1/"))
    # ... but a disguised private address is still a disguise.
    assert "url.obfuscated_ip_host" in ids(analyze("http://0x7f.1/"))


def test_brand_hosts_may_say_login() -> None:
    for url in ("https://login.live.com/login.srf", "https://signin.aws.amazon.com/signin",
                "https://secure.bankofamerica.com/login/sign-in/signOnV2Screen.go"):
        result = analyze(url)
        assert not {"url.credential_words_host", "url.credential_words_path"} & ids(result), url


def test_news_slugs_naming_brands_are_not_phishing_paths() -> None:
    result = analyze("http://news.example.com/2015/05/google-says-no-panda-update-happened-this-weekend")
    assert "url.brand_and_credential_path" not in ids(result)
    assert result.score < 40


def test_static_assets_in_wordpress_are_not_kits() -> None:
    result = analyze("https://blog.example.com/wp-content/plugins/facebook-button/css/login.css")
    assert "url.page_in_cms_folder" not in ids(result)
    assert result.score < 20


def test_signs_accumulate_with_noisy_or() -> None:
    one = analyze("http://example.tk/")
    many = analyze("http://secure-paypal.com.account-verify.example.tk/signin/webscr.php?cmd=_login")
    assert 0 < one.score < many.score <= 100
    assert many.score >= 70
    # The layer's score is the noisy-OR of the points it reports.
    keep = 1.0
    for points in many.details["points"].values():
        keep *= 1 - points / 100
    assert many.score == pytest.approx(100 * (1 - keep))


def test_user_brands_file_is_respected(tmp_path) -> None:
    brands = tmp_path / "brands.txt"
    brands.write_text("# our intranet\nexample-corp.com corp-login.example\n", encoding="utf-8")
    config = EngineConfig(base_dir=str(tmp_path), reputation=Reputation(protected_brands_file="brands.txt"))
    layer = UrlLayer(config)
    assert "url.credential_words_domain" in ids(analyze("http://corp-login.net/", layer))
    assert analyze("https://corp-login.example/login", layer).score == 0.0
    assert analyze("https://sso.example-corp.com/signin", layer).score == 0.0


def test_result_round_trips() -> None:
    result = analyze("http://93.184.216.34:8081/paypal/login.php?email=a@b.example")
    assert LayerResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    assert all(len(e.snippet) <= 200 for i in result.indicators for e in i.evidence)


@settings(max_examples=200, deadline=None)
@given(host=st.text(min_size=1, max_size=60), path=st.text(max_size=200))
def test_arbitrary_urls_never_raise(host: str, path: str) -> None:
    try:
        capture = Capture.build(f"http://{host}/{path}")
    except CaptureError:
        return  # Capture.build rejects it with a clear error; nothing reaches the layers
    features = Features(capture)
    for layer in (LAYER, REPUTATION):
        result = layer.analyze(capture, features)
        assert 0.0 <= result.score <= 100.0
        assert all(len(e.snippet) <= 200 for i in result.indicators for e in i.evidence)
