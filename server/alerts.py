"""Alerts out: ``[[alerts]]`` sinks fed from the event bus, never from the scan path.

:class:`AlertDispatcher` is one more subscriber of the event bus. It looks only at
``SCAN_COMPLETE`` events of scans this gateway ran (with the Redis bus every gateway sees every
gateway's events; each alerts on its own, so an alert is sent once), turns each into the verdict
summary of :mod:`.alert_formats`, and offers it to every sink whose filter it passes.

Each sink has a bounded queue and one delivery task. Offering never waits: when the queue is
full the *oldest* waiting alert is dropped (counted in ``malwaresnipper_alerts_dropped_total``),
so a sink that is down or slow costs memory up to ``queue_size`` alerts and nothing else; the
freshest alerts, the ones about what is happening now, are kept. A failed delivery is retried
with exponential back-off (``backoff_s`` doubling up to ``backoff_max_s``, ``retries`` times);
then the alert is dead-lettered: logged with its scan id and counted. Every count is in
``/metrics`` per sink (:meth:`AlertDispatcher.metric_families`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import ssl
import stat
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from .. import __version__
from ..engine.errors import ConfigError
from ..settings import SYSLOG_FACILITIES, AlertSettings, Settings
from .alert_formats import (
    LEVEL_RANK,
    SYSLOG_MAX_STREAM,
    SYSLOG_MAX_UDP,
    alert_from_event,
    dashboard_link,
    ecs_document,
    octet_counted,
    slack_body,
    syslog_message,
)
from .events import EventBus, Subscription, frame_text

log = logging.getLogger(__name__)

#: Bus events the alert feed may hold before it counts as fallen behind (ten times this, since it
#: never reports its socket congested); the feed only filters, so it keeps up unless the loop stalls.
FEED_QUEUE = 1000
#: How long :meth:`AlertDispatcher.stop` lets the sinks deliver what they hold.
STOP_GRACE_S = 5.0
#: A webhook's answer is read up to this size (it is ignored; reading it frees the connection).
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
SIGNATURE_HEADER = "X-MalwareSnipper-Signature"
#: Pre-checks on the compact JSON text of an event: a key followed by '":"' cannot occur inside a
#: JSON string (its quotes would be escaped), so these match the event's own fields only.
_COMPLETE = b'"status":"SCAN_COMPLETE"'
_QUIET = (b'"threat_level":"BENIGN"', b'"threat_level":"UNKNOWN"')


class DeliveryError(Exception):
    """A delivery that failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool = True, after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.after_s = after_s


class AlertSink:
    """A bounded queue of alerts and the task that delivers them (see module docstring)."""

    #: Alerts handed to one :meth:`deliver` call.
    batch_size = 1

    def __init__(self, config: AlertSettings) -> None:
        self.config = config
        self.name = config.label
        self.queue: deque[dict[str, Any]] = deque()
        self.delivered = 0
        self.failed = 0  # delivery attempts that failed
        self.dead_letter = 0  # alerts given up on after their retries
        self.dropped = 0  # alerts pushed out of a full queue, or left at shutdown
        self.in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._min_rank = LEVEL_RANK[config.min_level]
        self._sources = {s.upper() for s in config.sources}

    def wants(self, alert: dict[str, Any]) -> bool:
        """The sink's filter: level at least ``min_level``, from one of ``sources``, blocked if asked."""
        return (LEVEL_RANK.get(alert["level"], 0) >= self._min_rank
                and alert["source"].upper() in self._sources
                and (alert["blocked"] or not self.config.blocked_only))

    def offer(self, alert: dict[str, Any]) -> None:
        """Queue ``alert`` without waiting; a full queue loses its oldest alert."""
        if self.config.dashboard_url:
            alert = {**alert, "dashboard_url": dashboard_link(self.config.dashboard_url, alert["scan_id"])}
        if len(self.queue) >= self.config.queue_size:
            lost = self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("alerts %s: queue full (%d): dropped the oldest alert (scan %s); %d dropped so far",
                          self.name, self.config.queue_size, lost.get("scan_id"), self.dropped)
        self.queue.append(alert)
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        await self.open()
        self._task = asyncio.create_task(self._run(), name=f"alerts-{self.name}")

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Deliver what is queued within ``grace_s``; what is left is counted as dropped."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except TimeoutError:
                pass
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        left = len(self.queue) + self.in_flight
        if left:
            self.dropped += left
            log.error("alerts %s: stopping with %d alerts undelivered", self.name, left)
            self.queue.clear()
        await self.close()

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            self.in_flight = len(batch)
            try:
                await self._deliver_with_retries(batch)
            finally:
                self.in_flight = 0

    async def _deliver_with_retries(self, batch: list[dict[str, Any]]) -> None:
        attempt = 0
        while True:
            try:
                await self.deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sink's bug is a failed delivery: counted, retried, dead-lettered
                self.failed += 1
                error = exc if isinstance(exc, DeliveryError) else DeliveryError(f"{type(exc).__name__}: {exc}")
                if not error.retry or attempt >= self.config.retries:
                    self.dead_letter += len(batch)
                    log.error("alerts %s: gave up on %d alert(s) (scan %s) after %d attempt(s): %s",
                              self.name, len(batch), batch[0].get("scan_id"), attempt + 1, error)
                    return
                delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** attempt)
                if error.after_s is not None:
                    delay = min(self.config.backoff_max_s, max(delay, error.after_s))
                if attempt == 0:
                    log.warning("alerts %s: delivery failed (%s); retrying with back-off", self.name, error)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.delivered += len(batch)
            if attempt:
                log.warning("alerts %s: delivered after %d retries", self.name, attempt)
            return

    # -- what each kind does -------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare (a client session); no network yet: the receiver may well be down at start."""

    async def close(self) -> None:
        """Release connections."""

    async def deliver(self, batch: list[dict[str, Any]]) -> None:
        raise NotImplementedError


