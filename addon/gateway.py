"""The mitmproxy addon: scan live HTML and JavaScript responses, and block with an explanation.

Hooks, in the order a flow meets them:

* ``request``: the gateway's own origin (``http://malwaresnipper.invalid``: the confirmation
  pages of "proceed once" and "always allow", see :mod:`.bypass`) is answered here; traffic to the
  gateway's own API/event ports and allowlisted sites is
  marked "not scanned"; in block mode a URL on a blocklist is answered with the block page before
  any upstream connection.
* ``responseheaders``: the scan decision is made once, by :func:`~.scanplan.plan_scan`, the way
  the browser decides what to run or render (the request's ``Sec-Fetch-Dest``, the last valid
  ``Content-Type``, ``nosniff``): a ``<script src>`` is scanned as a script whatever type it
  claims, an HTML/SVG/XML document as a page, an ``<img>`` not at all. Bodies the browser will
  not run or render, or that are too large, are streamed through untouched (never buffered)
  and counted; in block mode a body the browser would run that passes unscanned (too large,
  undecodable, overload) is also recorded in the history with its reason.
* ``response``: the body is decoded (content-encoding, charset) and submitted to the
  :class:`~malwaresnipper.server.service.ScanService` (which runs the engine in the worker pool,
  publishes events and stores the verdict). In **monitor** mode the hook returns at once and the
  scan runs alongside. In **block** mode it awaits the verdict within the budget; a MALICIOUS page
  becomes the block page, a MALICIOUS script an inert script; a timeout or error lets the response
  through with an ``X-MalwareSnipper`` header saying so, unless ``fail_closed`` is set.

Options (``--set name=value``; an option the user set beats the config file, even at its
default; one left alone defers to the file): see :meth:`Gateway.load` and docs/configuration.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import ctx, exceptions, http

from ..engine.capture import Capture, Source
from ..engine.errors import CaptureError, MalwareSnipperError
from ..engine.lists import ListEntries, load_list_file, merge
from ..engine.results import Severity
from ..engine.verdict import ThreatLevel, Verdict
from ..server.store import StoreUnavailable
from ..settings import PROXY_MODES, Settings, load_settings
from . import blockpage
from .blockpage import CONFIRM_PATH, CONTROL_HOST, CONTROL_ORIGIN, BypassLinks
from .bypass import BypassTokens
from .decode import DecodeError, BodyTooLarge
from .flowurl import pretty_url
from .linking import PageLinker
from .recent import RecentVerdicts
from .bigbody import StreamTap
from .responses import DecodedBody, body_looks_like_script, build_capture, decode_body, wants_buffering
from .scanplan import ScanPlan, depends_on_destination, header_values, is_nosniff, plan_scan

log = logging.getLogger("malwaresnipper.gateway")

#: Options that override a setting of the config file when the user sets them: (section, field).
OVERRIDES: dict[str, tuple[str, str]] = {
    "malwaresnipper_mode": ("proxy", "mode"),
    "malwaresnipper_budget_ms": ("proxy", "block_budget_ms"),
    "malwaresnipper_fail_closed": ("proxy", "fail_closed"),
    "malwaresnipper_max_body_bytes": ("proxy", "max_body_bytes"),
    "malwaresnipper_workers": ("proxy", "workers"),
    "malwaresnipper_scan_timeout_ms": ("proxy", "scan_timeout_ms"),
    "malwaresnipper_api_port": ("server", "api_port"),
    "malwaresnipper_events_port": ("server", "events_port"),
}
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Bodies above this size are decoded in a thread, not on the event loop.
THREAD_DECODE_BYTES = 256 * 1024
COUNTER_FLUSH_S = 5.0
#: Scans waiting per worker beyond which responses pass unscanned (counted as overload): in all,
#: and of one site (which then overloads only itself: the pool serves sites in turn).
MAX_QUEUED_PER_WORKER = 200
MAX_QUEUED_PER_SITE_PER_WORKER = 25
HEADER = "X-MalwareSnipper"
#: How often a gateway whose shared history store was unreachable at start tries again.
START_RETRY_S = 5.0


@dataclasses.dataclass(frozen=True)
class Effective:
    """The settings in force: the config file's, overridden by options changed from default."""

    settings: Settings
    mode: str
    budget_s: float
    fail_closed: bool
    max_body_bytes: int
    services: bool
    #: keep proxying, unscanned, when the scan services cannot start
    pass_unscanned: bool = False


