"""The gateway's own origin, ``http://malwaresnipper.invalid``: where a bypass is confirmed.

A block page's "Proceed once" and "Always allow" links lead here (see :mod:`.bypass`). A GET
shows the confirmation page and mints a one-time token; a POST of its form, from this origin
only, redeems it. Nothing a blocked site can read or send gets past here: the block page it can
read holds only a block id; the token is minted on this page, which no other origin can read (no
CORS, CORP same-origin, no framing). Requests to this host never go upstream.

"Report a mistake" (``REPORT_PATH``) works the same way: its form's token is minted on this
origin only, so a blocked page's script cannot file a report. Each confirmed proceed-once,
always-allow and report is recorded with the scan whose verdict it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import http

from ..server.service import ScanClient
from . import blockpage
from .blockpage import CONFIRM_PATH, CONTROL_HOST, CONTROL_ORIGIN, REPORT_COMMENT_MAX, REPORT_PATH
from .bypass import BypassTokens
from .lifecycle import Lifecycle
from .pagenotice import NOTICE_PATH
from .replies import client_of, notice, top_level_navigation

log = logging.getLogger("malwaresnipper.gateway")

#: How long the report form's answer waits for the history store (a PostgreSQL outage holds writes).
REPORT_WAIT_S = 5.0
NOTICE_EXPLANATION = (
    "A page you opened loads a script that this gateway judged dangerous (for example one that copies "
    "what you type into a payment form and sends it to someone else). The gateway replaced that script "
    "with a harmless one, so the rest of the page works, but the site itself may have been tampered with: "
    "be careful about entering card details or passwords there. The gateway's dashboard has the details "
    "of both scans."
)
_EXPIRED = ("This link has expired", "Go back and load the page again to get a fresh block page.")


class Control:
    """Answers every request to ``CONTROL_HOST`` (see the module docstring)."""

    name = "malwaresnipper_control"

    def __init__(self, lifecycle: Lifecycle, bypass: BypassTokens) -> None:
        self.lifecycle = lifecycle
        self.bypass = bypass

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.request.host.lower() != CONTROL_HOST:
            return
        flow.metadata["malwaresnipper_skip"] = "control"
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path == NOTICE_PATH:  # the in-page notice's "What does this mean?"
            flow.response = notice(200, "MalwareSnipper blocked a dangerous script", NOTICE_EXPLANATION)
            return
        if path == REPORT_PATH and req.method in ("GET", "POST"):
            flow.response = self._report_page(flow) if req.method == "GET" else await self._confirmed(flow)
        elif path != CONFIRM_PATH:
            flow.response = notice(404, "Not found", "There is nothing here.")
        elif req.method == "GET":
            flow.response = self._confirmation_page(flow)
        elif req.method == "POST":
            flow.response = await self._confirmed(flow)
        else:
            flow.response = notice(405, "Use the buttons on the block page", "This address only accepts its own form.")

    def _confirmation_page(self, flow: http.HTTPFlow) -> http.Response:
        """The page asking the user to confirm ``action`` for a block shown to them, with its token."""
        req, client = flow.request, client_of(flow)
        block_id = req.query.get("block", "")
        action = req.query.get("action", "")
        block = self.bypass.block(block_id, client)
        if block is None or action not in ("proceed", "allow") or not top_level_navigation(req):
            return notice(403, *_EXPIRED)
        if action == "allow" and not block.may_allow:
            return notice(403, "This site cannot be allowed here",
                          "It is on your blocklist. Remove it from the blocklist in the dashboard.")
        page = blockpage.render_confirm_page(url=block.url, reasons=block.reasons, action=action,
                                             token=self.bypass.mint(block_id, action, client), block_id=block_id)
        return http.Response.make(200, page.encode("utf-8"), blockpage.confirm_headers(block.url))

    def _report_page(self, flow: http.HTTPFlow) -> http.Response:
        """The page asking the user to confirm "this blocked page is safe", with its token."""
        req, client = flow.request, client_of(flow)
        block_id = req.query.get("block", "")
        block = self.bypass.block(block_id, client)
        if block is None or not block.scan_id or not top_level_navigation(req):
            return notice(403, *_EXPIRED)
        page = blockpage.render_report_page(url=block.url, reasons=block.reasons, block_id=block_id,
                                            token=self.bypass.mint(block_id, "report", client))
        return http.Response.make(200, page.encode("utf-8"), blockpage.CONFIRM_HEADERS)

    async def _confirmed(self, flow: http.HTTPFlow) -> http.Response:
        """The confirmation form, posted: redeem its token, grant what it confirms, go back."""
        req, client = flow.request, client_of(flow)
        form: dict[str, list[str]] = {}
        with contextlib.suppress(ValueError, UnicodeDecodeError):  # a bad form is a refused one
            form = parse_qs(req.get_text(strict=False) or "", max_num_fields=5)
        token, action = (form.get("token") or [""])[0], (form.get("action") or [""])[0]
        block = self.bypass.redeem(token, action, client) if token and _from_control_origin(req) else None
        if block is None:
            log.warning("malwaresnipper: refused a bypass request from %s (bad or replayed token, or not "
                        "sent by the gateway's own page)", client)
            return notice(403, *_EXPIRED)
        if action == "report":
            comment = (form.get("comment") or [""])[0].strip()[:REPORT_COMMENT_MAX]
            recorded = await self._record(block.scan_id, lambda s, scan_id: s.add_report(
                scan_id, "safe", "blockpage", comment), wait_s=REPORT_WAIT_S)
            log.warning("malwaresnipper: user reported %s as safe (scan %s)", block.url[:300], block.scan_id)
            if not recorded:
                return notice(503, "The report could not be recorded",
                              "The gateway's history is unreachable right now; try again in a moment.")
            return notice(200, "Thank you: your report was recorded",
                          "The gateway's administrator will review it. The page stays blocked until they allow it.")
        if action == "proceed":
            self.bypass.allow_once(block.url, client)
            self.lifecycle.count("proceed_once")
            log.warning("malwaresnipper: user chose to proceed once to %s", block.url[:300])
            # Recorded in the background: the user's way on never waits for the history store.
            self.lifecycle.spawn(self._record(block.scan_id, lambda s, scan_id: s.add_override(
                scan_id, "proceed_once", "gateway")))
        else:
            host = (urlsplit(block.url).hostname or "").lower()
            await self._allow_site(host)
            self.lifecycle.count("always_allow")
            log.warning("malwaresnipper: user added %s to the allowlist", host)
            self.lifecycle.spawn(self._record(block.scan_id, lambda s, scan_id: s.add_override(
                scan_id, "always_allow", "gateway")))
        return http.Response.make(303, b"", {"Location": block.url, "Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})

    async def _record(self, scan_id: str | None,
                      write: Callable[[ScanClient, str], Awaitable[dict[str, Any] | None]],
                      *, wait_s: float | None = None) -> bool:
        """Record feedback on ``scan_id`` through the scan service; False when it could not be
        (no scan, no service, the store down or slower than ``wait_s``): the user's choice itself
        still holds."""
        service = self.lifecycle.service
        if service is None or not scan_id:
            return False
        try:
            async with asyncio.timeout(wait_s):
                return await write(service, scan_id) is not None
        except TimeoutError:
            log.warning("malwaresnipper: the history store did not record feedback on scan %s within %.0f s",
                        scan_id, wait_s or 0)
            return False
        except Exception:  # noqa: BLE001 - a record must never undo what the user confirmed
            log.exception("could not record feedback on scan %s", scan_id)
            return False

    async def _allow_site(self, host: str) -> None:
        """Put ``host`` on the allowlist (where the dashboard can remove it again); a list change,
        so verdicts cached under the old lists are not reused."""
        service = self.lifecycle.service
        if service is not None:
            try:
                await service.add_list_entry("allow", host, "domain", note="allowed from the block page")
                return
            except Exception:  # noqa: BLE001 - fall back to an in-memory entry for this run
                log.exception("could not store %s in the allowlist; allowing it until restart", host)
        self.lifecycle.lists.allow_for_now(host)


def _from_control_origin(req: http.Request) -> bool:
    """The POST came from the gateway's own confirmation page: browsers send ``Origin`` with
    every form POST, and a page of any other origin cannot claim ours."""
    origin = req.headers.get("origin")
    if origin is None:
        return not req.headers.get("sec-fetch-site")  # a non-browser client
    return origin.lower() in (CONTROL_ORIGIN, f"https://{CONTROL_HOST}") and top_level_navigation(req)
