"""Flows to the gateway's own origin, shared by the control tests."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from helpers.addons import request
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from malwaresnipper.addon.control import Control

CONTROL = "malwaresnipper.invalid"
BLOCKED = "https://bad.example/invoice"


def flow(path: str, *, method: str = "GET", headers: dict[str, str] | None = None, content: bytes = b"",
         client: str = "127.0.0.1") -> http.HTTPFlow:
    req = tutils.treq(host=CONTROL, port=80, scheme=b"http", path=path.encode(), method=method.encode(),
                      headers=http.Headers([(k.encode(), v.encode()) for k, v in (headers or {}).items()]),
                      content=content)
    f = tflow.tflow(req=req)
    f.client_conn.peername = (client, 50000)
    return f


def post(block: str, action: str, token: str, origin: str | None = f"http://{CONTROL}") -> http.HTTPFlow:
    headers = {"content-type": "application/x-www-form-urlencoded", **({"origin": origin} if origin else {})}
    return flow("/confirm", method="POST", headers=headers,
                content=urlencode({"block": block, "action": action, "token": token}).encode())


async def token_for(control: Control, block: str, action: str) -> str:
    page = flow(f"/confirm?block={block}&action={action}")
    await request(control, page)
    assert page.response is not None and page.response.status_code == 200, page.response
    return html.unescape(re.search(r'name="token" value="([^"]+)"', page.response.get_text()).group(1))
