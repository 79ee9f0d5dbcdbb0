"""The gateway's settings file (``malwaresnipper.toml``): the engine's sections plus the services'.

Layout of the file (every section optional, every key optional)::

    [engine]            # thresholds, limits, layers, reputation, signatures, ml (see engine.config)
    [engine.thresholds]
    suspicious = 40.0
    [proxy]             # mitmproxy listener and scanning behaviour
    [server]            # aiohttp API + dashboard, websockets event stream
    [store]             # scan history
    [events]            # event bus
    [[feeds]]           # threat-intelligence feeds that refresh themselves (one table per feed)

An unknown key anywhere is an error naming the key and the file.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .engine.config import EngineConfig, from_mapping, read_toml
from .engine.errors import ConfigError

DEFAULT_CONFIG_NAME = "malwaresnipper.toml"
#: ``[proxy] mode``: monitor never waits for a verdict; block waits within the budget.
PROXY_MODES = ("monitor", "block")
STORE_BACKENDS = ("sqlite", "postgres")
EVENT_BACKENDS = ("memory", "redis")


def _one_of(section: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"[{section}] {name} = {value!r} is not one of {choices}")


def _at_least(section: str, name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"[{section}] {name} must be >= {low:g}, got {value!r}")


def _port(section: str, name: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"[{section}] {name} must be a port number (0-65535), got {value!r}")


def default_data_dir() -> Path:
    """Where history, the token and lists live: ``$MALWARESNIPPER_HOME`` or ``~/.malwaresnipper``."""
    return Path(os.environ.get("MALWARESNIPPER_HOME", Path.home() / ".malwaresnipper")).expanduser()


@dataclass(frozen=True)
class ProxySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    #: ``monitor`` (never waits for a verdict) or ``block`` (waits up to ``block_budget_ms``).
    mode: str = "monitor"
    block_budget_ms: int = 1000
    fail_closed: bool = False
    #: Bodies larger than this on the wire are not held: they stream through, a page or script
    #: among them is scanned after it has passed (and refused when ``fail_closed``). A smaller
    #: body that decodes to more is scanned in full, streamed through the reducer.
    max_body_bytes: int = 5_000_000
    #: Work cap: at most this many decompressed bytes are read of one body; the rest of a longer
    #: one is not analysed (the verdict says so and is never BENIGN).
    max_decoded_bytes: int = 20_000_000
    #: mitmproxy's confdir, where its CA lives; '' means the repo's/packaged ``certs/`` folder.
    confdir: str = ""
    workers: int = 2
    scan_timeout_ms: int = 5000
    dedupe_window_s: float = 60.0

    def __post_init__(self) -> None:
        """The same checks for a file (``config check``, ``run``) and for command-line options."""
        _one_of("proxy", "mode", self.mode, PROXY_MODES)
        _port("proxy", "listen_port", self.listen_port)
        for name, low in (("block_budget_ms", 1), ("max_body_bytes", 1024), ("workers", 1),
                          ("scan_timeout_ms", 1), ("dedupe_window_s", 0)):
            _at_least("proxy", name, getattr(self, name), low)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    api_port: int = 5000
    events_port: int = 8765
    #: Extra origins allowed to call the API / open the event stream (the dashboard's own origin
    #: and the extension's chrome-extension:// origin are allowed by default).
    allowed_origins: list[str] = field(default_factory=list)
    #: Extra names the API, the dashboard and the event stream answer to in the Host header
    #: (``name`` for any port, ``name:port`` for one); 127.0.0.1, localhost, [::1] and ``host``
    #: are always answered. Any other Host gets 421 (DNS rebinding).
    allowed_hosts: list[str] = field(default_factory=list)
    tls_cert: str = ""
    tls_key: str = ""
    max_body_bytes: int = 5_000_000
    rate_limit_per_minute: int = 600
    client_queue_size: int = 1000
    #: Names this gateway in events and history when several share one Redis and PostgreSQL;
    #: '' means the host name.
    gateway_id: str = ""

    def __post_init__(self) -> None:
        _port("server", "api_port", self.api_port)
        _port("server", "events_port", self.events_port)
        for name, low in (("max_body_bytes", 1024), ("rate_limit_per_minute", 0), ("client_queue_size", 1)):
            _at_least("server", name, getattr(self, name), low)


@dataclass(frozen=True)
class StoreSettings:
    #: ``sqlite`` (one file, one gateway) or ``postgres`` (shared by several gateways).
    backend: str = "sqlite"
    #: SQLite file; '' means ``<data_dir>/history.sqlite3``.
    path: str = ""
    #: PostgreSQL connection string (``postgresql://user:pass@host:5432/db``); '' means libpq's
    #: ``PG*`` environment variables, which keeps the password out of the file.
    dsn: str = ""
    #: PostgreSQL connections per gateway (reads; one more writes, one listens for list changes).
    pool_size: int = 4
    #: Writes held while PostgreSQL is unreachable; beyond this they fail (and are logged).
    max_pending_writes: int = 10_000
    retention_days: int = 30
    retention_rows: int = 1_000_000

    def __post_init__(self) -> None:
        _one_of("store", "backend", self.backend, STORE_BACKENDS)
        for name, low in (("pool_size", 1), ("max_pending_writes", 0), ("retention_days", 0), ("retention_rows", 0)):
            _at_least("store", name, getattr(self, name), low)


@dataclass(frozen=True)
class EventSettings:
    #: ``memory`` (in-process, one gateway) or ``redis`` (Redis Streams, several gateways).
    backend: str = "memory"
    #: Redis server for ``backend = "redis"``.
    url: str = "redis://127.0.0.1:6379/0"
    #: Stream key shared by every gateway (the seq counter lives beside it: ``<stream>:seq``).
    stream: str = "malwaresnipper:events"
    #: ``XADD ... MAXLEN ~`` cap: how many events the stream keeps for replay.
    max_len: int = 100_000
    #: This event server's consumer group; '' means ``events-<gateway_id>``.
    group: str = ""
    #: Events held in memory while Redis is unreachable; beyond this the oldest are dropped (logged).
    buffer_events: int = 10_000

    def __post_init__(self) -> None:
        _one_of("events", "backend", self.backend, EVENT_BACKENDS)
        for name, low in (("max_len", 1), ("buffer_events", 0)):
            _at_least("events", name, getattr(self, name), low)


@dataclass(frozen=True)
class FeedSettings:
    """One ``[[feeds]]`` entry: a list the gateway downloads (or reads) and refreshes itself."""

    #: names the feed in indicators (``feed <name>``), status, metrics and the saved copy's file
    name: str = ""
    #: one of ``server.feed_formats.FEED_FORMATS``
    format: str = ""
    #: an ``https://`` URL, or a file path (relative to the settings file)
    source: str = ""
    #: ``block`` or ``allow``
    kind: str = "block"
    refresh_s: float = 3600.0
    #: a download larger than this is refused (the last good copy stays in force)
    max_bytes: int = 50_000_000
    #: unreadable rows tolerated per download; one more and the download is refused
    max_errors: int = 100
    timeout_s: float = 60.0
    #: accept ``http://127.0.0.1`` / ``http://[::1]`` sources (local mirrors and tests); other
    #: ``http://`` sources are always refused
    allow_http_loopback: bool = False

    def __post_init__(self) -> None:
        from .server.feed_formats import FEED_FORMATS, FEED_KINDS, check_source

        where = f"feeds.{self.name}" if self.name else "feeds"
        if not _FEED_NAME.match(self.name):
            raise ConfigError(f"[{where}] name must be 1-64 letters, digits, '-' or '_', got {self.name!r}")
        _one_of(where, "format", self.format, FEED_FORMATS)
        _one_of(where, "kind", self.kind, FEED_KINDS)
        for name, low in (("refresh_s", 10), ("max_bytes", 1024), ("max_errors", 0), ("timeout_s", 1)):
            _at_least(where, name, getattr(self, name), low)
        try:
            check_source(self.source, allow_http_loopback=self.allow_http_loopback)
        except ValueError as exc:
            raise ConfigError(f"[{where}] source: {exc}") from None


_FEED_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Settings:
    engine: EngineConfig = field(default_factory=EngineConfig)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    events: EventSettings = field(default_factory=EventSettings)
    feeds: list[FeedSettings] = field(default_factory=list)
    data_dir: str = ""
    #: The file these settings came from ('' for defaults); engine paths resolve against it.
    source: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        names = [feed.name for feed in self.feeds]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"[[feeds]] names must be unique: {', '.join(twice)} appears more than once")

    @property
    def gateway_name(self) -> str:
        """``[server] gateway_id``, or this machine's host name."""
        return self.server.gateway_id or socket.gethostname()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()


def load_settings(path: str | Path | None = None) -> Settings:
    """Read ``path``, or ``./malwaresnipper.toml`` when present, or return the defaults."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.exists():
            return Settings()
        path = candidate
    data = read_toml(path)
    base = str(Path(path).resolve().parent)
    engine_data = data.pop("engine", {})
    engine = from_mapping(EngineConfig, engine_data, source=str(path), prefix="engine.", defaults={"base_dir": base})
    return from_mapping(
        Settings, data, source=str(path), defaults={"engine": engine, "source": str(path)}
    )