def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    """Verifying TLS client context: the system's CAs, or only ``ca_file``'s."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[[alerts]] ca_file = {ca_file!r} cannot be loaded: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class WebhookSink(AlertSink):
    """HTTP POST of one alert, signed: ``X-MalwareSnipper-Signature: sha256=<hex HMAC of the body>``."""

    def __init__(self, config: AlertSettings, secret: bytes) -> None:
        super().__init__(config)
        self.secret = secret
        self._session: Any = None

    async def open(self) -> None:
        import aiohttp

        ssl_ctx = client_ssl_context(self.config.ca_file) if urlsplit(self.config.url).scheme.lower() == "https" else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else True, limit=2),
            headers={"User-Agent": f"MalwareSnipper/{__version__}"},
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def body(self, alert: dict[str, Any]) -> bytes:
        payload = slack_body(alert) if self.config.format == "slack" else alert
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    async def deliver(self, batch: list[dict[str, Any]]) -> None:
        import aiohttp

        alert = batch[0]
        body = self.body(alert)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: self.sign(body),
                   "X-MalwareSnipper-Alert-Id": alert["alert_id"]}
        url = self.config.url
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.content.read(MAX_RESPONSE_BYTES)
                    status = resp.status
                    location = resp.headers.get("Location", "")
                    retry_after = resp.headers.get("Retry-After", "")
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise DeliveryError(f"POST {_safe(url)}: {type(exc).__name__}: {exc}") from None
            if 200 <= status < 300:
                return
            if status in (307, 308) and location:
                target = urljoin(url, location)
                # Redirects are followed only within the configured origin: a receiver (or whoever
                # took over its name) cannot send signed alerts, or the secret's MACs, elsewhere.
                if _origin(target) != _origin(self.config.url):
                    raise DeliveryError(f"POST {_safe(url)}: redirected ({status}) to another origin "
                                        f"{_safe(target)}: not followed", retry=False)
                url = target
                continue
            if status == 429 or status == 408 or status >= 500:
                raise DeliveryError(f"POST {_safe(url)}: HTTP {status}", after_s=_retry_after(retry_after))
            raise DeliveryError(f"POST {_safe(url)}: HTTP {status} (not retried: fix the receiver or the URL)",
                                retry=False)
        raise DeliveryError(f"POST {_safe(self.config.url)}: more than {MAX_REDIRECTS} redirects", retry=False)


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _safe(url: str) -> str:
    """A URL for logs: no credentials, no query (incoming-webhook URLs carry their token in the path
    at worst; the query may hold one too)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path[:40]}{'...' if len(parts.path) > 40 else ''}"


