"""The gateway's settings file (``malwaresnipper.toml``): the engine's sections plus the services'.

Layout of the file (every section optional, every key optional)::

    [engine]            # thresholds, limits, layers, reputation, signatures, ml (see engine.config)
    [engine.thresholds]
    suspicious = 40.0
    [proxy]             # mitmproxy listener and scanning behaviour
    [server]            # aiohttp API + dashboard, websockets event stream
    [store]             # scan history
    [events]            # event bus
    [[alerts]]          # alert sinks: webhook, syslog, JSON Lines file (docs/alerts.md); one table each
    [[feeds]]           # threat-intelligence feeds that refresh themselves (one table per feed)

An unknown key anywhere is an error naming the key and the file.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .engine.config import EngineConfig, from_mapping, read_toml
from .engine.errors import ConfigError

DEFAULT_CONFIG_NAME = "malwaresnipper.toml"
#: ``[proxy] mode``: monitor never waits for a verdict; block waits within the budget.
PROXY_MODES = ("monitor", "block")
STORE_BACKENDS = ("sqlite", "postgres")
EVENT_BACKENDS = ("memory", "redis")
ALERT_KINDS = ("webhook", "syslog", "file")
#: The lowest threat level an ``[[alerts]]`` sink may ask for (BENIGN and UNKNOWN never alert).
ALERT_LEVELS = ("SUSPICIOUS", "MALICIOUS")
ALERT_SOURCES = ("proxy", "extension")
WEBHOOK_FORMATS = ("generic", "slack")
SYSLOG_TRANSPORTS = ("udp", "tcp", "tls")
#: RFC 5424 facility names and their codes.
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22,
    "local7": 23,
}


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


def _folder_name(where: str, value: str) -> None:
    """A path setting that names a folder: '' (the default) or a usable path."""
    if value and (not value.strip() or "\x00" in value):
        raise ConfigError(f"{where} = {value!r} is not a folder path ('' for the default)")


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
    #: mitmproxy's confdir, where its CA key and certificate live; '' means ``<data_dir>/certs``.
    #: A relative path is relative to the settings file's folder (``Settings.confdir_path``).
    confdir: str = ""
    workers: int = 2
    scan_timeout_ms: int = 5000
    dedupe_window_s: float = 60.0

    def __post_init__(self) -> None:
        """The same checks for a file (``config check``, ``run``) and for command-line options."""
        _one_of("proxy", "mode", self.mode, PROXY_MODES)
        _port("proxy", "listen_port", self.listen_port)
        _folder_name("[proxy] confdir", self.confdir)
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


#: The keys only one kind of ``[[alerts]]`` sink reads; the others must leave them at their default.
ALERT_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "secret", "secret_env", "format", "timeout_s", "ca_file"),
    "syslog": ("host", "port", "transport", "facility", "app_name", "timeout_s", "ca_file"),
    "file": ("path",),
}


@dataclass(frozen=True)
class AlertSettings:
    """One ``[[alerts]]`` table: where alerts go and which verdicts make one (docs/alerts.md)."""

    #: ``webhook``, ``syslog`` or ``file`` (JSON Lines in Elastic Common Schema field names).
    kind: str = ""
    #: Names the sink in /metrics and logs; '' means the kind. Unique among the sinks.
    name: str = ""
    #: The lowest level that alerts: ``SUSPICIOUS`` or ``MALICIOUS``.
    min_level: str = "MALICIOUS"
    #: Only responses the proxy really replaced (block mode).
    blocked_only: bool = False
    #: Which submissions alert: ``proxy``, ``extension``.
    sources: list[str] = field(default_factory=lambda: list(ALERT_SOURCES))
    #: Alerts waiting for this sink; when full the oldest is dropped (counted), scanning never waits.
    queue_size: int = 1000
    #: Delivery attempts after the first failed one, with exponential back-off; then dead-lettered.
    retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    #: Base of the dashboard link in each alert; '' means the gateway's own API address.
    dashboard_url: str = ""
    # webhook
    url: str = ""
    #: HMAC-SHA256 key for the X-MalwareSnipper-Signature header, or the environment variable
    #: holding it (which keeps it out of the file). A webhook needs one of them.
    secret: str = field(default="", repr=False)
    secret_env: str = ""
    #: ``generic`` (the verdict summary) or ``slack`` (a Slack/Mattermost incoming-webhook body).
    format: str = "generic"
    timeout_s: float = 10.0
    #: CA bundle that signs the receiver's certificate (https, syslog over TLS); '' = the system's.
    ca_file: str = ""
    # syslog
    host: str = ""
    #: 0 means 514 for udp and tcp, 6514 for tls.
    port: int = 0
    transport: str = "udp"
    facility: str = "local0"
    app_name: str = "malwaresnipper"
    # file
    #: '' means ``<data_dir>/alerts.ndjson``; relative paths are relative to the config file.
    path: str = ""

    @property
    def label(self) -> str:
        return self.name or self.kind

    def __post_init__(self) -> None:
        where = f"[[alerts]] {self.label!r}" if self.kind or self.name else "[[alerts]]"

        def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ConfigError(f"{where}: {name} = {value!r} is not one of {', '.join(repr(a) for a in allowed)}")

        if not self.kind:
            raise ConfigError(f"{where}: kind is missing (one of {', '.join(repr(k) for k in ALERT_KINDS)})")
        one_of("kind", self.kind, ALERT_KINDS)
        one_of("min_level", self.min_level, ALERT_LEVELS)
        for source in self.sources:
            one_of("sources", source, ALERT_SOURCES)
        if not self.sources:
            raise ConfigError(f"{where}: sources is empty: nothing would ever alert")
        for name, low in (("queue_size", 1), ("retries", 0), ("backoff_s", 0), ("backoff_max_s", 0),
                          ("timeout_s", 0.1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{where}: {name} must be >= {low:g}, got {getattr(self, name)!r}")
        defaults = {f.name: _field_default(f) for f in fields(AlertSettings)}
        own = ALERT_KIND_KEYS[self.kind]
        for other, keys in ALERT_KIND_KEYS.items():
            for key in keys:
                if key not in own and getattr(self, key) != defaults[key]:
                    raise ConfigError(f"{where}: {key} does not apply to kind {self.kind!r} (it is for {other!r})")
        if self.dashboard_url:
            _http_url(where, "dashboard_url", self.dashboard_url)
        if self.kind == "webhook":
            _http_url(where, "url", self.url)
            one_of("format", self.format, WEBHOOK_FORMATS)
            if self.secret and self.secret_env:
                raise ConfigError(f"{where}: set secret or secret_env, not both")
            if not (self.secret or self.secret_env):
                raise ConfigError(f"{where}: a webhook needs secret or secret_env (the HMAC key of the "
                                  "X-MalwareSnipper-Signature header its receiver verifies)")
        elif self.kind == "syslog":
            if not self.host:
                raise ConfigError(f"{where}: host is missing (the syslog receiver)")
            one_of("transport", self.transport, SYSLOG_TRANSPORTS)
            if not 0 <= self.port <= 65535:
                raise ConfigError(f"{where}: port must be a port number (0-65535), got {self.port!r}")
            one_of("facility", self.facility, tuple(SYSLOG_FACILITIES))
            if not self.app_name or len(self.app_name) > 48 or not all(33 <= ord(c) <= 126 for c in self.app_name):
                raise ConfigError(f"{where}: app_name must be 1-48 printable ASCII characters without spaces "
                                  f"(RFC 5424), got {self.app_name!r}")

    @property
    def syslog_port(self) -> int:
        return self.port or (6514 if self.transport == "tls" else 514)


def _field_default(f: Any) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _http_url(where: str, name: str, value: str) -> None:
    """An ``http://`` or ``https://`` URL with a host: anything else is a clear error."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading .port is the check: ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: {name} = {value!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {name} = {value!r} must be an http:// or https:// URL with a host")


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
    alerts: list[AlertSettings] = field(default_factory=list)
    feeds: list[FeedSettings] = field(default_factory=list)
    data_dir: str = ""
    #: The file these settings came from ('' for defaults); engine paths resolve against it.
    source: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        labels = [a.label for a in self.alerts]
        for label in labels:
            if labels.count(label) > 1:
                raise ConfigError(f"two [[alerts]] sinks are named {label!r}: give each its own name")
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

    def confdir_path(self, override: str | None = None) -> Path:
        """mitmproxy's confdir (the CA): the one rule for ``run``, ``ca`` and the docs.

        ``override`` (``--confdir``) wins and is relative to the working directory, as command-line
        paths are; else ``[proxy] confdir``, relative to the settings file's folder; else
        ``<data_dir>/certs``. Never the source tree: a checkout and an install keep the CA alike.
        """
        if override is not None:
            _folder_name("--confdir", override)
            where, chosen, base = "--confdir", Path(override).expanduser(), Path.cwd()
        elif self.proxy.confdir:
            where, chosen = "[proxy] confdir", Path(self.proxy.confdir).expanduser()
            base = Path(self.source).resolve().parent if self.source else Path.cwd()
        else:
            where, chosen, base = "the default confdir", self.data_path / "certs", Path.cwd()
        path = chosen if chosen.is_absolute() else base / chosen
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{where} {str(path)!r} is not a folder (mitmproxy keeps its CA in a folder)")
        return path


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
