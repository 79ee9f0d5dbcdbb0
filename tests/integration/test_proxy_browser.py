"""A real headless Chromium through the gateway (block mode), trusting the CA by its SPKI hash.

Checks what only a browser shows: the block page renders under its strict CSP without a single
violation, the page's external script is replaced by the inert one (its console.warn appears),
the ways past a block work as plain links and forms confirmed on the gateway's own origin, and a
site's own scripts cannot use them to let the site through.
"""

from __future__ import annotations


import pytest
from helpers.proxy import CHROMIUM, default_routes, launch_chromium, make_self_signed, Route, start_gateway, Upstream


pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
#: A benign-looking page of the attacker's site whose script tries every way a page can reach to
#: get its own blocked page (/dropper.html) let through, then reports what it got in its title.
ATTACK_PAGE = rb"""<!DOCTYPE html><html><head><title>Recipes</title></head><body>
<p>Our favourite recipes</p><button id="more">More recipes</button><script>
const seen = [];
const grab = (text, re) => ((text || "").match(re) || [])[1];
async function attack() {
  const copy = await (await fetch("/dropper.html?attack=fetch")).text();
  const token = grab(copy, /name="token" value="([^"]+)"/), block = grab(copy, /block=([\w-]+)/);
  seen.push("fetch:" + (token ? "token" : "no-token") + ":" + (block ? "block" : "no-block"));
  for (const action of ["proceed", "allow"]) {  // the old control path, with whatever it found
    const r = await fetch("/__malwaresnipper__/" + action, {method: "POST", body: new URLSearchParams({token: token || "x"})});
    seen.push("old-" + action + ":" + r.status);
  }
  try {
    const r = await fetch("http://malwaresnipper.invalid/confirm?action=allow&block=" + (block || "x"));
    seen.push("confirm-read:" + ((await r.text()).includes("token") ? "token" : "no-token"));
  } catch (e) { seen.push("confirm-read:refused"); }
  try {
    await fetch("http://malwaresnipper.invalid/confirm", {method: "POST", mode: "no-cors",
      body: new URLSearchParams({block: block || "x", action: "allow", token: "guessed"})});
    seen.push("confirm-post:sent");
  } catch (e) { seen.push("confirm-post:refused"); }
  document.title = "attack done " + seen.join(" ");
}
attack();
document.getElementById("more").onclick = () => {  // with the user's click: a same-origin popup
  const popup = window.open("/dropper.html?attack=popup");
  setTimeout(() => {
    let block = null;
    try { block = grab(popup.document.body.innerHTML, /block=([\w-]+)/); } catch (e) {}
    document.title = "popup " + (block ? "block" : "no-block");
    if (block) location.href = "http://malwaresnipper.invalid/confirm?action=allow&block=" + block;
  }, 3000);
};
</script></body></html>"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("browser")
    cert, key = make_self_signed(tmp)
    routes = default_routes(b"\0")
    routes["/start.html"] = Route(b'<html><body><a id="go" href="/dropper.html">invoice</a></body></html>', "text/html")
    routes["/recipes.html"] = Route(ATTACK_PAGE, "text/html")
    upstream = Upstream(routes)
    upstream.start(cert, key)
    gw = start_gateway(tmp, cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=10000"])
    with sync_playwright() as pw:
        browser = launch_chromium(pw, gw)
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
    # "Go back" is the one button in sight; the way on waits behind "Details", as in Chrome
    assert page.is_visible("text=Go back") and not page.is_visible("text=Proceed once to this page")
    page.click("summary")
    page.click("text=Proceed once to this page")
    page.wait_for_selector("text=Open this blocked page once?")  # the gateway's own page ...
    assert page.url.startswith("http://malwaresnipper.invalid/confirm?")
    with page.expect_navigation():
        page.click("button:has-text('Proceed once')")  # ... where the user confirms
    assert page.url == upstream.url("/dropper.html", tls=True), page.content()
    assert page.title() == "Your invoice"  # the real page, once
    page.reload()
    page.wait_for_selector("text=MalwareSnipper blocked this page")  # and blocked again
    page.close()


@pytest.mark.parametrize("tls", [True, False])
def test_a_sites_own_script_cannot_let_its_blocked_pages_through(setup, tls):
    """The attack that worked before: a page's script fetched one of its site's blocked pages,
    read the token from it and posted it to the control path: the site was allowlisted."""
    browser, gw, upstream = setup
    page = browser.new_page()
    page.goto(upstream.url("/recipes.html", tls=tls))
    page.wait_for_function("document.title.startsWith('attack done')", timeout=30_000)
    report = page.title()
    assert "fetch:no-token" in report, report  # the block page carries nothing that authorises
    assert "fetch:no-token:no-block" in report or not tls, report  # a fetch() is no navigation
    assert "confirm-read:token" not in report, report  # the gateway's page is unreadable to the site
    # with a click of the user's, its popup is a navigation: the block id is there to read, but
    # all it buys is the gateway's question, which only the user can answer
    page.click("#more")
    page.wait_for_selector("text=Always allow this site?", timeout=30_000)
    assert page.url.startswith("http://malwaresnipper.invalid/confirm?")
    page.wait_for_timeout(1000)
    assert gw.api("/api/v1/lists/allow")["items"] == []
    check = browser.new_page()
    check.goto(upstream.url("/dropper.html?after-attack=1", tls=tls))
    assert check.title() == "Blocked by MalwareSnipper"  # still blocked, as Chromium shows it
    for p in (page, check, *page.context.pages):
        if not p.is_closed():
            p.close()


def test_inert_script_warns_in_the_console_and_always_allow_sticks(setup):
    browser, gw, upstream = setup
    page = browser.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(upstream.url("/app.html", tls=True))
    page.wait_for_timeout(500)
    assert any("MalwareSnipper blocked the script" in m and "/dl.js" in m for m in messages), messages
    page.goto(upstream.url("/dropper.html?case=allow", tls=True))
    page.click("summary")
    page.click("text=Always allow this site")
    page.wait_for_selector("text=Always allow this site?")
    with page.expect_navigation():
        page.click("button:has-text('Always allow this site')")
    assert page.title() == "Your invoice"
    page.goto(upstream.url("/dropper.html?case=after-allow", tls=True))
    assert page.title() == "Your invoice"
    gw.api("/api/v1/lists/allow", method="DELETE", params={"entry": "127.0.0.1"})
    page.close()
