"""The extension's send/skip rules (extension/lib/policy.js), run in real Chromium.

The rules decide what leaves the browser, so they are checked case by case in the engine that
runs them: the module is imported into the extension's own options page.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "extension"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]
pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

GATEWAY = "http://127.0.0.1:5000"
BASE = {"enabled": True, "gatewayOrigins": [GATEWAY, "http://gateway.example:8443"], "pausedSites": ["paused.example", "*.quiet.example"],
        "allowEntries": [{"entry": "trusted.example", "kind": "domain"}, {"entry": "https://one.example/page", "kind": "url"}]}

CASES: list[tuple[str, dict[str, Any], str]] = [
    # (url, context overrides, expected reason; "" means it is sent)
    ("https://www.example.com/login", {}, ""),
    ("http://benign.test:8080/", {}, ""),
    ("https://8.8.8.8/", {}, ""),
    ("https://[2001:4860:4860::8888]/", {}, ""),
    ("https://172.32.0.1/", {}, ""),
    ("https://100.128.0.1/", {}, ""),
    ("https://www.example.com/", {"enabled": False}, "protection is off"),
    ("chrome://settings/", {}, "chrome: pages are never sent"),
    ("about:blank", {}, "about: pages are never sent"),
    ("file:///etc/passwd", {}, "file: pages are never sent"),
    ("chrome-extension://abc/popup.html", {}, "chrome-extension: pages are never sent"),
    ("ftp://example.com/", {}, "ftp: pages are never sent"),
    ("data:text/html,hi", {}, "data: pages are never sent"),
    ("https://www.example.com/", {"incognito": True}, "incognito tab"),
    ("https://www.example.com/", {"incognito": True, "scanIncognito": True}, ""),
    ("http://127.0.0.1:5000/dashboard/", {}, "this is the gateway itself"),
    ("http://gateway.example:8443/", {}, "this is the gateway itself"),
    ("http://gateway.example/", {}, ""),
    ("http://127.0.0.1:8000/", {}, "local or private address"),
    ("http://127.9.9.9/", {}, "local or private address"),
    ("http://2130706433/", {}, "local or private address"),
    ("http://0x7f.1/", {}, "local or private address"),
    ("http://localhost:3000/", {}, "local or private address"),
    ("http://app.localhost/", {}, "local or private address"),
    ("http://[::1]:8080/", {}, "local or private address"),
    ("http://[::ffff:127.0.0.1]/", {}, "local or private address"),
    ("http://[::ffff:192.168.0.1]/", {}, "local or private address"),
    ("http://[fd00::1]/", {}, "local or private address"),
    ("http://[fe80::1]/", {}, "local or private address"),
    ("http://10.0.0.1/", {}, "local or private address"),
    ("http://172.16.5.4/", {}, "local or private address"),
    ("http://172.31.255.255/", {}, "local or private address"),
    ("http://192.168.1.1/admin", {}, "local or private address"),
    ("http://169.254.169.254/latest/meta-data/", {}, "local or private address"),
    ("http://100.64.0.1/", {}, "local or private address"),
    ("http://0.0.0.0/", {}, "local or private address"),
    ("http://router/", {}, "local or private address"),
    ("http://printer.local/", {}, "local or private address"),
    ("http://nas.home.arpa/", {}, "local or private address"),
    ("https://paused.example/x", {}, "paused on this site"),
    ("https://www.paused.example/x", {}, "paused on this site"),
    ("https://notpaused.example/x", {}, ""),
    ("https://a.quiet.example/", {}, "paused on this site"),
    ("https://trusted.example/", {}, "on the gateway's allowlist"),
    ("https://shop.trusted.example/", {}, "on the gateway's allowlist"),
    ("https://untrusted.example/", {}, ""),
    ("https://one.example/page#top", {}, "on the gateway's allowlist"),
    ("https://one.example/other", {}, ""),
]


#: The extension's own contexts (Chromium 150 hides a tab's URL from chrome.tabs without the "tabs"
#: permission, even the extension's own page; runtime.getContexts still names it).
OPTIONS_TAB_OPEN = ("async () => (await chrome.runtime.getContexts({contextTypes: ['TAB']}))"
                    ".some((c) => (c.documentUrl || '').endsWith('/options.html'))")


@pytest.fixture(scope="module")
def options_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="ms-ext-policy-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", f"--disable-extensions-except={EXTENSION}", f"--load-extension={EXTENSION}",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
        # On install the extension opens its options page; wait for it, or it may take over our tab.
        deadline = time.monotonic() + 15
        while not worker.evaluate(OPTIONS_TAB_OPEN):
            assert time.monotonic() < deadline, "the extension did not open its options page on install"
            time.sleep(0.05)
        page = context.new_page()
        page.goto(worker.url.replace("worker.js", "popup.html"))
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def test_capture_policy_table(options_page: Any) -> None:
    results = options_page.evaluate(
        """async ([cases, base]) => {
            const policy = await import('./lib/policy.js');
            return cases.map(([url, extra]) => policy.capturePolicy(url, {...base, ...extra}));
        }""",
        [[[url, extra] for url, extra, _ in CASES], BASE],
    )
    wrong = [
        (url, extra, expected, got)
        for (url, extra, expected), got in zip(CASES, results, strict=False)
        if got != {"capture": expected == "", "reason": expected}
    ]
    assert not wrong, "\n".join(f"{url} {extra}: expected {expected!r}, got {got}" for url, extra, expected, got in wrong)


def test_paused_site_entries_are_normalised(options_page: Any) -> None:
    normalised = options_page.evaluate(
        """async (entries) => { const p = await import('./lib/policy.js'); return entries.map(p.normalizeSite); }""",
        ["Example.COM", "*.example.org", "https://shop.example.net/path?q=1", "  ", "# comment", "http://[::1]:80/"],
    )
    assert normalised == ["example.com", "example.org", "shop.example.net", "", "", "[::1]"]
