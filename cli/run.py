"""``malwaresnipper run`` (the whole gateway) and ``malwaresnipper ca`` (the proxy's CA).

``run`` starts mitmproxy in-process (its ``DumpMaster``) with the gateway addon; the addon's
``running`` hook starts the API, dashboard, event stream, store and scan workers, so ``run`` and
``mitmdump -s addon/mitmdump_entry.py`` behave the same.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import MalwareSnipperError

if TYPE_CHECKING:
    from ..addon.gateway import Gateway


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run the gateway: proxy, API + dashboard and event stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    run.add_argument("--mode", choices=["monitor", "block"],
                     help="monitor (the default: scan and record, never block) or block (replace malicious "
                          "pages and scripts); overrides [proxy] mode")
    run.add_argument("--listen-host", help="proxy address (default 127.0.0.1)")
    run.add_argument("--listen-port", type=int, help="proxy port (default 8080)")
    run.add_argument("--api-port", type=int, help="API and dashboard port (default 5000)")
    run.add_argument("--events-port", type=int, help="event stream port (default 8765)")
    run.add_argument("--confdir", help="mitmproxy confdir holding the CA; overrides [proxy] confdir "
                                        "(default: <data dir>/certs, e.g. ~/.malwaresnipper/certs)")
    run.add_argument("--pass-unscanned", action="store_true",
                     help="keep proxying, unscanned, if the scan services cannot start (default: stop and say why)")
    run.add_argument("--set", dest="setoptions", action="append", default=[], metavar="OPTION=VALUE",
                     help="any other mitmproxy option, as with mitmdump --set (repeatable)")
    run.set_defaults(func=run_command, logs_through_mitmproxy=True)

    ca = sub.add_parser("ca", help="print the proxy CA's path and fingerprints (creating it if missing)")
    ca.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    ca.add_argument("--confdir", help="mitmproxy confdir holding the CA; overrides [proxy] confdir "
                                       "(default: <data dir>/certs, e.g. ~/.malwaresnipper/certs)")
    ca.set_defaults(func=ca_command)


def _confdir(args: argparse.Namespace, settings: Any) -> Path:
    """``--confdir``, else ``[proxy] confdir``, else ``<data_dir>/certs`` (``Settings.confdir_path``)."""
    return Path(settings.confdir_path(args.confdir))


def ca_command(args: argparse.Namespace) -> int:
    from ..addon.certs import ensure_ca
    from ..settings import load_settings

    try:
        settings = load_settings(args.config)
        info = ensure_ca(_confdir(args, settings))
    except (MalwareSnipperError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CA certificate: {info.cert_path}")
    print(f"SHA-256 fingerprint: {info.sha256_fingerprint}")
    print(f"SPKI sha256 (base64): {info.spki_sha256_b64}")
    print(f"  chromium --ignore-certificate-errors-spki-list={info.spki_sha256_b64} ...")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from ..addon.certs import ensure_ca
    from ..settings import load_settings

    try:
        config_path = Path(args.config) if args.config else (Path("malwaresnipper.toml") if Path("malwaresnipper.toml").exists() else None)
        settings = load_settings(config_path)
        confdir = _confdir(args, settings)
        ca = ensure_ca(confdir)
    except (MalwareSnipperError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings, config_path.resolve() if config_path else None, confdir, ca))
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Any, config_path: Path | None, confdir: Path, ca: Any) -> int:
    """``config_path`` comes resolved (the addon reads it from another working directory)."""
    import logging

    from mitmproxy import exceptions, hooks, options
    from mitmproxy.tools.dump import DumpMaster

    from ..addon.gateway import Gateway

    # mitmproxy's terminal log prints every record once (main() installs no handler of its own
    # for `run`); per-connection chatter only with -v.
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        for chatty in ("mitmproxy.proxy.server", "websockets.server"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    opts = options.Options(
        listen_host=args.listen_host or settings.proxy.listen_host,
        listen_port=args.listen_port or settings.proxy.listen_port,
        confdir=str(confdir),
    )
    master = DumpMaster(opts, with_termlog=True, with_dumper=False)
    if args.verbose:
        opts.update(termlog_verbosity="debug")  # an option of the terminal log DumpMaster added
    gateway = Gateway()
    announcer = _Announcer(gateway, ca)
    master.addons.add(gateway, announcer)
    updates: dict[str, Any] = {}
    if config_path is not None:
        updates["malwaresnipper_config"] = str(config_path)
    if args.mode:
        updates["malwaresnipper_mode"] = args.mode
    if args.api_port is not None:
        updates["malwaresnipper_api_port"] = args.api_port
    if args.events_port is not None:
        updates["malwaresnipper_events_port"] = args.events_port
    if args.pass_unscanned:
        updates["malwaresnipper_pass_unscanned"] = True
    try:
        if updates:
            opts.update(**updates)
        if args.setoptions:
            opts.set(*args.setoptions)
        # What mitmdump's script loader does for a script: configure the addon with every option,
        # whether or not any was changed, so the settings in force are known before it starts.
        master.addons.invoke_addon_sync(gateway, hooks.ConfigureHook(set(opts.keys())))
    except exceptions.OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, master.shutdown)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            pass
    await master.run()
    if not announcer.started:
        return 1
    # Scanning that could not start is a failure unless the user asked to proxy unscanned.
    lifecycle = gateway.lifecycle
    failed = lifecycle.start_error is not None and not lifecycle.start_pending
    return 1 if failed and not _passing_unscanned(gateway) else 0


def _passing_unscanned(gateway: Gateway) -> bool:
    eff = gateway.options.effective
    return bool(eff and eff.pass_unscanned)


class _Announcer:
    """Prints where everything listens once the gateway is up (runs after the gateway's hook)."""

    def __init__(self, gateway: Gateway, ca: Any) -> None:
        self.gateway = gateway
        self.ca = ca
        self.started = False

    def running(self) -> None:
        from mitmproxy import ctx

        self.started = True
        host, port = ctx.options.listen_host or "127.0.0.1", ctx.options.listen_port
        gateway = self.gateway
        eff = gateway.options.effective
        lifecycle = gateway.lifecycle
        services = lifecycle.services
        proxy = f"http://{host}:{port}"
        mode = f"{eff.mode} mode" if eff else "not configured"
        if eff and eff.mode == "monitor":
            mode += ": pages are scanned and recorded, never blocked; --mode block to block"
        lines = ["", f"MalwareSnipper gateway ({mode})", f"  proxy            {proxy}"]
        if services is not None:
            if services.api_url:
                lines.append(f"  API + dashboard  {services.api_url}/   (token: `malwaresnipper token`)")
                lines.append(f"  event stream     {services.events_url}")
            else:
                lines.append("  API + dashboard  not started (malwaresnipper_services is off)")
        elif lifecycle.start_pending:
            lines.append(f"  scan services    WAITING: {lifecycle.start_error}")
            lines.append(f"                   meanwhile {lifecycle.unscanned_policy()}")
        else:
            lines.append(f"  scan services    NOT running: {lifecycle.start_error or 'not started'}")
            if _passing_unscanned(gateway):
                lines.append("                   traffic passes UNSCANNED (--pass-unscanned)")
            else:
                lines += ["", "The gateway stops: it will not proxy traffic it cannot scan "
                          "(--pass-unscanned proxies it unscanned).", ""]
                print("\n".join(lines), flush=True)
                return
        lines += [
            f"  CA certificate   {self.ca.cert_path}",
            f"  CA SPKI sha256   {self.ca.spki_sha256_b64}",
            "",
            "Point a browser at the proxy:",
            f"  chromium --proxy-server={proxy} --ignore-certificate-errors-spki-list={self.ca.spki_sha256_b64}",
            f"  curl --proxy {proxy} --cacert {self.ca.cert_path} https://example.com/",
            "  Firefox: Settings > Network Settings > Manual proxy "
            f"{host}:{port} (also for HTTPS), then import the CA (see certs/README.md).",
            "Press Ctrl-C to stop.",
            "",
        ]
        print("\n".join(lines), flush=True)
