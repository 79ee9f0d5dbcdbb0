"""The API's small rules, in-process: the CSV formula guard, the body-read timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from malwaresnipper.server import api
from malwaresnipper.server.api import _csv_cell
from malwaresnipper.server.app import RunningServices, start_services
from malwaresnipper.settings import ProxySettings, ServerSettings, Settings, StoreSettings


@pytest.mark.parametrize("title", [
    "=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1",
    " =1+1",            # a leading space: some spreadsheets skip it
    "\n=1+1", "\u00a0=1", "\u200b=1", "\ufeff=1", "\x00=1", "\x1f=1",
    "\uff1dcmd|' /C calc'!A0",   # full-width equals sign
    "\uff0b1", "\uff0d1", "\uff20SUM(A1)",   # full-width plus, minus, at
    "\ufe66HYPERLINK(\"x\")", "\ufe62 1", "\ufe63 1", "\ufe6b x",   # small forms
    "\u22121",          # minus sign
    "|cmd",             # DDE
])
def test_formula_like_cells_are_quoted(title: str) -> None:
    assert _csv_cell({"title": title}, "title") == "'" + title


@pytest.mark.parametrize("title", ["Sign in", "100% off", "#hashtag", "", "Über uns", "(1) Inbox"])
def test_ordinary_cells_are_untouched(title: str) -> None:
    assert _csv_cell({"title": title}, "title") == title
    assert _csv_cell({"risk_score": -0.0}, "risk_score") == "-0.0"  # numbers stay numbers


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[RunningServices]:
    settings = Settings(data_dir=str(tmp_path), server=ServerSettings(api_port=0, events_port=0),
                        proxy=ProxySettings(workers=1),
                        store=StoreSettings(path=str(tmp_path / "h.sqlite3")))
    running = await start_services(settings, events=False)
    try:
        yield running
    finally:
        await running.stop()


async def test_a_body_that_never_finishes_gets_408(services: RunningServices, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "BODY_READ_TIMEOUT_S", 1.0)
    port = int(services.api_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /api/v1/scans HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Authorization: Bearer {services.token}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{\"url\": ").encode())
    await writer.drain()
    started = asyncio.get_running_loop().time()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert asyncio.get_running_loop().time() - started < 5
    writer.close()
    async with aiohttp.ClientSession() as s, s.get(services.api_url + "/api/v1/scans",
                     headers={"Authorization": f"Bearer {services.token}"}) as resp:
        assert resp.status == 200 and (await resp.json())["total"] == 0
