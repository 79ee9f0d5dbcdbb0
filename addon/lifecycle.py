"""The scan services' life in the proxy: start, retry, stop, and what the gateway keeps meanwhile.

``running`` starts the :class:`~malwaresnipper.server.service.ScanService` (worker pool, store,
event bus) and, unless switched off, the API/dashboard and event servers. Scanning that cannot
start is an error (mitmdump and ``malwaresnipper run`` then stop, saying why) unless
``malwaresnipper_pass_unscanned`` is set. A shared history store (PostgreSQL) that is down is
waited for instead: it is retried every few seconds, and meanwhile block mode applies its
fail-open/fail-closed policy to every response (:meth:`Lifecycle.unscanned_policy`).

This addon also holds what the other addons share for the gateway's whole life: the list service
(the config files' entries from the start, the API's once the store is reached), the traffic
counters (flushed to the store every few seconds) and the background tasks (awaited on stop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx

from ..engine.errors import MalwareSnipperError
from ..server.lists import ListService
from ..server.service import ScanClient
from ..server.store import StoreUnavailable
from ..settings import Settings
from .options import RESTART_NEEDED, GatewayOptions

log = logging.getLogger("malwaresnipper.gateway")

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
COUNTER_FLUSH_S = 5.0
#: How often a gateway whose shared history store was unreachable at start tries again.
START_RETRY_S = 5.0


class Lifecycle:
    """Starts and stops the scan services (see the module docstring)."""

    name = "malwaresnipper_lifecycle"

    def __init__(self, options: GatewayOptions, *, pool: Any = None) -> None:
        """``pool`` replaces the ScanPool the services would build (tests share one)."""
        self.options = options
        self._pool = pool
        self.services: Any = None  # server.app.RunningServices once started
        self.service: ScanClient | None = None
        self.lists = ListService()
        #: why the scan services are not running (None once they are)
        self.start_error: str | None = None
        #: True while a start is being retried (the history store is unreachable)
        self.start_pending = False
        self._start_retry: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        self._unflushed: Counter[str] = Counter()
        self._flush_task: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        #: the API/event ports on this machine: requests to them are the gateway's own traffic
        self._own_ports: frozenset[int] = frozenset()

    def configure(self, updated: set[str]) -> None:
        eff = self.options.effective
        if eff is None:
            return
        if self.services is not None and updated & RESTART_NEEDED:
            log.warning("malwaresnipper: %s take effect after a restart", ", ".join(sorted(updated & RESTART_NEEDED)))
        if self.services is None:  # once the services run, their lists are fixed, as their workers' are
            self.lists.use_files(eff.config_lists)
        self._own_ports = self._own_ports_now()

    async def running(self) -> None:
        """Start the services (see the module docstring)."""
        if self.service is not None:
            return
        if self.options.effective is None:
            # mitmproxy calls configure only when an option changes: a host that adds this addon
            # and changes none (an embedding DumpMaster) must still get the settings in force.
            every = set(ctx.options.keys())
            self.options.configure(every)
            self.configure(every)
        eff = self.options.effective
        assert eff is not None
        if getattr(ctx.options, "listen_host", "127.0.0.1") in ("", "0.0.0.0", "::"):
            log.warning("malwaresnipper: the proxy listens on all interfaces; use --listen-host 127.0.0.1 "
                        "unless other machines are meant to use it")
        from ..server.app import start_services

        settings, with_servers = eff.settings, eff.services
        try:
            self.services = await start_services(settings, api=with_servers, events=with_servers, pool=self._pool,
                                                 lists=self.lists)
        except StoreUnavailable as exc:
            self.start_error = f"the history store is unreachable ({exc}); retrying every {START_RETRY_S:.0f} s"
            self.start_pending = True
            # A warning, not an error: mitmdump stops on an error logged during its start-up, and
            # a shared PostgreSQL that is down now may be back in a moment.
            log.warning("malwaresnipper: scan services waiting: %s; meanwhile %s", self.start_error,
                        self.unscanned_policy())
            self._retry_start_later()
            return
        except (OSError, MalwareSnipperError) as exc:
            self.start_error = _start_failure(exc, settings, with_servers)
            self.start_pending = False
            if eff.pass_unscanned:
                log.warning("malwaresnipper: scan services NOT running: %s; traffic passes unscanned "
                            "(malwaresnipper_pass_unscanned is set)", self.start_error)
            else:
                log.error("malwaresnipper: scan services NOT running: %s; stopping (set "
                          "malwaresnipper_pass_unscanned to keep proxying unscanned)", self.start_error)
            return
        self.start_error = None
        self.start_pending = False
        service: ScanClient = self.services.service
        service.proxy_address = (ctx.options.listen_host or "127.0.0.1", int(ctx.options.listen_port or 8080))
        self.service = service
        self._own_ports = self._own_ports_now()
        self._flush_task = asyncio.create_task(self._flush_counters_loop())
        if with_servers:
            log.info("malwaresnipper: API and dashboard on %s, events on %s", self.services.api_url,
                     self.services.events_url)
        _freeze_startup_objects()
        log.info("malwaresnipper: gateway ready (%s mode)", eff.mode)

    def dashboard_url(self) -> str:
        """Where the dashboard is served ('' while the API is not running): the block page's scan link."""
        return str(getattr(self.services, "api_url", "") or "")

    def unscanned_policy(self) -> str:
        """What happens to responses while nothing can scan them, in words."""
        eff = self.options.effective
        if eff is None or eff.mode == "monitor":
            return "responses pass unscanned (monitor mode)"
        if eff.fail_closed:
            return "pages and scripts are blocked (block mode, fail_closed)"
        return "responses pass unscanned, marked X-MalwareSnipper: unscanned (block mode, fail open)"

    def _retry_start_later(self) -> None:
        async def retry() -> None:
            await asyncio.sleep(START_RETRY_S)
            await self.running()

        self._start_retry = asyncio.create_task(retry())

    async def done(self) -> None:
        if self._start_retry is not None:
            self._start_retry.cancel()
        if self._flush_task is not None:
            self._flush_task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=3.0)
        if self.services is not None:
            await self._flush_counters()
            await self.services.stop()
        self.services = self.service = None
        self._own_ports = self._own_ports_now()
        log.info("malwaresnipper: stopped; %s", _format_counters(self.counters))

    # -- what the other addons share -------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background (awaited, briefly, when the gateway stops)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(log_task_error)
        return task

    def count(self, name: str, amount: int = 1) -> None:
        """Count traffic (``proxy_<name>`` in the store's counters, and in the stop message)."""
        self.counters[name] += amount
        self._unflushed[name] += amount

    async def _flush_counters(self) -> None:
        if self.service is None or not self._unflushed:
            return
        pending, self._unflushed = self._unflushed, Counter()
        for name, amount in pending.items():
            try:
                await self.service.count(f"proxy_{name}", amount)
            except Exception:  # noqa: BLE001 - counters must never disturb traffic
                log.debug("could not store counter %s", name, exc_info=True)

    async def _flush_counters_loop(self) -> None:
        while True:
            await asyncio.sleep(COUNTER_FLUSH_S)
            await self._flush_counters()

    def is_own_traffic(self, host: str, port: int) -> bool:
        """A request to this gateway's own API or event server."""
        return port in self._own_ports and host.lower() in LOCAL_HOSTS

    def _own_ports_now(self) -> frozenset[int]:
        """The configured API/event ports and those the servers really bound (port 0 = any).

        Worked out when the configuration or the services change, not per request."""
        eff = self.options.effective
        if eff is None:
            return frozenset()
        ports = {eff.settings.server.api_port, eff.settings.server.events_port}
        if self.services is not None:
            for url in (self.services.api_url, self.services.events_url):
                try:
                    if url:
                        ports.add(urlsplit(url).port or 0)
                except ValueError:
                    pass
        return frozenset(ports)


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Leave what is loaded by now out of the cyclic collector's full passes (once per process).

    mitmproxy, the engine's modules and the services live as long as the proxy; a full collection
    would otherwise walk all of them while requests wait (a pause in the latency tail)."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.freeze()


def _start_failure(exc: BaseException, settings: Settings, with_servers: bool) -> str:
    """A sentence saying why the scan services did not start, and what to do about it."""
    if isinstance(exc, OSError) and with_servers:
        server = settings.server
        return (f"could not start the API/dashboard ({server.host}:{server.api_port}) or the event stream "
                f"({server.host}:{server.events_port}): {exc}; is another gateway running? Choose free ports "
                "with --api-port and --events-port (malwaresnipper_api_port, malwaresnipper_events_port)")
    return f"{type(exc).__name__}: {exc}"


def _format_counters(counters: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "no traffic"


def log_task_error(task: asyncio.Task[Any]) -> None:
    """Log a background task's failure (its caller is gone)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("malwaresnipper: background scan failed", exc_info=task.exception())