class Gateway:
    """The addon (see the module docstring)."""

    def __init__(self, pool: Any = None) -> None:
        """``pool`` replaces the ScanPool the services would build (tests share one)."""
        self._pool = pool
        self.effective: Effective | None = None
        self.counters: Counter[str] = Counter()
        self._unflushed: Counter[str] = Counter()
        self.bypass = BypassTokens()
        self.linker = PageLinker()
        self.recent = RecentVerdicts(Settings().proxy.dedupe_window_s)
        self.services: Any = None  # server.app.RunningServices once started
        self.service: Any = None  # server.service.ScanService
        self._config_lists = (ListEntries(), ListEntries())  # (allow, block) from the config files
        self._local_allow: set[str] = set()
        #: the API/event ports on this machine: requests to them are the gateway's own traffic
        self._own_ports: frozenset[int] = frozenset()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight: dict[Any, asyncio.Task[Any]] = {}
        self._stream_threshold: str | None = None
        self._flush_task: asyncio.Task[None] | None = None
        #: why the scan services are not running (None once they are)
        self.start_error: str | None = None
        #: True while a start is being retried (the history store is unreachable)
        self.start_pending = False
        self._start_retry: asyncio.Task[None] | None = None
        #: malwaresnipper_* options the user set (see load)
        self._user_set: set[str] = set()
        #: the options the latest update added to _user_set (undone if it is rolled back)
        self._last_marked: set[str] = set()
        self._rolling_back = False

    # -- options -----------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        d = Settings()
        loader.add_option("malwaresnipper_mode", str, d.proxy.mode,
                          "monitor: never wait for a verdict; block: wait within the budget and block malicious pages.",
                          choices=list(PROXY_MODES))
        loader.add_option("malwaresnipper_config", str, "",
                          "Path to malwaresnipper.toml (default: ./malwaresnipper.toml when present).")
        loader.add_option("malwaresnipper_budget_ms", int, d.proxy.block_budget_ms,
                          "Block mode: how long a response may wait for its verdict.")
        loader.add_option("malwaresnipper_fail_closed", bool, d.proxy.fail_closed,
                          "Block mode: block when the scan times out or fails, instead of letting it through.")
        loader.add_option("malwaresnipper_max_body_bytes", int, d.proxy.max_body_bytes,
                          "Bodies larger than this stream through unscanned (counted).")
        loader.add_option("malwaresnipper_workers", int, d.proxy.workers, "Scan worker processes.")
        loader.add_option("malwaresnipper_scan_timeout_ms", int, d.proxy.scan_timeout_ms,
                          "A scan running longer is killed (its worker is replaced).")
        loader.add_option("malwaresnipper_api_port", int, d.server.api_port, "API and dashboard port.")
        loader.add_option("malwaresnipper_events_port", int, d.server.events_port, "Event stream port.")
        loader.add_option("malwaresnipper_data_dir", str, "",
                          "History, token and lists (default: $MALWARESNIPPER_HOME or ~/.malwaresnipper).")
        loader.add_option("malwaresnipper_services", bool, True,
                          "Start the API/dashboard and event stream servers with the proxy.")
        loader.add_option("malwaresnipper_pass_unscanned", bool, False,
                          "Keep the proxy running, passing traffic unscanned, when the scan services cannot "
                          "start (by default the gateway says why and stops).")
        # An update that mitmproxy refused is rolled back and announced again: see configure.
        loader.master.options.errored.connect(self._note_rollback)

    def _note_rollback(self, exc: Exception) -> None:
        self._rolling_back = True

    def configure(self, updated: set[str]) -> None:
        rollback, self._rolling_back = self._rolling_back, False
        if not any(name.startswith("malwaresnipper_") for name in updated) and self.effective is not None:
            return
        user_set = self._user_set_after(set(updated), rollback)
        try:
            effective = self._effective(user_set)
        except (MalwareSnipperError, ValueError) as exc:
            raise exceptions.OptionsError(f"malwaresnipper: {exc}") from None
        self._user_set = user_set
        restart_needed = {"malwaresnipper_workers", "malwaresnipper_api_port", "malwaresnipper_events_port",
                          "malwaresnipper_data_dir", "malwaresnipper_services", "malwaresnipper_config",
                          "malwaresnipper_scan_timeout_ms"}
        if self.services is not None and updated & restart_needed:
            log.warning("malwaresnipper: %s take effect after a restart", ", ".join(sorted(updated & restart_needed)))
        self.effective = effective
        self._own_ports = self._own_ports_now()
        self.recent.window_s = effective.settings.proxy.dedupe_window_s
        self._set_stream_threshold(effective.max_body_bytes)
        log.info("malwaresnipper: %s mode, budget %d ms%s, body cap %d bytes",
                 effective.mode, effective.budget_s * 1000, ", fail closed" if effective.fail_closed else "",
                 effective.max_body_bytes)

    def _set_stream_threshold(self, max_body: int) -> None:
        """Let mitmproxy switch a body that grows past our cap to streaming (chunked bodies have
        no Content-Length for ``responseheaders`` to judge), unless the user set their own."""
        opts = ctx.options
        if "stream_large_bodies" not in opts:  # defined by mitmproxy 12's proxyserver addon
            return
        current = opts.stream_large_bodies
        if current is None or current == self._stream_threshold:
            self._stream_threshold = str(max_body)
            if current != self._stream_threshold:
                opts.update(stream_large_bodies=self._stream_threshold)

    def _user_set_after(self, updated: set[str], rollback: bool) -> set[str]:
        """The options the user has set, once this update is applied.

        An option the user set, even to its built-in default, overrides the config file; one
        left alone defers to it. mitmproxy has no notion of "set": an update names the options
        someone set, except the configure call with every option (a script being loaded, after
        mitmdump applied its ``--set`` values unseen by us, or a reset), where we ask the options
        which were given a value, and the rollback of a refused update, which sets nothing.
        """
        if rollback:
            self._last_marked = set()
            return self._user_set - self._last_marked
        opts = ctx.options
        if len(updated) >= len(opts.keys()):
            named = {name for name in OVERRIDES if _given_a_value(opts, name)}
        else:
            named = updated & OVERRIDES.keys()
        self._last_marked = named - self._user_set
        return self._user_set | named

    def _effective(self, user_set: set[str]) -> Effective:
        """The config file's settings with every option the user set on top, validated once by
        the settings' own checks (so `run`, `mitmdump --set` and `config check` agree)."""
        opts = ctx.options
        config = opts.malwaresnipper_config
        if config and not Path(config).expanduser().is_file():
            raise ValueError(f"malwaresnipper_config: no such file: {config}")
        settings = load_settings(Path(config).expanduser() if config else None)
        chosen: dict[str, dict[str, Any]] = {"proxy": {}, "server": {}}
        for option in user_set:
            section, field_name = OVERRIDES[option]
            chosen[section][field_name] = getattr(opts, option)
        settings = dataclasses.replace(
            settings,
            proxy=dataclasses.replace(settings.proxy, **chosen["proxy"]),
            server=dataclasses.replace(settings.server, **chosen["server"]),
            data_dir=opts.malwaresnipper_data_dir or settings.data_dir,
        )
        self._config_lists = (_load_lists(settings, "allowlist_files"), _load_lists(settings, "blocklist_files"))
        proxy = settings.proxy
        return Effective(settings, proxy.mode, proxy.block_budget_ms / 1000.0, proxy.fail_closed,
                         proxy.max_body_bytes, opts.malwaresnipper_services, opts.malwaresnipper_pass_unscanned)

    # -- lifecycle ---------------------------------------------------------------------------

    async def running(self) -> None:
        """Start the scan service (pool, store, events) and, unless switched off, the servers.

        Scanning that cannot start is an error (mitmdump and ``malwaresnipper run`` then stop,
        saying why) unless ``malwaresnipper_pass_unscanned`` is set. A shared history store
        (PostgreSQL) that is down is waited for instead: it is retried every few seconds, and
        meanwhile block mode applies its fail-open/fail-closed policy to every response.
        """
        if self.service is not None:
            return
        if self.effective is None:
            # mitmproxy calls configure only when an option changes: a host that adds this addon
            # and changes none (an embedding DumpMaster) must still get the settings in force.
            self.configure(set(ctx.options.keys()))
        assert self.effective is not None
        if getattr(ctx.options, "listen_host", "127.0.0.1") in ("", "0.0.0.0", "::"):
            log.warning("malwaresnipper: the proxy listens on all interfaces; use --listen-host 127.0.0.1 "
                        "unless other machines are meant to use it")
        from ..server.app import start_services

        settings = self.effective.settings
        with_servers = self.effective.services
        try:
            self.services = await start_services(settings, api=with_servers, events=with_servers, pool=self._pool)
        except StoreUnavailable as exc:
            self.start_error = f"the history store is unreachable ({exc}); retrying every {START_RETRY_S:.0f} s"
            self.start_pending = True
            # A warning, not an error: mitmdump stops on an error logged during its start-up, and
            # a shared PostgreSQL that is down now may be back in a moment.
            log.warning("malwaresnipper: scan services waiting: %s; meanwhile %s", self.start_error,
                        self._unscanned_policy())
            self._retry_start_later()
            return
        except (OSError, MalwareSnipperError) as exc:
            self.start_error = _start_failure(exc, settings, with_servers)
            self.start_pending = False
            if self.effective.pass_unscanned:
                log.warning("malwaresnipper: scan services NOT running: %s; traffic passes unscanned "
                            "(malwaresnipper_pass_unscanned is set)", self.start_error)
            else:
                log.error("malwaresnipper: scan services NOT running: %s; stopping (set "
                          "malwaresnipper_pass_unscanned to keep proxying unscanned)", self.start_error)
            return
        self.start_error = None
        self.start_pending = False
        self.service = self.services.service
        self.service.proxy_address = (ctx.options.listen_host or "127.0.0.1", int(ctx.options.listen_port or 8080))
        self._own_ports = self._own_ports_now()
        pool = self.service.pool
        if hasattr(pool, "start"):
            pool.start()  # warm the workers now, not on the first page
        self._flush_task = asyncio.create_task(self._flush_counters_loop())
        if with_servers:
            log.info("malwaresnipper: API and dashboard on %s, events on %s", self.services.api_url, self.services.events_url)
        _freeze_startup_objects()
        log.info("malwaresnipper: gateway ready (%s mode)", self.effective.mode)

    def _unscanned_policy(self) -> str:
        """What happens to responses while nothing can scan them, in words."""
        eff = self.effective
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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)
        if self.services is not None:
            await self._flush_counters()
            await self.services.stop()
        self.services = self.service = None
        self._own_ports = self._own_ports_now()
        log.info("malwaresnipper: stopped; %s", _format_counters(self.counters))

    # -- counters ----------------------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
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

    def _overloaded(self) -> bool:
        pool = self.service.pool if self.service is not None else None
        depth = int(getattr(pool, "queue_depth", 0) or 0)
        workers = max(1, int(self.effective.settings.proxy.workers) if self.effective else 1)
        return depth >= MAX_QUEUED_PER_WORKER * workers

    def _site_overloaded(self, host: str) -> bool:
        """This response's own site has too many scans waiting: a site flooding the pool
        overloads itself only (the pool serves sites in turn), and must not win a pass by it."""
        site_depth = getattr(self.service.pool if self.service is not None else None, "site_depth", None)
        workers = max(1, int(self.effective.settings.proxy.workers) if self.effective else 1)
        return site_depth is not None and site_depth(host) >= MAX_QUEUED_PER_SITE_PER_WORKER * workers

    # -- request -----------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        eff = self.effective
        if eff is None or flow.response is not None:
            return
        req = flow.request
        if req.host.lower() == CONTROL_HOST:
            flow.metadata["malwaresnipper_skip"] = "control"
            await self._control(flow)
            return
        if self._is_own_traffic(req.host, req.port):
            flow.metadata["malwaresnipper_skip"] = "own_traffic"
            return
        url = pretty_url(req)
        if self._is_allowed(url):
            flow.metadata["malwaresnipper_skip"] = "allowlisted"
            return
        client = _client_of(flow)
        if self.bypass.take_pass(url, client):
            flow.metadata["malwaresnipper_pass"] = True
            log.info("malwaresnipper: proceed-once pass used for %s", url[:300])
            return
        if eff.mode == "block":
            reason = self._blocklisted(url)
            if reason is not None:
                self.count("blocked_request")
                log.warning("malwaresnipper: blocked at request time (blocklist): %s", url[:300])
                flow.response = self._block_response(
                    flow, url=url, reasons=[("critical", reason)], risk=None, classification=None, scan_id=None,
                    may_allow=False,
                )
                flow.metadata["malwaresnipper_skip"] = "blocked_at_request"
                self._spawn(self._record_url_only(url))

    def _is_own_traffic(self, host: str, port: int) -> bool:
        return port in self._own_ports and host.lower() in LOCAL_HOSTS

    def _own_ports_now(self) -> frozenset[int]:
        """The configured API/event ports and those the servers really bound (port 0 = any).

        Worked out when the configuration or the services change, not per request."""
        if self.effective is None:
            return frozenset()
        server = self.effective.settings.server
        ports = {server.api_port, server.events_port}
        if self.services is not None:
            for url in (self.services.api_url, self.services.events_url):
                try:
                    if url:
                        ports.add(urlsplit(url).port or 0)
                except ValueError:
                    pass
        return frozenset(ports)

    def _is_allowed(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        # The host is worked out only when a list could match it: this runs on every request.
        if self._local_allow and (parts.hostname or "").lower() in self._local_allow:
            return True
        if self.service is not None and self.service.is_allowed(url):
            return True
        allow = self._config_lists[0]
        if not allow.urls and not allow.domains:
            return False
        return bool(allow.match_url(url) or allow.match_domain((parts.hostname or "").lower()))

    def _blocklisted(self, url: str) -> str | None:
        """Why ``url`` is on a blocklist (API-managed or config file), or None."""
        if self.service is not None and self.service.is_blocked(url):
            return "This address is on your blocklist."
        block = self._config_lists[1]
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return None
        hit = block.match_url(url) or block.match_domain(host)
        if hit:
            entry, info = hit
            return f"{entry} is on a blocklist ({info.classification}, {info.source})."
        return None

    async def _control(self, flow: http.HTTPFlow) -> None:
        """The gateway's own origin: the confirmation page of a bypass (GET) and its form (POST).

        Nothing a blocked site can read or send gets past here: the block page it can read holds
        only a block id; the token is minted on this page, which no other origin can read (no
        CORS, CORP same-origin, no framing), and redeemed only by a POST from this origin."""
        req = flow.request
        path = req.path.split("?", 1)[0]
        if path != CONFIRM_PATH:
            flow.response = _notice(404, "Not found", "There is nothing here.")
            return
        client = _client_of(flow)
        if req.method == "GET":
            block_id = req.query.get("block", "")
            action = req.query.get("action", "")
            block = self.bypass.block(block_id, client)
            if block is None or action not in ("proceed", "allow") or not _top_level_navigation(req):
                flow.response = _notice(403, "This link has expired",
                                        "Go back and load the page again to get a fresh block page.")
                return
            if action == "allow" and not block.may_allow:
                flow.response = _notice(403, "This site cannot be allowed here",
                                        "It is on your blocklist. Remove it from the blocklist in the dashboard.")
                return
            page = blockpage.render_confirm_page(url=block.url, reasons=block.reasons, action=action,
                                                 token=self.bypass.mint(block_id, action, client), block_id=block_id)
            flow.response = http.Response.make(200, page.encode("utf-8"), blockpage.confirm_headers(block.url))
            return
        if req.method != "POST":
            flow.response = _notice(405, "Use the buttons on the block page", "This address only accepts its own form.")
            return
        form: dict[str, list[str]] = {}
        try:
            form = parse_qs(req.get_text(strict=False) or "", max_num_fields=5)
        except (ValueError, UnicodeDecodeError):
            pass
        token, action = (form.get("token") or [""])[0], (form.get("action") or [""])[0]
        block = self.bypass.redeem(token, action, client) if token and _from_control_origin(req) else None
        if block is None:
            log.warning("malwaresnipper: refused a bypass request from %s (bad or replayed token, or not "
                        "sent by the gateway's own page)", client)
            flow.response = _notice(403, "This link has expired",
                                    "Go back and load the page again to get a fresh block page.")
            return
        if action == "proceed":
            self.bypass.allow_once(block.url, client)
            self.count("proceed_once")
            log.warning("malwaresnipper: user chose to proceed once to %s", block.url[:300])
        else:
            host = (urlsplit(block.url).hostname or "").lower()
            await self._allow_site(host)
            self.recent.clear()
            self.count("always_allow")
            log.warning("malwaresnipper: user added %s to the allowlist", host)
        flow.response = http.Response.make(
            303, b"", {"Location": block.url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    async def _allow_site(self, host: str) -> None:
        """Put ``host`` on the service's allowlist (where the dashboard can remove it again)."""
        if self.service is not None:
            try:
                await self.service.add_list_entry("allow", host, "domain", note="allowed from the block page")
                return
            except Exception:  # noqa: BLE001 - fall back to an in-memory entry for this run
                log.exception("could not store %s in the allowlist; allowing it until restart", host)
        self._local_allow.add(host)

    # -- responseheaders -----------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        eff = self.effective
        if eff is None or flow.response is None:
            return
        skip = flow.metadata.get("malwaresnipper_skip")
        if skip in ("own_traffic", "allowlisted"):
            flow.response.stream = True
            self.count(f"unscanned_{skip}")
            return
        headers = flow.response.headers
        length: int | None = None
        declared = headers.get("content-length")  # each lookup scans every header: look once
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = None
        plan = _plan(flow)
        reason = wants_buffering(plan, length, eff.max_body_bytes)
        if reason is not None:
            flow.response.stream = True
            flow.metadata["malwaresnipper_skip"] = reason
            self.count(f"unscanned_{reason}")
            if reason == "too_large":
                log.info("malwaresnipper: %s streamed unscanned (%s bytes over the %d-byte cap)",
                         pretty_url(flow.request)[:300], length, eff.max_body_bytes)
                self._tap_large_body(flow)

    # -- response ----------------------------------------------------------------------------

    async def response(self, flow: http.HTTPFlow) -> None:
        eff = self.effective
        if eff is None or flow.response is None:
            return
        if isinstance(flow.metadata.get("malwaresnipper_tap"), StreamTap):
            self._spawn(self._scan_tapped(flow))
            return
        if flow.metadata.get("malwaresnipper_skip"):
            return
        plan = _plan(flow)
        if flow.response.stream:  # switched to streaming by mitmproxy: it outgrew the cap
            self.count("unscanned_too_large")
            log.info("malwaresnipper: %s streamed unscanned (grew past the %d-byte cap)",
                     pretty_url(flow.request)[:300], eff.max_body_bytes)
            self._record_unscanned(pretty_url(flow.request), "too_large",
                                   f"grew past the {eff.max_body_bytes}-byte cap")
            return
        if self.service is None:
            self._pass_without_service(flow)
            return
        resp, req = flow.response, flow.request
        raw = resp.raw_content
        if req.method == "HEAD" or not raw or resp.status_code in (204, 304):
            return
        url = pretty_url(req)
        # A body over the cap that arrived whole anyway (chunked, no Content-Length, mitmproxy 11
        # buffering it) is decoded as a stream and reduced below (addon/bigbody.py), not skipped.
        passed = bool(flow.metadata.get("malwaresnipper_pass"))
        # the same bytes read as a page and as a script are different scans
        key = self.recent.key(f"{url}\x00{plan.signature}", raw)
        blocking = eff.mode == "block" and not passed
        seen = self.recent.get(key)
        if seen is not None:
            self.count("reused_verdict")
            if blocking:
                self._apply_verdict(flow, url, seen.kind, seen.verdict, seen.scan_id)
            return
        pending = self._inflight.get(key)
        if pending is not None:  # the same bytes are being scanned right now: share that scan
            self.count("reused_scan")
            if blocking:
                await self._wait_and_apply(flow, url, pending, None)
            return
        client = _client_of(flow)
        info = _FlowInfo(
            url=url,
            client=client,
            client_id=flow.client_conn.id,
            referer=req.headers.get("referer"),
            fetch_dest=req.headers.get("sec-fetch-dest", ""),
            content_type=resp.headers.get("content-type"),
            content_encoding=header_values(resp.headers.fields, b"content-encoding"),
            headers=list(resp.headers.items(multi=True)),
            path=req.path,
            plan=plan,
            key=key,
        )
        quarantine = self.service.quarantined(url) if blocking else None
        refusal = "site_timeouts"
        if quarantine is None and blocking and self._site_overloaded(req.host):
            quarantine, refusal = "too many of this site's pages are waiting to be scanned", "site_overload"
        if quarantine is not None:
            # This site's pages keep timing out the scanner (or flood it): waiting for one more
            # would let it through on the budget or starve the pool, so they are refused for now.
            self.count(f"blocked_{refusal}")
            log.warning("malwaresnipper: blocked %s: %s", url[:300], quarantine)
            kind = "js" if body_looks_like_script(info.plan) else "html"
            reason = f"Not scanned: {quarantine}; this gateway refuses its pages for now."
            flow.response = (_inert_response(url, [reason], None) if kind == "js" else
                             self._block_response(flow, url=url, reasons=[("unscanned", reason)], risk=None,
                                                  classification=None, scan_id=None))
            self._record_unscanned(url, refusal, quarantine)
            return
        if self._overloaded():
            # More scans waiting than the workers can clear: pass unscanned rather than queue
            # without bound (monitor) or make every response wait out its budget (block).
            self.count("unscanned_overload")
            if not eff.fail_closed:
                self._record_unscanned(url, "overload", "more scans waiting than the workers can clear")
            if eff.mode == "block" and not eff.fail_closed:
                resp.headers[HEADER] = "unscanned; reason=overload"
            if not (eff.mode == "block" and eff.fail_closed):
                return
        task = self._start_scan(info, raw, block=blocking)
        if blocking:  # monitor mode (or a proceed-once pass): the response goes on now
            await self._wait_and_apply(flow, url, task, info)

    def _pass_without_service(self, flow: http.HTTPFlow) -> None:
        """No scan service (starting, or failed with pass_unscanned): block mode's failure policy."""
        eff = self.effective
        assert eff is not None and flow.response is not None
        self.count("unscanned_no_service")
        if eff.mode != "block":
            return
        url = pretty_url(flow.request)
        if eff.fail_closed:
            self.count("fail_closed")
            reason = "The scan service is not running, and this gateway blocks unscanned content."
            flow.response = self._block_response(flow, url=url, reasons=[("unscanned", reason)], risk=None,
                                                 classification=None, scan_id=None)
        else:
            flow.response.headers[HEADER] = "unscanned; reason=no_service"
        log.warning("malwaresnipper: %s %s: no scan service (%s)", url[:300],
                    "blocked" if eff.fail_closed else "passed unscanned", self.start_error or "not started")

    def _start_scan(self, info: _FlowInfo, raw: bytes, *, block: bool) -> asyncio.Task[_Outcome | None]:
        """Run :meth:`_scan` as a task, findable by its body key while it runs."""
        task = asyncio.create_task(self._scan(info, raw, block=block))
        key = info.key
        self._inflight[key] = task
        self._tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if self._inflight.get(key) is t:
                del self._inflight[key]
            _log_task_error(t)

        task.add_done_callback(finished)
        return task

    async def _wait_and_apply(self, flow: http.HTTPFlow, url: str, task: asyncio.Task[_Outcome | None],
                              info: _FlowInfo | None) -> None:
        """Block mode: wait for ``task`` within the budget, then block, pass, or fail open/closed."""
        eff = self.effective
        assert eff is not None and flow.response is not None
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), timeout=eff.budget_s)
        except asyncio.TimeoutError:
            outcome = _Outcome(error="timeout")
            if not eff.fail_closed and info is not None:
                # the record must not claim a block that did not happen (see _scan for a job
                # submitted after this point)
                info.gave_up = True
                if info.job is not None:
                    info.job.block_on_malicious = False
        except Exception:  # noqa: BLE001 - logged by the task's callback
            outcome = _Outcome(error="error")
        if outcome is None:  # not HTML/JS, or not scannable: untouched
            return
        if outcome.error is not None:
            if eff.fail_closed:
                self.count("fail_closed")
                log.warning("malwaresnipper: %s blocked because its scan did not finish (%s) and fail_closed is set",
                            url[:300], outcome.error)
                reason = f"The scan did not finish ({outcome.error}) and this gateway blocks unscanned content."
                if outcome.kind == "js":
                    flow.response = _inert_response(url, [reason], outcome.scan_id)
                else:
                    flow.response = self._block_response(flow, url=url, reasons=[("unscanned", reason)],
                                                         risk=None, classification=None, scan_id=outcome.scan_id)
            else:
                self.count("fail_open")
                log.warning("malwaresnipper: %s passed unscanned (%s)", url[:300], outcome.error)
                flow.response.headers[HEADER] = f"unscanned; reason={outcome.error}"
                self._spawn(self._record_pass(url, outcome, info))
            return
        assert outcome.verdict is not None
        self._apply_verdict(flow, url, outcome.kind, outcome.verdict, outcome.scan_id)

    def _apply_verdict(self, flow: http.HTTPFlow, url: str, kind: str, verdict: Verdict, scan_id: str | None) -> None:
        """Block mode: replace a MALICIOUS page or script; mark anything else as scanned."""
        assert flow.response is not None
        if not verdict.is_malicious:
            eff = self.effective
            if not verdict.complete and eff is not None and eff.fail_closed:
                # an incomplete scan is a scan that partly failed: fail closed means refuse it
                self.count("fail_closed")
                reason = ("Not everything here could be analysed (" + "; ".join(verdict.incomplete_reasons)[:300]
                          + ") and this gateway blocks what it could not check.")
                if kind == "js":
                    flow.response = _inert_response(url, [reason], scan_id)
                else:
                    flow.response = self._block_response(flow, url=url, reasons=[("unscanned", reason)],
                                                         risk=verdict.risk_score, classification=verdict.classification,
                                                         scan_id=scan_id)
                return
            flow.response.headers[HEADER] = (f"{verdict.threat_level.value}; risk={verdict.risk_score:.1f}"
                                             + ("" if verdict.complete else "; incomplete"))
            return
        reasons = _reasons(verdict)
        if kind == "js":
            self.count("blocked_script")
            flow.response = _inert_response(url, [t for _, t in reasons], scan_id)
            log.warning("malwaresnipper: blocked script %s (%s)", url[:300], verdict.classification)
        else:
            self.count("blocked_page")
            by_own_list = any(i.id.startswith("reputation.blocklisted") for i in verdict.indicators)
            flow.response = self._block_response(flow, url=url, reasons=reasons, risk=verdict.risk_score,
                                                 classification=verdict.classification, scan_id=scan_id,
                                                 may_allow=not by_own_list)
            log.warning("malwaresnipper: blocked page %s (%s, risk %.1f)", url[:300],
                        verdict.classification, verdict.risk_score)

    async def _scan(self, info: _FlowInfo, raw: bytes, *, block: bool) -> _Outcome | None:
        """Decode, build the capture, submit; the verdict or an error (None: nothing to scan)."""
        eff = self.effective
        assert eff is not None
        try:
            limits = eff.settings.engine.limits
            args = dict(plan=info.plan, content_encoding=info.content_encoding, url_path=info.path,
                        cap=eff.max_body_bytes, work_cap=eff.settings.proxy.max_decoded_bytes,
                        keep_chars=max(limits.max_page_chars, limits.max_script_chars))
            if len(raw) > THREAD_DECODE_BYTES or info.content_encoding:
                body = await asyncio.to_thread(decode_body, raw, **args)
            else:
                body = decode_body(raw, **args)
        except BodyTooLarge as exc:
            self.count("unscanned_too_large")
            self._record_unscanned(info.url, "too_large", str(exc))
            return None
        except DecodeError as exc:
            self.count("unscanned_decode_error")
            log.warning("malwaresnipper: could not decode %s: %s; passed unscanned", info.url[:300], exc)
            self._record_unscanned(info.url, "decode_error", str(exc))
            return None
        if body is None:  # sniffed: not markup or script, so the browser does not run it
            self.count("unscanned_not_html_js")
            return None
        if body.truncations:
            self.count("decoded_partly")
            log.warning("malwaresnipper: %s: %s", info.url[:300], "; ".join(body.truncations))
        capture = self._capture(info, body)
        if capture is None:
            return None
        self.count(f"scanned_{body.kind}")
        page = self.linker.page_for(referer=info.referer, client_id=info.client_id) if body.kind == "js" else None
        try:
            job = await self.service.submit(capture, method="PROXY", block_on_malicious=block,
                                            page_scan_id=page.scan_id if page else None)
        except Exception as exc:  # noqa: BLE001 - the store or the pool is unwell: traffic goes on
            log.warning("malwaresnipper: could not submit %s: %s", info.url[:300], exc)
            return _Outcome(kind=body.kind, error="error")
        info.job = job
        if info.gave_up:
            job.block_on_malicious = False
        if getattr(job, "deduplicated", False):
            self.count("deduplicated")
        if body.kind == "html":
            self.linker.page_seen(info.url, info.client_id, job.scan_id)
        try:
            verdict = await job.verdict()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ScanTimeout, ScanFailed
            name = type(exc).__name__.lower()
            return _Outcome(kind=body.kind, scan_id=job.scan_id, error="timeout" if "timeout" in name else "error")
        self._log_verdict(info, body.kind, verdict, job.scan_id, page)
        if info.key is not None:
            self.recent.put(info.key, body.kind, job.scan_id, verdict)
        return _Outcome(kind=body.kind, scan_id=job.scan_id, verdict=verdict)

    def _capture(self, info: _FlowInfo, body: DecodedBody) -> Capture | None:
        eff = self.effective
        assert eff is not None
        try:
            if body.kind == "html":
                self.linker.page_seen(info.url, info.client_id, None)
                return build_capture(info.url, body, headers=info.headers, content_type=info.content_type,
                                     limits=eff.settings.engine.capture_limits(),
                                     known_scripts=self.linker.known_scripts(body.text, info.url))
            self.linker.script_seen(info.url, body.text)
            page = self.linker.page_for(referer=info.referer, client_id=info.client_id)
            extra = {"page_url": page.url, "page_scan_id": page.scan_id} if page else None
            return build_capture(info.url, body, headers=info.headers, content_type=info.content_type,
                                 limits=eff.settings.engine.capture_limits(),
                                 page_url=page.url if page else None, extra=extra)
        except CaptureError as exc:
            self.count("unscanned_bad_capture")
            log.warning("malwaresnipper: cannot scan %s: %s", info.url[:300], exc)
            self._record_unscanned(info.url, "bad_capture", str(exc))
            return None

    def _log_verdict(self, info: _FlowInfo, kind: str, verdict: Verdict, scan_id: str, page: Any) -> None:
        if verdict.threat_level is ThreatLevel.BENIGN:
            log.debug("malwaresnipper: %s BENIGN (risk %.1f)", info.url[:300], verdict.risk_score)
            return
        top = verdict.indicators[0].title if verdict.indicators else ""
        where = f" loaded by page {page.url[:300]}" if kind == "js" and page else ""
        log.warning("malwaresnipper: %s %s%s %s (risk %.1f, %s; scan %s): %s",
                    "script" if kind == "js" else "page", info.url[:300], where, verdict.threat_level.value,
                    verdict.risk_score, verdict.classification, scan_id, top)

    def _tap_large_body(self, flow: http.HTTPFlow) -> None:
        """A page or script too large to hold: tapped as it streams and scanned once it has
        passed (block mode cannot wait for that: it says so in the header), or, with
        ``fail_closed``, replaced by the block page / inert script."""
        eff = self.effective
        assert eff is not None and flow.response is not None
        url = pretty_url(flow.request)
        headers = flow.response.headers
        encoded = bool(headers.get("content-encoding", "").strip().lower() not in ("", "identity"))
        replacement: bytes | None = None
        if eff.mode == "block" and eff.fail_closed and not flow.metadata.get("malwaresnipper_pass"):
            reason = (f"The response is larger than this gateway scans before delivery ({eff.max_body_bytes} bytes) "
                      "and this gateway blocks what it cannot check.")
            kind = "js" if body_looks_like_script(_plan(flow)) else "html"
            blocked = (_inert_response(url, [reason], None) if kind == "js" else
                       self._block_response(flow, url=url, reasons=[("unscanned", reason)], risk=None,
                                            classification=None, scan_id=None))
            replacement = blocked.raw_content or b""
            self.count("fail_closed")
            log.warning("malwaresnipper: %s blocked: too large to scan before delivery and fail_closed is set", url[:300])
            flow.response = blocked
        elif eff.mode == "block":
            headers[HEADER] = "unscanned; reason=too_large"
        limits = eff.settings.engine.limits
        tap = StreamTap(head_bytes=eff.max_body_bytes, tail_bytes=max(limits.max_page_chars, limits.max_script_chars) // 4,
                        encoded=encoded, replacement=replacement)
        flow.response.stream = tap
        flow.metadata["malwaresnipper_tap"] = tap

    async def _scan_tapped(self, flow: http.HTTPFlow) -> None:
        """Scan what the tap kept of a body that streamed through; the history gets the verdict
        (incomplete when part of the body was not seen, so never BENIGN) and that it was not blocked."""
        eff = self.effective
        tap = flow.metadata.get("malwaresnipper_tap")
        if eff is None or self.service is None or not isinstance(tap, StreamTap) or flow.response is None:
            return
        if tap.replacement is not None:  # refused (fail_closed): nothing went on, nothing to judge
            await _finished(self._record_unscanned(pretty_url(flow.request), "too_large",
                                                   "refused: too large to scan before delivery, and fail_closed is set"))
            return
        resp = flow.response
        raw, note = tap.seen()
        info = _FlowInfo(url=pretty_url(flow.request), client=_client_of(flow), client_id=flow.client_conn.id,
                         referer=flow.request.headers.get("referer"),
                         fetch_dest=flow.request.headers.get("sec-fetch-dest", ""),
                         content_type=resp.headers.get("content-type"),
                         content_encoding=header_values(resp.headers.fields, b"content-encoding"),
                         headers=list(resp.headers.items(multi=True)), path=flow.request.path, plan=_plan(flow))
        limits = eff.settings.engine.limits
        try:
            body = await asyncio.to_thread(
                decode_body, raw, plan=info.plan, content_encoding=info.content_encoding, url_path=info.path,
                cap=0, work_cap=eff.settings.proxy.max_decoded_bytes,
                keep_chars=max(limits.max_page_chars, limits.max_script_chars))
        except DecodeError as exc:
            await _finished(self._record_unscanned(info.url, "too_large",
                                                   f"{note or 'too large to hold'}; not decodable: {exc}"))
            return
        if body is None:
            return
        if note:
            body = dataclasses.replace(body, truncations=body.truncations + (note,))
        capture = self._capture(info, body)
        if capture is None:
            return
        self.count(f"scanned_{body.kind}_after_delivery")
        try:
            job = await self.service.submit(capture, method="PROXY", block_on_malicious=False)
            verdict = await job.verdict()
        except Exception as exc:  # noqa: BLE001 - the record says what happened
            log.warning("malwaresnipper: could not scan the streamed body of %s: %s", info.url[:300], exc)
            return
        self._log_verdict(info, body.kind, verdict, job.scan_id, None)

    async def _record_pass(self, url: str, outcome: _Outcome, info: _FlowInfo | None) -> None:
        """Block mode let a response through without its verdict: record that, naming the scan
        that goes on (once it is submitted) so the history links the two."""
        eff = self.effective
        scan_id = outcome.scan_id
        for _ in range(40):
            if scan_id is not None or info is None:
                break
            scan_id = info.job.scan_id if info.job is not None else None
            if scan_id is None:
                await asyncio.sleep(0.05)
        budget = f"block budget {eff.budget_s * 1000:.0f} ms" if eff else "block budget"
        later = f"; its scan goes on as {scan_id}" if scan_id else ""
        await _finished(self._record_unscanned(url, outcome.error or "error",
                                               f"the response passed before its verdict ({budget}){later}"))

    def _record_unscanned(self, url: str, reason: str, detail: str = "") -> asyncio.Task[None] | None:
        """Block mode: leave a trace of content the browser will run or render that passes unscanned
        (in the background; the task is returned for callers that are themselves background work)."""
        if self.effective is None or self.effective.mode != "block" or self.service is None:
            return None

        async def record() -> None:
            try:
                capture = Capture.build(url, source=Source.PROXY)
                await self.service.record_unscanned(capture, reason, method="PROXY", detail=detail)
            except Exception:  # noqa: BLE001 - a record must never disturb traffic
                log.warning("malwaresnipper: could not record the unscanned pass of %s (%s)", url[:300], reason,
                            exc_info=True)

        return self._spawn(record())

    async def _record_url_only(self, url: str) -> None:
        """Record a request-time block in the history (a URL-only scan with block flag)."""
        if self.service is None:
            return
        try:
            capture = Capture.build(url, source=Source.PROXY)
            job = await self.service.submit(capture, method="PROXY", block_on_malicious=True)
            await job.verdict()
        except Exception:  # noqa: BLE001
            log.debug("could not record the blocked request %s", url, exc_info=True)

    # -- helpers -----------------------------------------------------------------------------

    def _block_response(self, flow: http.HTTPFlow, *, url: str, reasons: list[tuple[str, str]],
                        risk: float | None, classification: str | None, scan_id: str | None,
                        may_allow: bool = True) -> http.Response:
        """The block page; ways past it only for a page the user navigated to (not for a script's
        ``fetch()`` of it), and "always allow" only when no blocklist of the user's made the block."""
        links = None
        if _top_level_navigation(flow.request):
            block_id = self.bypass.record_block(url, _client_of(flow), reasons=tuple(t for _, t in reasons),
                                                may_allow=may_allow)
            links = BypassLinks(block_id, may_allow)
        page = blockpage.render_block_page(
            url=url, reasons=reasons, risk_score=risk, classification=classification, links=links,
            referer=flow.request.headers.get("referer"), scan_id=scan_id,
        )
        headers = dict(blockpage.PAGE_HEADERS)
        headers[HEADER] = "blocked" + (f"; scan={scan_id}" if scan_id else "")
        return http.Response.make(403, page.encode("utf-8"), headers)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_task_error)
        return task


