"""The gateway token, the Origin allowlist and the Host allowlist shared by the HTTP API and the
event stream.

The token is generated once (``secrets.token_urlsafe``) and kept with 0600 permissions in
``<data_dir>/token`` so that a restart keeps it; ``MALWARESNIPPER_TOKEN`` overrides the file
(scripts, containers). Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from ..engine.errors import ConfigError

TOKEN_FILE = "token"
TOKEN_ENV = "MALWARESNIPPER_TOKEN"


def token_path(data_dir: Path) -> Path:
    return Path(data_dir) / TOKEN_FILE


def load_or_create_token(data_dir: Path) -> str:
    """The token in force: the environment's, else the stored one, else a new stored one."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    path = token_path(data_dir)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    # Create with 0600 from the start (no window where the file is world-readable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison; a missing offer never matches."""
    if not offered or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: hosts that need no TLS."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    """Which browser origins may call the API and open the event stream.

    Allowed: the dashboard's own origin (``http(s)://127.0.0.1:<api_port>`` and
    ``localhost``), any ``chrome-extension://`` origin, and ``[server] allowed_origins``.
    A request without ``Origin`` (curl, scripts, same-origin GETs) is not a browser
    cross-origin request and is judged by its token alone.
    """

    def __init__(self, api_port: int, extra: list[str] | tuple[str, ...] = (), *, host: str = "127.0.0.1") -> None:
        self.extra = tuple(extra)
        self.host = host
        self.set_port(api_port)

    def set_port(self, api_port: int) -> None:
        """(Re)compute the allowlist for the API's real port (known only once bound to port 0)."""
        host, extra = self.host, self.extra
        self.api_port = api_port
        allowed = set()
        for scheme in ("http", "https"):
            for name in ("127.0.0.1", "localhost", "[::1]"):
                allowed.add(f"{scheme}://{name}:{api_port}")
            if host not in ("127.0.0.1", "localhost", "0.0.0.0", "::", ""):
                allowed.add(f"{scheme}://{host}:{api_port}")
        allowed.update(o.rstrip("/").lower() for o in extra)
        self.allowed = frozenset(a.lower() for a in allowed)

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin.startswith("chrome-extension://") and len(origin) > len("chrome-extension://"):
            return True
        return origin in self.allowed


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class HostPolicy:
    """Which ``Host`` header values the API, the dashboard and the event stream answer.

    DNS rebinding: a page on ``evil.example`` whose name the attacker re-points at 127.0.0.1 is
    same-origin with the gateway as far as the browser knows, so Origin and CORS checks never
    fire; its requests still say ``Host: evil.example:5000``. Answered: ``127.0.0.1``,
    ``localhost`` and ``[::1]`` with the port the request arrived on, ``[server] host`` likewise
    (the address the gateway prints as its URL, ``0.0.0.0`` included), and each
    ``[server] allowed_hosts`` entry (``name`` for any port, ``name:port`` for that port only: a
    reverse proxy or port mapping).
    """

    def __init__(self, host: str = "127.0.0.1", extra: Sequence[str] = ()) -> None:
        names = set(LOOPBACK_NAMES)
        if host.strip():
            names.add(_bracketed(host.strip().lower().rstrip(".")))
        self.names = frozenset(names)
        any_port: set[str] = set()
        one_port: set[tuple[str, int]] = set()
        for entry in extra:
            parsed = split_host(entry)
            if parsed is None:
                raise ConfigError(f"[server] allowed_hosts: {entry!r} is not a host name, an address or name:port")
            name, port = parsed
            if port is None:
                any_port.add(name)
            else:
                one_port.add((name, port))
        self.any_port = frozenset(any_port)
        self.one_port = frozenset(one_port)

    def allows(self, header: str | None, port: int) -> bool:
        """True when ``header`` (the request's Host) names this gateway listening on ``port``."""
        parsed = split_host(header) if header else None
        if parsed is None:
            return False
        name, offered = parsed
        if name in self.any_port or (offered is not None and (name, offered) in self.one_port):
            return True
        if name not in self.names:
            return False
        # Without a port the client means the scheme's default one.
        return offered == port or (offered is None and port in (80, 443))

    def hint(self, port: int) -> str:
        """The sentence a refused client reads."""
        return f"address it as 127.0.0.1:{port} or localhost:{port}, or add the name to [server] allowed_hosts"


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"Name.Example:5000"`` -> ``("name.example", 5000)``; ``"[::1]"`` -> ``("[::1]", None)``;
    None when the value is not a host (with an optional port) at all."""
    value = value.strip().lower()
    if not value or any(c.isspace() or c in "/\\@?#" for c in value):
        return None
    if value.startswith("["):
        name, sep, rest = value.partition("]")
        name += "]"
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if sep else None
        name = name.rstrip(".")
        if not name or ":" in port_text_or_empty:
            return None
    if port_text is None:
        return name, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def _bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header (``::1`` -> ``[::1]``)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_tls(host: str, cert: str, key: str) -> tuple[str, str] | None:
    """TLS files to use, None on loopback without TLS; ConfigError when TLS is required but absent."""
    if cert or key:
        if not (cert and key):
            raise ConfigError("[server] tls_cert and tls_key must be set together")
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            if not Path(path).expanduser().is_file():
                raise ConfigError(f"[server] {name}: no such file {path!r}")
        return str(Path(cert).expanduser()), str(Path(key).expanduser())
    if not is_loopback(host):
        raise ConfigError(
            f"[server] host = {host!r} is not loopback: set tls_cert and tls_key so the API and the "
            "event stream are served over TLS, or listen on 127.0.0.1"
        )
    return None
