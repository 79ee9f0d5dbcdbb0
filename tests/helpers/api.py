"""Helpers for the API/event-stream integration tests (imported by the other test_api_* modules).

A :class:`Gateway` is a real ``malwaresnipper serve`` subprocess on free loopback ports with its
own data directory; :class:`EventClient` is a real websockets client that speaks the documented
protocol (hello, snapshot, events) and checks every message against server/event_schema.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from websockets.asyncio.client import ClientConnection, connect
from helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "server" / "event_schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)



def small_page(i: int | str = 0, *, marker: str = "") -> dict[str, Any]:
    """A small ordinary page capture; ``i`` makes its content (and so its dedupe key) unique."""
    return {
        "url": f"https://shop{i}.example.org/products?item={i}",
        "title": f"Product {i}",
        "html": f"<html><head><title>Product {i}</title></head><body><h1>Item {i} {marker}</h1>"
                "<p>Plain text about a product.</p><a href='/cart'>Cart</a></body></html>",
        "scripts": [{"text": f"document.title = 'Product {i}';", "inline": True}],
    }


class Gateway:
    """One ``malwaresnipper serve`` process; restart keeps its ports and data dir."""

    def __init__(self, home: Path, *, config: str = "", token: str | None = None) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.events_port = free_port()
        self.config_path = home / "malwaresnipper.toml"
        self.config_path.write_text(config)
        self.log_path = home / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env_token = token
        self.token = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def events_url(self) -> str:
        return f"ws://127.0.0.1:{self.events_port}/"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, MALWARESNIPPER_HOME=str(self.home), PYTHONUNBUFFERED="1")
        env.pop("MALWARESNIPPER_TOKEN", None)
        if self.env_token:
            env["MALWARESNIPPER_TOKEN"] = self.env_token
        return env

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "malwaresnipper.cli.main", "serve", "--config", str(self.config_path),
               "--api-port", str(self.api_port), "--events-port", str(self.events_port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.home, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/api/v1/health", timeout=1) as resp:
                    if json.loads(resp.read())["status"] == "ok":
                        break
            except (OSError, ValueError):
                time.sleep(0.1)
        else:
            self.kill()
            raise RuntimeError(f"gateway not healthy after {timeout}s:\n{self.log_tail()}")
        self.token = self.env_token or (self.home / "token").read_text().strip()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token if token is None else token}"}

    async def call(self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None, *,
                   token: str | None = None, auth: bool = True, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = dict(self.headers(token)) if auth else {}
        hdrs.update(headers or {})
        kwargs: dict[str, Any] = {"headers": hdrs}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with session.request(method, self.base_url + path, **kwargs) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw

    async def events(self, last_seq: int | None = None, *, header: bool = True, **kwargs: Any) -> EventClient:
        client = EventClient(self, last_seq=last_seq, header=header, **kwargs)
        await client.connect()
        return client


class EventClient:
    """A websockets client speaking the documented protocol; validates every message."""

    def __init__(self, gateway: Gateway, *, last_seq: int | None = None, header: bool = True,
                 token: str | None = None, origin: str | None = None, validate: bool = True) -> None:
        self.gateway = gateway
        self.validate = validate
        self.last_seq = last_seq
        self.header = header
        self.token = gateway.token if token is None else token
        self.origin = origin
        self.ws: ClientConnection | None = None
        self.snapshot: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []

    async def connect(self) -> None:
        kwargs: dict[str, Any] = {"open_timeout": 10, "max_size": 2**24}
        if self.header:
            kwargs["additional_headers"] = {"Authorization": f"Bearer {self.token}"}
        if self.origin:
            kwargs["origin"] = self.origin
        self.ws = await connect(self.gateway.events_url, **kwargs)
        hello: dict[str, Any] = {"type": "hello", "last_seq": self.last_seq}
        if not self.header:
            hello["token"] = self.token
        await self.ws.send(json.dumps(hello))
        first = await self.recv()
        assert first["type"] == "snapshot", first
        self.snapshot = first

    async def recv(self, timeout: float = 15.0) -> dict[str, Any]:
        assert self.ws is not None
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if self.validate:
            VALIDATOR.validate(message)  # every message the server sends follows the schema
        if message["type"] == "event":
            self.received.append(message)
        return message

    async def until_complete(self, scan_ids: set[str], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Receive until every scan in ``scan_ids`` has its SCAN_COMPLETE; returns what came."""
        got: list[dict[str, Any]] = []
        pending = set(scan_ids)
        deadline = time.monotonic() + timeout
        while pending:
            message = await self.recv(max(0.1, deadline - time.monotonic()))
            got.append(message)
            if message.get("status") == "SCAN_COMPLETE":
                pending.discard(message["scan_id"])
        return got

    def start_reading(self) -> None:
        """Read continuously in the background (a fast client); see :meth:`wait_complete`."""
        async def loop() -> None:
            while True:
                await self.recv(timeout=3600)

        self._reader = asyncio.create_task(loop())

    async def wait_complete(self, scan_ids: set[str], timeout: float = 120.0) -> list[dict[str, Any]]:
        """With :meth:`start_reading`: wait until every scan's SCAN_COMPLETE has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            done = {m["scan_id"] for m in self.received if m.get("status") == "SCAN_COMPLETE"}
            if scan_ids <= done:
                return list(self.received)
            if self._reader.done():
                self._reader.result()  # raises what stopped the reader
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(scan_ids - done)} scans never completed")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()


def events_by_scan(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        if m.get("type") == "event":
            out.setdefault(m["scan_id"], []).append(m)
    return out