class SyslogSink(AlertSink):
    """RFC 5424 over UDP (RFC 5426), TCP (RFC 6587 octet counting) or TLS (RFC 5425)."""

    batch_size = 100

    def __init__(self, config: AlertSettings) -> None:
        super().__init__(config)
        self.facility = SYSLOG_FACILITIES[config.facility]
        self.procid = os.getpid()
        self.max_bytes = SYSLOG_MAX_UDP if config.transport == "udp" else SYSLOG_MAX_STREAM
        self._ssl = client_ssl_context(config.ca_file) if config.transport == "tls" else None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        self.connected = False
        self.connects = 0

    def message(self, alert: dict[str, Any]) -> bytes:
        return syslog_message(alert, facility=self.facility, app_name=self.config.app_name,
                              procid=self.procid, max_bytes=self.max_bytes)

    async def deliver(self, batch: list[dict[str, Any]]) -> None:
        messages = [self.message(a) for a in batch]
        if self.config.transport == "udp":
            await self._send_udp(messages)
        else:
            await self._send_stream(messages)

    async def _send_udp(self, messages: list[bytes]) -> None:
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self.config.host, self.config.syslog_port))
            except OSError as exc:
                raise DeliveryError(f"udp {self.config.host}:{self.config.syslog_port}: {exc}") from None
            self.connects += 1
        for message in messages:
            self._udp.sendto(message)  # one datagram per message; UDP tells nothing of its fate

    async def _send_stream(self, messages: list[bytes]) -> None:
        where = f"{self.config.transport} {self.config.host}:{self.config.syslog_port}"
        if not self.connected:
            await self._drop_connection()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.config.host, self.config.syslog_port, ssl=self._ssl,
                    server_hostname=self.config.host if self._ssl else None,
                ), self.config.timeout_s)
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"{where}: cannot connect: {type(exc).__name__}: {exc}") from None
            self._writer = writer
            self.connected = True
            self.connects += 1
            self._watch = asyncio.create_task(self._watch_receiver(reader))
            if self.connects > 1:
                log.warning("alerts %s: reconnected to %s", self.name, where)
        assert self._writer is not None
        try:
            self._writer.write(b"".join(octet_counted(m) for m in messages))
            await asyncio.wait_for(self._writer.drain(), self.config.timeout_s)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            await self._drop_connection()
            raise DeliveryError(f"{where}: send failed: {type(exc).__name__}: {exc}") from None

    async def _watch_receiver(self, reader: asyncio.StreamReader) -> None:
        """Notice a receiver that went away (it closes the connection) before the next write: a
        write into a connection the peer has closed would seem to succeed and be lost."""
        try:
            while await reader.read(4096):
                pass  # syslog receivers send nothing; whatever they do send is ignored
        except (OSError, ssl.SSLError):
            pass
        self.connected = False

    async def _drop_connection(self) -> None:
        self.connected = False
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._writer is not None:
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
            except (TimeoutError, OSError, ssl.SSLError):
                pass
            self._writer = None

    async def close(self) -> None:
        await self._drop_connection()
        if self._udp is not None:
            self._udp.close()
            self._udp = None


class FileSink(AlertSink):
    """JSON Lines in Elastic Common Schema field names, appended by batch.

    The file is opened for each batch and closed after it, so a log rotator may rename or remove
    it at any time (the next batch creates a new one) and needs no signal; ``copytruncate`` works
    too (O_APPEND). A new file is created 0600 in a 0700 folder. The path must be a regular file:
    a symbolic link or a FIFO there is an error, never followed or waited on.
    """

    batch_size = 500

    def __init__(self, config: AlertSettings, path: Path) -> None:
        super().__init__(config)
        self.path = path

    async def deliver(self, batch: list[dict[str, Any]]) -> None:
        lines = b"".join(
            json.dumps(ecs_document(a), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace") + b"\n"
            for a in batch
        )
        try:
            await asyncio.to_thread(append_private, self.path, lines)
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc}") from None


