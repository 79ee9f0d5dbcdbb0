"""Request-time policy: what is decided before any byte comes back from the site.

In the order a request meets them: the gateway's own API/event traffic and allowlisted addresses
go through unscanned (counted); a proceed-once pass the user confirmed (:mod:`.control`) lets
one response through; in block mode a blocklisted address is answered with the block page before
any upstream connection, and the block is recorded in the history.

The lists are the list service's (:class:`~malwaresnipper.server.lists.ListService`): the same
snapshot the scan workers use, matched the same way (a URL entry ``https://Evil.example/Login``
names ``https://evil.example/Login`` here as in the engine), and a block beats an allow, as in
the engine.
"""

from __future__ import annotations

import logging
import math

from mitmproxy import http

from ..engine.capture import Capture, Source
from ..engine.lists import API_BLOCKLIST, AddressHit
from .flowurl import pretty_url
from .lifecycle import Lifecycle
from .options import GatewayOptions
from .replies import Replies, client_of

log = logging.getLogger("malwaresnipper.gateway")

#: Flows this addon lets through unscanned: streamed untouched, counted as ``unscanned_<reason>``.
UNSCANNED = ("own_traffic", "allowlisted")


class Policy:
    """Request-time allow/block decisions (see the module docstring)."""

    name = "malwaresnipper_policy"

    def __init__(self, options: GatewayOptions, lifecycle: Lifecycle, replies: Replies) -> None:
        self.options = options
        self.lifecycle = lifecycle
        self.replies = replies

    async def request(self, flow: http.HTTPFlow) -> None:
        eff = self.options.effective
        if eff is None or flow.response is not None:
            return
        req = flow.request
        if self.lifecycle.is_own_traffic(req.host, req.port):
            flow.metadata["malwaresnipper_skip"] = "own_traffic"
            return
        url = pretty_url(req)
        lists = self.lifecycle.lists.lookup(url)
        if lists.allowed is not None:
            flow.metadata["malwaresnipper_skip"] = "allowlisted"
            return
        if self.replies.bypass.take_pass(url, client_of(flow)):
            flow.metadata["malwaresnipper_pass"] = True
            log.info("malwaresnipper: proceed-once pass used for %s", url[:300])
            return
        if eff.mode == "block" and lists.blocked is not None:
            self.lifecycle.count("blocked_request")
            log.warning("malwaresnipper: blocked at request time (blocklist): %s", url[:300])
            flow.response = self.replies.block_page(flow, url=url, reasons=[("critical", _why(lists.blocked))],
                                                    classification="blocklisted", may_allow=False)
            flow.metadata["malwaresnipper_skip"] = "blocked_at_request"
            self.lifecycle.spawn(self._record_block(url))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        skip = flow.metadata.get("malwaresnipper_skip")
        if flow.response is not None and skip in UNSCANNED:
            flow.response.stream = True
            self.lifecycle.count(f"unscanned_{skip}")

    async def _record_block(self, url: str) -> None:
        """Record a request-time block in the history (a URL-only scan, recorded as blocked)."""
        service = self.lifecycle.service
        if service is None:
            return
        try:
            job = await service.submit(Capture.build(url, source=Source.PROXY), method="PROXY", blocks_until=math.inf)
            await job.verdict()
        except Exception:  # noqa: BLE001 - a record must never disturb traffic
            log.debug("could not record the blocked request %s", url, exc_info=True)


def _why(hit: AddressHit) -> str:
    """The block page's reason for a list hit."""
    if hit.hit.source == API_BLOCKLIST:
        return "This address is on your blocklist."
    return f"{hit.key} is on a blocklist ({hit.hit.classification}, {hit.hit.source})."
