"""One-time tokens behind the block page's "proceed once" and "always allow" buttons.

A token is minted for one blocked URL and one client address, is random (so a page cannot forge
it), can be redeemed once, and expires. Redeeming "proceed once" grants exactly one pass: the next
response for that URL to that client is let through, then the block applies again. Nothing here is
a global switch.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

TOKEN_TTL_S = 600.0
PASS_TTL_S = 60.0
MAX_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class Grant:
    url: str
    client: str
    expires: float


class BypassTokens:
    """Mints and redeems one-time tokens, and keeps the one-shot passes they grant."""

    def __init__(self, token_ttl_s: float = TOKEN_TTL_S, pass_ttl_s: float = PASS_TTL_S) -> None:
        self.token_ttl_s = token_ttl_s
        self.pass_ttl_s = pass_ttl_s
        self._tokens: OrderedDict[str, Grant] = OrderedDict()
        self._passes: dict[tuple[str, str], float] = {}

    def mint(self, url: str, client: str) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = Grant(url, client, time.monotonic() + self.token_ttl_s)
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return token

    def redeem(self, token: str, client: str) -> Grant | None:
        """The grant for ``token`` if it is valid for ``client``; the token is spent either way."""
        grant = self._tokens.pop(token, None)
        if grant is None or grant.expires < time.monotonic() or grant.client != client:
            return None
        return grant

    def allow_once(self, url: str, client: str) -> None:
        self._passes[(url, client)] = time.monotonic() + self.pass_ttl_s

    def take_pass(self, url: str, client: str) -> bool:
        """True (once) when a proceed-once pass for this URL and client is waiting."""
        expires = self._passes.pop((url, client), None)
        if len(self._passes) > MAX_TOKENS:
            now = time.monotonic()
            self._passes = {k: v for k, v in self._passes.items() if v >= now}
        return expires is not None and expires >= time.monotonic()

    def has_pass(self, url: str, client: str) -> bool:
        expires = self._passes.get((url, client))
        return expires is not None and expires >= time.monotonic()
