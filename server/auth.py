"""The gateway token and the Origin allowlist shared by the HTTP API and the event stream.

The token is generated once (``secrets.token_urlsafe``) and kept with 0600 permissions in
``<data_dir>/token`` so that a restart keeps it; ``MALWARESNIPPER_TOKEN`` overrides the file
(scripts, containers). Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
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