@dataclasses.dataclass(slots=True)
class _FlowInfo:
    """What a scan needs from a flow, copied so the flow may move on (monitor mode)."""

    url: str
    client: str
    client_id: str
    referer: str | None
    fetch_dest: str
    content_type: str | None
    content_encoding: list[str]
    headers: list[tuple[str, str]]
    path: str
    plan: ScanPlan
    #: the ScanJob once submitted (block mode uses it to correct the record on a timeout)
    job: Any = None
    #: set when block mode stopped waiting and let the response through
    gave_up: bool = False
    #: RecentVerdicts key of the raw body
    key: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str = "html"
    scan_id: str | None = None
    verdict: Verdict | None = None
    error: str | None = None


def _plan(flow: http.HTTPFlow) -> ScanPlan:
    """The scan decision for this flow (:func:`~.scanplan.plan_scan`), made once and kept.

    The first call also adds ``Vary: Sec-Fetch-Dest`` when another destination would be scanned
    differently, so the browser's cache cannot replay an unscanned body to a destination that
    would run it."""
    plan = flow.metadata.get("malwaresnipper_plan")
    if plan is None:
        assert flow.response is not None
        fields = flow.response.headers.fields
        content_types = header_values(fields, b"content-type")
        nosniff = is_nosniff(header_values(fields, b"x-content-type-options"))
        plan = plan_scan(content_types, fetch_dest=flow.request.headers.get("sec-fetch-dest", ""), nosniff=nosniff)
        flow.metadata["malwaresnipper_plan"] = plan
        if "sec-fetch-dest" in flow.request.headers and depends_on_destination(content_types, nosniff=nosniff):
            vary = flow.response.headers.get("vary", "")
            if "sec-fetch-dest" not in vary.lower() and vary.strip() != "*":
                flow.response.headers["vary"] = f"{vary}, Sec-Fetch-Dest" if vary.strip() else "Sec-Fetch-Dest"
    return plan


