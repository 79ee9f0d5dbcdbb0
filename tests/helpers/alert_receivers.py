"""Real local receivers for the alert tests (127.0.0.1 only) and a strict RFC 5424 parser.

* :class:`WebhookReceiver`: an aiohttp server that records each POST (raw body, headers) and
  answers what the test scripts (500, 404, a redirect, a hold).
* :class:`UdpSyslog`, :class:`StreamSyslog`: a UDP socket and a TCP (optionally TLS) server that
  read RFC 6587 octet-counted frames; the stream one can be stopped and started on the same port.
* :func:`parse_rfc5424`: the syslog message grammar of RFC 5424 section 6, escapes included; it
  raises on anything the RFC does not allow, so a test that parses a message checks its form.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


def self_signed(tmp: Path, name: str = "receiver") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with openssl."""
    cert, key = tmp / f"{name}-cert.pem", tmp / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse | None]]


class WebhookReceiver:
    """An aiohttp app on 127.0.0.1; ``respond(request, n)`` may answer the n-th request (from 1)."""

    def __init__(self, respond: Handler | None = None, port: int = 0) -> None:
        self.respond = respond
        self.port = port
        self.received: list[Received] = []
        self.hits = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        body = await request.read()
        if self.respond is not None:
            answer = await self.respond(request, self.hits)
            if answer is not None:
                return answer
        self.received.append(Received(request.path, dict(request.headers), body))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class UdpSyslog(asyncio.DatagramProtocol):
    """Datagrams received on 127.0.0.1."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class StreamSyslog:
    """A TCP (or, with ``ssl_context``, TLS) syslog receiver reading octet-counted frames."""

    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    messages: list[bytes] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                assert re.fullmatch(rb"[1-9][0-9]* ", length), f"not octet counting: {length!r}"
                self.messages.append(await reader.readexactly(int(length)))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ssl_context,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection: the receiver is down."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None


# -- RFC 5424 ------------------------------------------------------------------------------------

_HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>[!-~]{1,255}) "
    rb"(?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)
_TIMESTAMP = re.compile(r"^(-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}))$")
_SD_NAME = re.compile(rb'[!#-<>-\\^-~]{1,32}')  # PRINTUSASCII except '=', ' ', ']', '"'


def parse_rfc5424(data: bytes) -> dict[str, Any]:
    """``{pri, facility, severity, timestamp, hostname, app, procid, msgid, sd: {id: [(name, value)]}, msg}``."""
    match = _HEADER.match(data)
    assert match, f"not an RFC 5424 header: {data[:120]!r}"
    assert match["version"] == b"1"
    pri = int(match["pri"])
    assert 0 <= pri <= 191
    timestamp = match["timestamp"].decode()
    assert _TIMESTAMP.match(timestamp), timestamp
    pos = match.end()
    sd: dict[str, list[tuple[str, str]]] = {}
    if data[pos:pos + 1] == b"-":
        pos += 1
    else:
        assert data[pos:pos + 1] == b"[", "structured data must start with '[' or be '-'"
        while data[pos:pos + 1] == b"[":
            pos += 1
            name = _SD_NAME.match(data, pos)
            assert name, "bad SD-ID"
            sd_id = name.group().decode()
            pos = name.end()
            params: list[tuple[str, str]] = []
            while data[pos:pos + 1] == b" ":
                pos += 1
                pname = _SD_NAME.match(data, pos)
                assert pname, f"bad PARAM-NAME at {pos}"
                pos = pname.end()
                assert data[pos:pos + 2] == b'="', f"expected =\" at {pos}"
                pos += 2
                value = bytearray()
                while True:
                    c = data[pos:pos + 1]
                    assert c, "unterminated PARAM-VALUE"
                    if c == b"\\" and data[pos + 1:pos + 2] in (b'"', b"\\", b"]"):
                        value += data[pos + 1:pos + 2]
                        pos += 2
                        continue
                    assert c != b"]", "unescaped ']' inside PARAM-VALUE"
                    if c == b'"':
                        pos += 1
                        break
                    value += c
                    pos += 1
                params.append((pname.group().decode(), value.decode("utf-8")))
            assert data[pos:pos + 1] == b"]", f"SD-ELEMENT not closed at {pos}"
            pos += 1
            sd[sd_id] = params
    msg = b""
    if pos < len(data):
        assert data[pos:pos + 1] == b" ", "MSG must follow one space"
        msg = data[pos + 1:]
    text = msg.decode("utf-8")  # raises on anything that is not UTF-8
    return {
        "pri": pri, "facility": pri // 8, "severity": pri % 8, "timestamp": timestamp,
        "hostname": match["hostname"].decode(), "app": match["app"].decode(), "procid": match["procid"].decode(),
        "msgid": match["msgid"].decode(), "sd": sd, "msg": text, "bom": text.startswith("\ufeff"),
    }