def append_private(path: Path, data: bytes) -> None:
    """Append ``data`` to the regular file ``path`` (created 0600), opening and closing it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def build_sink(config: AlertSettings, settings: Settings) -> AlertSink:
    """The sink for one ``[[alerts]]`` table; ConfigError for what only shows at start (a secret
    in an unset environment variable, a CA file that does not load)."""
    if config.kind == "webhook":
        secret = config.secret
        if config.secret_env:
            secret = os.environ.get(config.secret_env, "")
            if not secret:
                raise ConfigError(f"[[alerts]] {config.label!r}: secret_env = {config.secret_env!r}: "
                                  "that environment variable is not set or empty")
        if urlsplit(config.url).scheme.lower() == "https":
            client_ssl_context(config.ca_file)  # fail now, not on the first alert
        return WebhookSink(config, secret.encode())
    if config.kind == "syslog":
        return SyslogSink(config)
    if config.kind == "file":
        path = Path(config.path).expanduser() if config.path else settings.data_path / "alerts.ndjson"
        if not path.is_absolute():
            base = Path(settings.source).resolve().parent if settings.source else Path.cwd()
            path = base / path
        return FileSink(config, path)
    raise ConfigError(f"[[alerts]] {config.label!r}: unknown kind {config.kind!r}")  # pragma: no cover


class AlertDispatcher:
    """The event-bus subscriber that feeds the sinks (see module docstring)."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self.sinks = sinks
        self.gateway_id = ""
        #: Base of the dashboard links; set once the API is bound (its port may be chosen then).
        self.dashboard_base = ""
        #: Times the feed fell more than ten times FEED_QUEUE events behind the bus (events lost).
        self.feed_overflows = 0
        self.alerts = 0
        self._bus: EventBus | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertDispatcher:
        return cls([build_sink(config, settings) for config in settings.alerts])

    @property
    def active(self) -> bool:
        return bool(self.sinks)

    async def start(self, bus: EventBus, *, gateway_id: str) -> None:
        if not self.sinks:
            return
        self.gateway_id = gateway_id
        self._bus = bus
        for sink in self.sinks:
            await sink.start()
        self._sub = bus.subscribe(FEED_QUEUE, congested=lambda: False)
        self._task = asyncio.create_task(self._feed(), name="alerts-feed")

    async def stop(self) -> None:
        """Take the events still queued (the bus was flushed by the service), then let the sinks
        deliver for a few seconds."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sub is not None and self._bus is not None:
            self._drain(self._sub)
            self._bus.unsubscribe(self._sub)
            self._sub = None
        await asyncio.gather(*(sink.stop() for sink in self.sinks))

    async def _feed(self) -> None:
        assert self._bus is not None and self._sub is not None
        while True:
            sub = self._sub
            self._drain(sub)
            if sub.too_slow.is_set():
                self.feed_overflows += 1
                log.error("alerts: the alert feed fell behind the event bus; some verdicts were not "
                          "considered for alerts")
                self._bus.unsubscribe(sub)
                self._sub = self._bus.subscribe(FEED_QUEUE, congested=lambda: False)
                continue
            sub.ready.clear()
            await sub.ready.wait()

    def _drain(self, sub: Subscription) -> None:
        while sub.items:
            _seq, frame = sub.items.popleft()
            try:
                self.handle(frame)
            except Exception:  # noqa: BLE001 - one odd event must not stop the alerts
                log.exception("alerts: could not handle an event")

    def handle(self, frame: bytes) -> None:
        """Offer the alert of one bus event (a prebuilt frame) to the sinks that want it."""
        if _COMPLETE not in frame or any(q in frame for q in _QUIET):
            return  # the usual case, decided without parsing
        event = json.loads(frame_text(frame))
        if event.get("status") != "SCAN_COMPLETE" or event.get("threat_level") not in LEVEL_RANK:
            return
        if event.get("gateway_id") != self.gateway_id:
            return  # another gateway's scan (Redis bus): that gateway alerts on it
        alert = alert_from_event(event, dashboard_base=self.dashboard_base)
        self.alerts += 1
        for sink in self.sinks:
            if sink.wants(alert):
                sink.offer(alert)

    def metric_families(self) -> list[tuple[str, str, list[tuple[dict[str, str], float]]]]:
        """Per-sink counters for /metrics: (name, help, [(labels, value)])."""
        def per_sink(attr: str) -> list[tuple[dict[str, str], float]]:
            return [({"sink": s.name, "kind": s.config.kind}, float(getattr(s, attr))) for s in self.sinks]

        return [
            ("malwaresnipper_alerts_delivered_total", "Alerts a sink's receiver accepted.", per_sink("delivered")),
            ("malwaresnipper_alerts_failed_total", "Alert delivery attempts that failed (each retry counts).",
             per_sink("failed")),
            ("malwaresnipper_alerts_dead_letter_total", "Alerts given up on after their retries (logged).",
             per_sink("dead_letter")),
            ("malwaresnipper_alerts_dropped_total",
             "Alerts dropped from a full sink queue (the oldest first) or left undelivered at shutdown.",
             per_sink("dropped")),
            ("malwaresnipper_alerts_queued", "Alerts waiting for a sink.",
             [({"sink": s.name, "kind": s.config.kind}, float(len(s.queue) + s.in_flight)) for s in self.sinks]),
        ]

