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

import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..settings import Settings
from .api import build_app
from .auth import OriginPolicy, check_tls, load_or_create_token
from .events import EventStreamServer
from .service import ScanService

log = logging.getLogger(__name__)


@dataclass
class RunningServices:
    """Handles on what :func:`start_services` started."""

    service: ScanService
    token: str
    api_url: str
    events_url: str
    runner: web.AppRunner | None = None
    events: EventStreamServer | None = None
    _stopped: bool = field(default=False, repr=False)

    async def stop(self) -> None:
        """Stop accepting, let scans finish briefly, flush the store. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.runner is not None:
            await self.runner.cleanup()
        if self.events is not None:
            await self.events.stop()
        await self.service.stop()


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
) -> RunningServices:
    """Start everything; port 0 picks a free port. Raises ConfigError (non-loopback without TLS)
    or OSError (port in use) before leaving anything running."""
    host = host or settings.server.host
    api_port = settings.server.api_port if api_port is None else api_port
    events_port = settings.server.events_port if events_port is None else events_port
    tls = check_tls(host, settings.server.tls_cert, settings.server.tls_key)
    ssl_ctx = _ssl_context(*tls) if tls else None
    token = load_or_create_token(settings.data_path)

    # A gateway without an event server has nobody to deliver events to: it only appends them.
    service = ScanService(settings, pool=pool, read_events=events)
    await service.start()
    running = RunningServices(service=service, token=token, api_url="", events_url="")
    try:
        # The origin policy needs the real API port, known only once bound (port 0).
        origins = OriginPolicy(api_port, settings.server.allowed_origins, host=host)
        if api:
            app = build_app(service, token=token, origins=origins)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            running.runner = runner
            site = web.TCPSite(runner, host, api_port, ssl_context=ssl_ctx, reuse_address=True)
            await site.start()
            bound_port = runner.addresses[0][1] if runner.addresses else api_port
            if bound_port != api_port:
                origins.set_port(bound_port)
            api_port = bound_port
            scheme = "https" if ssl_ctx else "http"
            shown = f"[{host}]" if ":" in host else host
            running.api_url = f"{scheme}://{shown}:{api_port}"
        if events:
            stream = EventStreamServer(
                service.bus, service.snapshot,
                token=token, origins=origins, host=host, port=events_port,
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