def _reasons(verdict: Verdict, limit: int = 5) -> list[tuple[str, str]]:
    """The top indicators as (severity, sentence), naming the script when the evidence is in one."""
    out = []
    for ind in verdict.indicators:
        if ind.severity < Severity.LOW:
            continue
        where = next((e.location for e in ind.evidence if e.location.startswith("script") and "://" in e.location), "")
        out.append((ind.severity.name.lower(), ind.title + (f" (in {where})" if where else "")))
        if len(out) >= limit:
            break
    return out


def _client_of(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else ""


def _notice(status: int, title: str, message: str) -> http.Response:
    return http.Response.make(status, blockpage.render_notice(title, message).encode("utf-8"),
                              blockpage.PAGE_HEADERS)


def _top_level_navigation(req: http.Request) -> bool:
    """A page the user opens in a tab, as far as the browser says (``Sec-Fetch-*`` are sent to
    https origins; a script's ``fetch()`` or an iframe never passes for one). Without the headers
    (plain http, non-browser clients) nothing tells, and the answer is yes."""
    mode = req.headers.get("sec-fetch-mode")
    dest = req.headers.get("sec-fetch-dest")
    if mode is None and dest is None:
        return True
    return mode == "navigate" and dest == "document"


def _from_control_origin(req: http.Request) -> bool:
    """The POST came from the gateway's own confirmation page: browsers send ``Origin`` with
    every form POST, and a page of any other origin cannot claim ours."""
    origin = req.headers.get("origin")
    if origin is None:
        return not req.headers.get("sec-fetch-site")  # a non-browser client
    return origin.lower() in (CONTROL_ORIGIN, f"https://{CONTROL_HOST}") and _top_level_navigation(req)


def _inert_response(url: str, reasons: list[str], scan_id: str | None) -> http.Response:
    body = blockpage.inert_script(url=url, reasons=reasons, scan_id=scan_id)
    return http.Response.make(200, body.encode("utf-8"), {
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        HEADER: "blocked" + (f"; scan={scan_id}" if scan_id else ""),
    })


def _load_lists(settings: Settings, attribute: str) -> ListEntries:
    """The engine config's allow/block list files, loaded once for request-time checks."""
    engine = settings.engine
    files = getattr(engine.reputation, attribute)
    return merge([load_list_file(engine.resolve(f)) for f in files]) if files else ListEntries()


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Leave what is loaded by now out of the cyclic collector's full passes (once per process).

    mitmproxy, the engine's modules and the services live as long as the proxy; a full collection
    would otherwise walk all of them while requests wait (a pause in the latency tail)."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.freeze()


def _given_a_value(opts: Any, name: str) -> bool:
    """Whether option ``name`` was set, even to its default.

    mitmproxy keeps that in the option itself (``value`` stays ``optmanager.unset`` until set),
    the same in mitmproxy 11 and 12; should that ever change, "differs from the default" is
    the closest public answer."""
    from mitmproxy import optmanager

    option = getattr(opts, "_options", {}).get(name)
    unset = getattr(optmanager, "unset", None)
    if option is not None and unset is not None and hasattr(option, "value"):
        return option.value is not unset
    return bool(getattr(opts, name) != opts.default(name))


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


async def _finished(task: asyncio.Task[Any] | None) -> None:
    """Wait for a background task when there is one (background work waiting for its own)."""
    if task is not None:
        await asyncio.shield(task)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("malwaresnipper: background scan failed", exc_info=task.exception())
