"""Letting a blocked page through, only when the user asks for it on the gateway's own page.

The block page is served on the blocked site's own origin, so anything it carries can be read by
that site's scripts (a ``fetch()`` of one of its blocked pages, a same-origin popup, a service
worker). It therefore carries nothing that authorises a bypass: its "Proceed once" and "Always
allow" links lead to a confirmation page on the gateway's own origin (``CONTROL_HOST``, answered
by the addon, never sent upstream; no site can serve it, frame it or read it). Only there is a
one-time token minted, for one recorded block, one action and one client address; redeeming it
needs a top-level user navigation (``Sec-Fetch-*``, when the browser sends them) from that same
origin. "Proceed once" then grants exactly one pass: the next response for that URL to that
client goes through, then the block applies again. Nothing here is a global switch.

"Report a mistake" (action ``report``) goes through the same confirmation, so a page's script
cannot file reports on the user's behalf either; it is offered only for a block that has a scan.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

BLOCK_TTL_S = 600.0
TOKEN_TTL_S = 600.0
PASS_TTL_S = 60.0
MAX_ENTRIES = 10_000
ACTIONS = ("proceed", "allow", "report")


@dataclass(frozen=True, slots=True)
class Block:
    """One block the user saw: what, for whom, why, and whether the site may be allowlisted."""

    url: str
    client: str
    reasons: tuple[str, ...]
    #: False when the user's own blocklist blocked it: an allowlist entry must not undo that
    may_allow: bool
    expires: float
    #: The scan whose verdict made the block (None for a request-time blocklist hit): what an
    #: override or a report is recorded against.
    scan_id: str | None = None


class BypassTokens:
    """Recorded blocks, the one-time tokens of their confirmation pages, and one-shot passes."""

    def __init__(self, token_ttl_s: float = TOKEN_TTL_S, pass_ttl_s: float = PASS_TTL_S,
                 block_ttl_s: float = BLOCK_TTL_S) -> None:
        self.token_ttl_s = token_ttl_s
        self.pass_ttl_s = pass_ttl_s
        self.block_ttl_s = block_ttl_s
        self._blocks: OrderedDict[str, Block] = OrderedDict()
        self._tokens: OrderedDict[str, tuple[str, str, str, float]] = OrderedDict()
        self._passes: dict[tuple[str, str], float] = {}

    def record_block(self, url: str, client: str, *, reasons: tuple[str, ...] = (), may_allow: bool = True,
                     scan_id: str | None = None) -> str:
        """An id for a block page's links. Not a secret: it authorises nothing by itself."""
        block_id = secrets.token_urlsafe(12)
        self._blocks[block_id] = Block(url, client, reasons, may_allow, time.monotonic() + self.block_ttl_s, scan_id)
        _trim(self._blocks)
        return block_id

    def block(self, block_id: str, client: str) -> Block | None:
        """The recorded block, if it exists, has not expired and was shown to ``client``."""
        block = self._blocks.get(block_id)
        if block is None or block.expires < time.monotonic() or block.client != client:
            return None
        return block

    def mint(self, block_id: str, action: str, client: str) -> str:
        """A one-time token for the confirmation form of ``action`` on block ``block_id``."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (block_id, action, client, time.monotonic() + self.token_ttl_s)
        _trim(self._tokens)
        return token

    def redeem(self, token: str, action: str, client: str) -> Block | None:
        """The block ``token`` confirms ``action`` for, if valid for ``client``; spent either way."""
        entry = self._tokens.pop(token, None)
        if entry is None:
            return None
        block_id, minted_for, minted_client, expires = entry
        if minted_for != action or minted_client != client or expires < time.monotonic():
            return None
        block = self.block(block_id, client)
        if block is None or (action == "allow" and not block.may_allow) or (action == "report" and not block.scan_id):
            return None
        return block

    def allow_once(self, url: str, client: str) -> None:
        self._passes[(url, client)] = time.monotonic() + self.pass_ttl_s

    def take_pass(self, url: str, client: str) -> bool:
        """True (once) when a proceed-once pass for this URL and client is waiting."""
        expires = self._passes.pop((url, client), None)
        if len(self._passes) > MAX_ENTRIES:
            now = time.monotonic()
            self._passes = {k: v for k, v in self._passes.items() if v >= now}
        return expires is not None and expires >= time.monotonic()


def _trim(table: OrderedDict[str, Any]) -> None:
    while len(table) > MAX_ENTRIES:
        table.popitem(last=False)
