"""Free loopback ports for the servers tests start, chosen outside the kernel's ephemeral range.

Binding port 0 hands out an *ephemeral* port; after the probe closes it, the kernel may give the
same number to any outgoing connection (a client, mitmproxy's upstream, a database pool) before
the server under test binds it. CI saw exactly that: a gateway's API could not bind its port and
the test met "connection refused". Ports below the ephemeral range are never handed out that way.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_DEFAULT_EPHEMERAL = (32768, 60999)
_LOWEST = 20000  # well above the usual service ports (PostgreSQL 5432, Redis 6379, 8080, 8765)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on now and the kernel will not lend to a client."""
    low, _ = _ephemeral_range()
    if low - _LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST, low)
            if _bindable(port):
                return port
    with socket.socket() as sock:  # an unusual port range: fall back to the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
