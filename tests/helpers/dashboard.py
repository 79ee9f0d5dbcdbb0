"""Fixtures for the dashboard tests: a real gateway subprocess and real headless Chromium.

The gateway is ``malwaresnipper serve`` in its own process, on free loopback ports, with a
temporary data directory and a known token. Chromium is Debian's ``/usr/bin/chromium`` driven by
Playwright (never ``playwright install``). Test modules import the fixtures they use by name.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
#: Where the browser tests put the screenshots of the views they check (the closing notes' folder when set).
SCREENS = Path(os.environ.get("MALWARESNIPPER_SCREENS") or ARTIFACTS)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")


class Gateway:
    """One ``malwaresnipper serve`` process; ``restart()`` keeps its ports, home and token."""

    def __init__(self, home: Path, *, config: str = "", token: str | None = None, proxy: bool = False) -> None:
        """``proxy=True`` runs the whole gateway (``malwaresnipper run``: mitmproxy + API)."""
        self.proxy = proxy
        self.proxy_port = free_port() if proxy else 0
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.token = token or secrets.token_urlsafe(24)
        self.api_port = free_port()
        self.events_port = free_port()
        self.config_path = home / "malwaresnipper.toml"
        self.config_path.write_text(config)
        self.log_path = home / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def command(self) -> list[str]:
        ports = ["--api-port", str(self.api_port), "--events-port", str(self.events_port)]
        base = [sys.executable, "-m", "malwaresnipper.cli.main"]
        if self.proxy:
            return base + ["run", "--config", str(self.config_path), "--listen-port", str(self.proxy_port),
                           "--confdir", str(self.home / "certs"), *ports]
        return base + ["serve", "--config", str(self.config_path), *ports]

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, MALWARESNIPPER_HOME=str(self.home), MALWARESNIPPER_TOKEN=self.token, PYTHONUNBUFFERED="1")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, body = self.request("GET", "/api/v1/health", auth=False, timeout=1.0)
                if status == 200 and body.get("status") == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True,
                timeout: float = 30.0, raw: bool = False) -> tuple[int, Any]:
        """Call the API like any client; returns (status, parsed JSON or bytes with raw=True)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
                return resp.status, payload if raw else json.loads(payload or b"null")
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                return err.code, payload if raw else json.loads(payload or b"null")
            except ValueError:
                return err.code, payload

    def submit(self, capture: dict[str, Any], *, wait: bool = False) -> dict[str, Any]:
        status, body = self.request("POST", "/api/v1/scans" + ("?wait=true" if wait else ""), capture)
        assert status in (200, 202), (status, body)
        return body


class PageWatch:
    """What a page did that it should not have: JS errors, dialogs, CSP violations; and its frames."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.frames: list[dict[str, Any]] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)

        def on_websocket(ws: Any) -> None:
            def on_frame(payload: Any) -> None:
                try:
                    self.frames.append(json.loads(payload))
                except (TypeError, ValueError):
                    pass

            ws.on("framereceived", on_frame)

        page.on("websocket", on_websocket)

    def events(self, scan_id: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "event" and (scan_id is None or f.get("scan_id") == scan_id)]


def open_dashboard(browser: Any, gateway: Gateway, *, sign_in: bool = True,
                   viewport: dict[str, int] | None = None, init_script: str | None = None) -> tuple[Any, Any, PageWatch]:
    """A new context and page on the dashboard, signed in with the gateway token."""
    context = browser.new_context(viewport=viewport or {"width": 1440, "height": 1000}, accept_downloads=True)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    watch = PageWatch(page)
    page.goto(gateway.base_url + "/")
    if sign_in:
        page.fill("#token-input", gateway.token)
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#conn[data-state=online]", timeout=10_000)
    return context, page, watch


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def capture(url: str, *, title: str = "A page", html: str | None = None, scripts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A small capture body for POST /api/v1/scans."""
    body: dict[str, Any] = {
        "url": url,
        "title": title,
        "html": html if html is not None else f"<html><head><title>{title}</title></head><body><p>Hello</p></body></html>",
        "content_type": "text/html",
    }
    if scripts is not None:
        body["scripts"] = scripts
    return body


MINER_SCRIPT = (
    'var miner = new CoinHive.Anonymous("SITE_KEY", {throttle: 0.3}); miner.start();\n'
    "setInterval(function () { report(miner.getHashesPerSecond(), miner.getTotalHashes()); miner.setThrottle(0.1); }, 1000);\n"
)


def miner_capture(url: str, *, title: str = "Free movies") -> dict[str, Any]:
    """A page running an in-browser cryptominer: the engine calls it MALICIOUS on content alone."""
    return capture(
        url, title=title,
        html='<html><body><script src="https://coinhive.com/lib/coinhive.min.js"></script></body></html>',
        scripts=[{"url": "https://coinhive.com/lib/coinhive.min.js", "text": MINER_SCRIPT}],
    )


def wait_js(page: Any, expression: str, arg: Any = None, *, timeout: float = 10.0, interval_ms: int = 25) -> Any:
    """Poll a JS expression or function until truthy.

    ``page.wait_for_function`` polls by ``eval``-ing the predicate inside the page, which the
    dashboard's CSP (no 'unsafe-eval') rightly forbids; ``page.evaluate`` goes through the
    DevTools protocol and is not subject to the page's CSP.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {expression}")
        page.wait_for_timeout(interval_ms)


def wait_for(page: Any, predicate: Any, timeout: float = 10.0, interval_ms: int = 50, message: str = "condition") -> Any:
    """Poll ``predicate`` while letting Playwright deliver the page's events (frames, dialogs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(interval_ms)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
