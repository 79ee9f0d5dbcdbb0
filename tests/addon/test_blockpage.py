"""The block page and the inert script: escaped, script-free, and saying why."""

from __future__ import annotations

import base64
import hashlib
import re

from malwaresnipper.addon import blockpage

HOSTILE_URL = 'https://evil.example/"><script>alert(1)</script>?q=<img src=x onerror=alert(2)>'


def render(**kw):
    args = dict(url=HOSTILE_URL, reasons=[("critical", "Known <b>malware</b> domain")], risk_score=97.2,
                classification="malware", token="tok-123", referer=None)
    args.update(kw)
    return blockpage.render_block_page(**args)


def test_url_and_reasons_are_text_never_markup():
    page = render()
    assert "<script" not in page.lower()
    assert "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")  # only escaped occurrences
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Known &lt;b&gt;malware&lt;/b&gt; domain" in page
    assert "malware" in page and "97" in page


def test_three_ways_on_use_plain_forms_and_links():
    page = render(referer="https://news.example/article")
    assert 'href="https://news.example/article"' in page
    assert page.count('action="/__malwaresnipper__/proceed"') == 1
    assert page.count('action="/__malwaresnipper__/allow"') == 1
    assert page.count('value="tok-123"') == 2
    # a javascript: referer is never turned into a link
    assert "javascript:" not in render(referer="javascript:alert(1)")


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
