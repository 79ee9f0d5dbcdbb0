"""Start and stop the API, the event stream, the store and the scan pool together.

Used by ``malwaresnipper serve``, by ``malwaresnipper run`` and by the mitmproxy addon's
``running`` hook (it runs on mitmproxy's event loop; all heavy work is in the pool and the
store's threads)::

    running = await start_services(settings)
    job = await running.service.submit(capture, method="PROXY")
    ...
    await running.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..settings import Settings
from .alerts import AlertDispatcher
from .api import build_app
from .auth import HostPolicy, OriginPolicy, check_tls, load_or_create_token
from .events import EventStreamServer
from .feeds import FeedManager, running_feeds
from .lists import ListService
from .service import ScanService

log = logging.getLogger(__name__)

#: A connection must deliver a request's complete headers this long after it opened (or after its
#: previous response), else it is closed: aiohttp's keep-alive timer also covers a connection that
#: has not finished its first request, and idle keep-alive connections cost as much.
REQUEST_HEADER_TIMEOUT_S = 5.0
#: Open API connections beyond this are answered 503 and closed at once: the API shares its
#: process, and so its file descriptors, with the proxy.
MAX_API_CONNECTIONS = 256
_BUSY_BODY = json.dumps({"error": {"code": "too_many_connections", "message": (
    f"the gateway already holds {MAX_API_CONNECTIONS} API connections; retry shortly")}}).encode()
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class _CountedConnection(asyncio.Protocol):
    """One API connection: aiohttp's protocol behind a count of the site's open connections.

    The bound is checked when the connection is made (after the TLS handshake, if any), so a
    burst of accepts cannot overshoot it; past it the client gets one 503 and the connection ends.
    """

    def __init__(self, site: BoundedTCPSite, server: web.Server) -> None:
        self.site = site
        self.server = server
        self.inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.site.open_connections >= self.site.max_connections:
            self.site.refused_connections += 1
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.site.open_connections += 1
        self.inner = self.server()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.site.open_connections -= 1
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class BoundedTCPSite(web.BaseSite):
    """aiohttp's TCP site with a bound on open connections and on the TLS handshake's time.

    aiohttp's own ``TCPSite`` accepts any number of connections; a local process opening
    thousands of half-sent requests would take the descriptors the proxy needs.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.open_connections = 0
        self.refused_connections = 0

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _CountedConnection(self, server), self.host, self.port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=True,
            ssl_handshake_timeout=REQUEST_HEADER_TIMEOUT_S if self._ssl_context else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]


@dataclass
class RunningServices:
    """Handles on what :func:`start_services` started."""

    service: ScanService
    token: str
    api_url: str
    events_url: str
    runner: web.AppRunner | None = None
    events: EventStreamServer | None = None
    alerts: AlertDispatcher | None = None
    #: the ``[[feeds]]`` refresher (None without feeds)
    feeds: FeedManager | None = None
    _stopped: bool = field(default=False, repr=False)
    _tasks: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    async def stop(self) -> None:
        """Stop accepting, let scans finish briefly, flush the store. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.runner is not None:
            await self.runner.cleanup()
        if self.events is not None:
            await self.events.stop()
        await self._tasks.aclose()
        await self.service.stop()
        if self.alerts is not None:  # after the service: its last verdicts still alert
            await self.alerts.stop()


def _ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def start_services(
    settings: Settings,
    *,
    host: str | None = None,
    api_port: int | None = None,
    events_port: int | None = None,
    pool: Any = None,
    api: bool = True,
    events: bool = True,
    lists: ListService | None = None,
) -> RunningServices:
    """Start everything; port 0 picks a free port. Raises ConfigError (non-loopback without TLS,
    a rule file that does not load) or OSError (port in use) before leaving anything running.
    ``lists``: the proxy's list service (see :class:`~.service.ScanService`)."""
    host = host or settings.server.host
    api_port = settings.server.api_port if api_port is None else api_port
    events_port = settings.server.events_port if events_port is None else events_port
    tls = check_tls(host, settings.server.tls_cert, settings.server.tls_key)
    ssl_ctx = _ssl_context(*tls) if tls else None
    token = load_or_create_token(settings.data_path)

    # The workers compile the signature rules (TOML and YARA) for themselves; a broken rule file
    # must stop start-up here, naming its file and line, not leave workers that never start.
    from ..engine.layers.signatures import check_signature_rules

    await asyncio.to_thread(check_signature_rules, settings.engine)

    # Built first: a sink that cannot be built (a secret_env not set) stops us before anything runs.
    alerts = AlertDispatcher.from_settings(settings)
    # A gateway without an event server or alerts has nobody to deliver events to: it only appends them.
    service = ScanService(settings, pool=pool, read_events=events or alerts.active, lists=lists)
    await service.start()
    running = RunningServices(service=service, token=token, api_url="", events_url="")
    try:
        if alerts.active:
            running.alerts = alerts
            await alerts.start(service.bus, gateway_id=service.gateway_id)
            service.metrics.families.append(alerts.metric_families)
            service.metrics.gauge("malwaresnipper_alert_feed_overflows_total",
                                  "Times the alert feed fell behind the event bus and lost events.",
                                  lambda: alerts.feed_overflows)
        # The feeds refresh in the background for as long as the services run, whether or not
        # this gateway serves the API (the proxy alone still blocks what they list).
        running.feeds = await running._tasks.enter_async_context(
            running_feeds(settings, service.lists, service.metrics, service.health_parts))
        # The origin policy needs the real API port, known only once bound (port 0).
        origins = OriginPolicy(api_port, settings.server.allowed_origins, host=host)
        hosts = HostPolicy(host, settings.server.allowed_hosts)
        if api:
            app = build_app(service, token=token, origins=origins, hosts=hosts)
            runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                   keepalive_timeout=REQUEST_HEADER_TIMEOUT_S)
            await runner.setup()
            running.runner = runner
            site = BoundedTCPSite(runner, host, api_port, ssl_context=ssl_ctx, max_connections=MAX_API_CONNECTIONS)
            await site.start()
            bound_port = site.port
            service.metrics.gauge("malwaresnipper_api_connections_refused_total",
                                  f"API connections answered 503 because {MAX_API_CONNECTIONS} were open.",
                                  lambda: site.refused_connections)
            if bound_port != api_port:
                origins.set_port(bound_port)
            api_port = bound_port
            scheme = "https" if ssl_ctx else "http"
            shown = f"[{host}]" if ":" in host else host
            running.api_url = f"{scheme}://{shown}:{api_port}"
            alerts.dashboard_base = running.api_url
        if events:
            stream = EventStreamServer(
                service.bus, service.snapshot,
                token=token, origins=origins, hosts=hosts, host=host, port=events_port,
                queue_size=settings.server.client_queue_size, ssl_context=ssl_ctx,
            )
            await stream.start()
            running.events = stream
            running.events_url = stream.url
            service.events_url = stream.url
            service.metrics.gauge("malwaresnipper_event_clients_closed_too_slow_total",
                                  "Event clients closed with 4008 because they fell behind.",
                                  lambda: stream.closed_too_slow)
            service.metrics.gauge("malwaresnipper_event_clients_refused_total",
                                  "Event stream connections refused (token, origin).",
                                  lambda: stream.refused)
    except BaseException:
        await running.stop()
        raise
    return running

