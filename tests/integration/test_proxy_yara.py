"""YARA rules in the real gateway: compiled in the scan workers, they block a page through mitmdump
(and, in Chromium, an external script the rule matches never runs while the page's clean script
does); a rule file that does not compile stops the gateway at start-up with its file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.proxy import CHROMIUM, TOKEN, free_port, launch_chromium, make_self_signed, Route, start_gateway, Upstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CLI = [sys.executable, "-m", "malwaresnipper.cli.main"]

RULES = """
rule Campaign_Marker : script
{
    meta:
        description = "Script carries the marker of campaign 7781"
        severity = "high"
        strength = "behaviour"
        classification = "skimmer"
    strings:
        $marker = "zx-skim-7781"
    condition:
        $marker
}
"""
#: A shop page that loads a clean script and a skimmer; each announces itself in the title when it runs.
SHOP = (b'<!doctype html><html><head><title>Shop</title></head><body><h1 id="h">Shop</h1>'
        b'<script src="/clean.js"></script><script src="/skim.js"></script></body></html>')
CLEAN_JS = b'document.title += " clean-ran"; // spring-sale\n'
SKIM_JS = b'document.title += " skimmer-ran"; var campaign = "zx-skim-7781";\n'
PAGE = (b'<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>'
        b'<script>var campaign = "zx-skim-7781"; console.log(campaign);</script></body></html>')


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("upstream")
    cert, key = make_self_signed(tmp)
    server = Upstream({"/campaign.html": Route(PAGE, "text/html; charset=utf-8"),
                       "/plain.html": Route(PAGE.replace(b"zx-skim-7781", b"spring-sale"), "text/html"),
                       "/shop.html": Route(SHOP, "text/html; charset=utf-8"),
                       "/clean.js": Route(CLEAN_JS, "application/javascript"),
                       "/skim.js": Route(SKIM_JS, "application/javascript")})
    server.start(cert, key)
    server.cert = cert
    yield server
    server.stop()


def test_a_yara_rule_blocks_a_page_in_the_real_gateway(tmp_path: Path, upstream: Upstream) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "campaigns.yar").write_text(RULES, encoding="utf-8")
    gw = start_gateway(tmp_path, upstream.cert,
                       options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"],
                       config_toml='[engine.signatures]\nyara_files = ["rules"]\n')
    try:
        url = upstream.url("/campaign.html", tls=True)
        with gw.session() as s:
            blocked = s.get(url, timeout=30)
            plain = s.get(upstream.url("/plain.html", tls=True), timeout=30)
        assert blocked.status_code == 403 and "MalwareSnipper blocked this page" in blocked.text
        assert "zx-skim-7781" not in blocked.text
        assert plain.status_code == 200 and b"spring-sale" in plain.content
        summary = gw.wait_for_scan(url)
        assert summary["threat_level"] == "MALICIOUS" and summary["blocked"] is True
        detail = gw.api(f"/api/v1/scans/{summary['scan_id']}")
        indicator = next(i for i in detail["verdict"]["indicators"]
                         if i["id"] == "signatures.yara.campaigns.Campaign_Marker")
        assert (indicator["severity"], indicator["strength"]) == ("HIGH", "behaviour")
        assert indicator["evidence"][0]["location"] == "script #1 (inline)"
        assert indicator["evidence"][0]["snippet"].startswith("$marker: ")
    finally:
        gw.stop()


def test_in_chromium_the_script_a_yara_rule_matches_never_runs(tmp_path: Path, upstream: Upstream) -> None:
    """What the browser runs: the shop renders, its clean script runs, the skimmer is replaced."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright


    (tmp_path / "campaigns.yar").write_text(RULES, encoding="utf-8")
    gw = start_gateway(tmp_path, upstream.cert,
                       options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"],
                       config_toml='[engine.signatures]\nyara_files = ["campaigns.yar"]\n')
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw, gw)
            try:
                page = browser.new_page()
                messages: list[str] = []
                page.on("console", lambda m: messages.append(m.text))
                page.goto(upstream.url("/shop.html", tls=True))
                page.wait_for_function("document.title.includes('clean-ran')")
                page.wait_for_timeout(500)
                assert page.title() == "Shop clean-ran", page.title()  # the skimmer never ran
                assert page.inner_text("#h") == "Shop"
                assert any("MalwareSnipper blocked the script" in m and "/skim.js" in m for m in messages), messages
            finally:
                browser.close()
        summary = gw.wait_for_scan(upstream.url("/skim.js", tls=True))
        assert summary["blocked"] is True
        detail = gw.api(f"/api/v1/scans/{summary['scan_id']}")
        assert "signatures.yara.campaigns.Campaign_Marker" in {i["id"] for i in detail["verdict"]["indicators"]}
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("name", "text", "setting", "expected"),
    [
        ("bad.yar", 'rule Broken : script {\n  strings:\n    $a = "x"\n  condition:\n    $missing\n}\n',
         "yara_files", ":5:5: error[E025]: unknown pattern `$missing`"),
        ("bad.toml", '[[rule]]\nid = "r"\ndescription = "d"\nseverity = "loud"\ntarget = "url"\npatterns = ["x"]\n',
         "rule_files", ": rule 'r': bad severity"),
    ],
    ids=["yara", "toml"],
)
def test_a_rule_file_that_does_not_load_stops_the_gateway(
        tmp_path: Path, name: str, text: str, setting: str, expected: str) -> None:
    """Not a gateway that says it is ready while its workers can never build the engine."""
    bad = tmp_path / name
    bad.write_text(text)
    (tmp_path / "malwaresnipper.toml").write_text(f'[proxy]\nworkers = 1\n[engine.signatures]\n{setting} = ["{name}"]\n')
    env = dict(os.environ, MALWARESNIPPER_HOME=str(tmp_path / "home"), MALWARESNIPPER_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [*CLI, "run", "--listen-port", str(free_port()), "--api-port", str(free_port()), "--events-port",
         str(free_port()), "--confdir", str(tmp_path / "conf")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert f"{bad}{expected}" in out
    assert "gateway ready" not in out
