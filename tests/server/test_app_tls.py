"""start_services in-process: TLS on request, refusal without it off loopback, clean stop."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.server.app import start_services
from malwaresnipper.settings import ProxySettings, ServerSettings, Settings


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_non_loopback_without_tls_refuses_before_listening(tmp_path: Path) -> None:
    settings = Settings(server=ServerSettings(host="0.0.0.0", api_port=0, events_port=0), data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="tls_cert"):
        await start_services(settings)
    assert not (tmp_path / "history.sqlite3").exists()  # nothing was started


async def test_tls_serves_https_and_wss(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(server=ServerSettings(api_port=0, events_port=0, tls_cert=str(cert), tls_key=str(key)),
                        proxy=ProxySettings(workers=1), data_dir=str(tmp_path / "home"))
    running = await start_services(settings)
    try:
        assert running.api_url.startswith("https://") and running.events_url.startswith("wss://")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as s:
            async with s.get(running.api_url + "/api/v1/health", ssl=ctx) as resp:
                health = await resp.json()
            assert health["events_url"] == running.events_url
            headers = {"Authorization": f"Bearer {running.token}"}
            async with s.post(running.api_url + "/api/v1/scans?wait=true", ssl=ctx, headers=headers,
                              json={"url": "https://tls.example/", "html": "<p>hello</p>"}) as resp:
                assert resp.status == 200, await resp.text()
        async with connect(running.events_url, ssl=ctx, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "hello", "last_seq": 0}))
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "snapshot" and snapshot["stats"]["total"] == 1
            replayed = json.loads(await ws.recv())
            assert replayed["seq"] == 1 and replayed["status"] == "SCAN_STARTED" and replayed["replay"] is True
        api_port = int(running.api_url.rsplit(":", 1)[1])
    finally:
        await running.stop()
    assert port_is_free(api_port)
    await running.stop()  # idempotent
