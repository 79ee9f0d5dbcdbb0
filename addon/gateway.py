"""The gateway: five small mitmproxy addons in one list, the way mitmproxy ships its features.

mitmproxy runs ``Gateway.addons`` in this order, each hook of each addon in turn:

1. :class:`~.options.GatewayOptions` declares the ``malwaresnipper_*`` options and resolves the
   settings in force (:class:`~.options.Effective`), which the others read.
2. :class:`~.lifecycle.Lifecycle` starts and stops the scan services (with a retry while a shared
   store is down, and the failure policy), and holds what the others share: the list service,
   the counters, the background tasks.
3. :class:`~.control.Control` answers the gateway's own origin, ``http://malwaresnipper.invalid``,
   where a bypass is confirmed (``request``).
4. :class:`~.policy.Policy` decides at request time: own traffic and allowlisted addresses pass
   unscanned, a proceed-once pass is taken, a blocklisted address is refused (``request``,
   ``responseheaders``).
5. :class:`~.scanning.Scanning` decides what to scan as the browser would run or render it,
   reuses verdicts, submits scans, waits for them in block mode and replaces what is malicious
   (``responseheaders``, ``response``).

They talk to the scan service only through the typed
:class:`~malwaresnipper.server.service.ScanClient` protocol. ``Gateway`` itself has no hooks: it
wires the five together and names them for ``malwaresnipper run`` and the tests.
"""

from __future__ import annotations

from typing import Any

from .bypass import BypassTokens
from .control import Control
from .lifecycle import Lifecycle
from .options import GatewayOptions
from .policy import Policy
from .replies import HEADER, Replies
from .scanning import Scanning

__all__ = ["HEADER", "Gateway"]


class Gateway:
    """The gateway's addons, wired together (see the module docstring). The settings in force are
    ``gateway.options.effective``; the services, counters and start state are ``gateway.lifecycle``'s."""

    name = "malwaresnipper"

    def __init__(self, pool: Any = None) -> None:
        """``pool`` replaces the ScanPool the services would build (tests share one)."""
        self.options = GatewayOptions()
        self.lifecycle = Lifecycle(self.options, pool=pool)
        self.replies = Replies(BypassTokens())
        self.replies.dashboard = self.lifecycle.dashboard_url
        self.control = Control(self.lifecycle, self.replies.bypass)
        self.policy = Policy(self.options, self.lifecycle, self.replies)
        self.scanning = Scanning(self.options, self.lifecycle, self.replies)
        self.addons = [self.options, self.lifecycle, self.control, self.policy, self.scanning]
