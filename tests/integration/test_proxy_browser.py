"""A real headless Chromium through the gateway (block mode), trusting the CA by its SPKI hash.

Checks what only a browser shows: the block page renders under its strict CSP without a single
violation, the page's external script is replaced by the inert one (its console.warn appears),
and the three buttons work as plain links/forms.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from proxy_support import Route, Upstream, default_routes, make_self_signed, start_gateway

from malwaresnipper.addon.certs import ensure_ca

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    cert, key = make_self_signed(tmp)
    routes = default_routes(b"\0")
    routes["/start.html"] = Route(b'<html><body><a id="go" href="/dropper.html">invoice</a></body></html>', "text/html")
    upstream = Upstream(routes)
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"])
    spki = ensure_ca(gw.confdir).spki_sha256_b64  # the CA mitmdump created, as `malwaresnipper ca` prints it
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            proxy={"server": f"http://127.0.0.1:{gw.proxy_port}", "bypass": "<-loopback>"},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--proxy-bypass-list=<-loopback>", f"--ignore-certificate-errors-spki-list={spki}"],
        )
        try:
            yield browser, gw, upstream
        finally:
            browser.close()
            gw.stop()
            upstream.stop()


def test_block_page_renders_under_its_csp_and_proceed_once_works(setup):
    browser, gw, upstream = setup
    page = browser.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    start = upstream.url("/start.html", tls=True)
    page.goto(start)
    page.click("#go")
    page.wait_for_selector("text=MalwareSnipper blocked this page")
    assert page.get_attribute("text=Go back", "href") == start  # back to the referring page
    assert upstream.url("/dropper.html", tls=True) in page.inner_text(".url")
    assert page.locator("li").count() >= 1
    assert not [m for m in messages if "Content Security Policy" in m], messages
    # the style survived the CSP (pinned by hash): the heading is red, not the default black
    color = page.eval_on_selector("h1", "e => getComputedStyle(e).color")
    assert color == "rgb(183, 28, 28)", color
    page.click("text=Proceed once")
    page.wait_for_load_state()
    assert page.url == upstream.url("/dropper.html", tls=True)
    assert page.title() == "Your invoice"  # the real page, once
    page.reload()
    page.wait_for_selector("text=MalwareSnipper blocked this page")  # and blocked again
    page.close()


def test_inert_script_warns_in_the_console_and_always_allow_sticks(setup):
    browser, gw, upstream = setup
    page = browser.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(upstream.url("/app.html", tls=True))
    page.wait_for_timeout(500)
    assert any("MalwareSnipper blocked the script" in m and "/dl.js" in m for m in messages), messages
    page.goto(upstream.url("/dropper.html?case=allow", tls=True))
    page.wait_for_selector("text=Always allow this site")
    page.click("text=Always allow this site")
    page.wait_for_load_state()
    assert page.title() == "Your invoice"
    page.goto(upstream.url("/dropper.html?case=after-allow", tls=True))
    assert page.title() == "Your invoice"
    gw.api("/api/v1/lists/allow", method="DELETE", params={"entry": "127.0.0.1"})
    page.close()
