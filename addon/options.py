"""The gateway's options (``--set malwaresnipper_*``) and the settings they put in force.

An option the user set overrides the config file's value, even when it is set to its built-in
default; an option left alone defers to the file. mitmproxy has no notion of "set", so this addon
keeps track (see :meth:`GatewayOptions._user_set_after`). The other addons read the result,
:attr:`GatewayOptions.effective`, and never the raw options. Options are documented in
docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from ..engine.errors import MalwareSnipperError
from ..engine.lists import ListEntries, config_lists
from ..settings import PROXY_MODES, Settings, load_settings

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
#: Options read when the scan services start: a change needs a restart.
RESTART_NEEDED = frozenset({"malwaresnipper_workers", "malwaresnipper_api_port", "malwaresnipper_events_port",
                            "malwaresnipper_data_dir", "malwaresnipper_services", "malwaresnipper_config",
                            "malwaresnipper_scan_timeout_ms"})


@dataclasses.dataclass(frozen=True)
class Effective:
    """The settings in force: the config file's, overridden by the options the user set."""

    settings: Settings
    mode: str
    budget_s: float
    fail_closed: bool
    max_body_bytes: int
    services: bool
    #: keep proxying, unscanned, when the scan services cannot start
    pass_unscanned: bool = False
    #: the config's list files' ``(allow, block)`` entries (a bad file is an error here, at once)
    config_lists: tuple[ListEntries, ListEntries] = (ListEntries(), ListEntries())


class GatewayOptions:
    """Declares the ``malwaresnipper_*`` options and resolves :class:`Effective` from them."""

    name = "malwaresnipper_options"

    def __init__(self) -> None:
        self.effective: Effective | None = None
        #: malwaresnipper_* options the user set (see _user_set_after)
        self._user_set: set[str] = set()
        #: the options the latest update added to _user_set (undone if it is rolled back)
        self._last_marked: set[str] = set()
        self._rolling_back = False
        self._stream_threshold: str | None = None

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
        self.effective = effective
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
        proxy = settings.proxy
        return Effective(settings, proxy.mode, proxy.block_budget_ms / 1000.0, proxy.fail_closed,
                         proxy.max_body_bytes, opts.malwaresnipper_services, opts.malwaresnipper_pass_unscanned,
                         config_lists(settings.engine))


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
