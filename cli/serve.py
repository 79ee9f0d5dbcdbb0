"""``malwaresnipper serve``: the API, the event stream, history and the scan pool, without the proxy.

For users who only use the browser extension. ``malwaresnipper token`` prints the token the
extension and scripts need (``MALWARESNIPPER_TOKEN`` overrides the stored one).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the API, dashboard and event stream (no proxy)", description=__doc__)
    serve.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    serve.add_argument("--host", help="listen address (default [server] host, 127.0.0.1)")
    serve.add_argument("--api-port", type=int, help="API and dashboard port (default 5000; 0 picks a free port)")
    serve.add_argument("--events-port", type=int, help="event stream port (default 8765; 0 picks a free port)")
    serve.set_defaults(func=serve_command)
    token = sub.add_parser("token", help="print the API/event-stream token (creating it if needed)")
    token.add_argument("--config", help="a malwaresnipper.toml (for its data_dir)")
    token.set_defaults(func=token_command)


def token_command(args: argparse.Namespace) -> int:
    from ..engine.errors import MalwareSnipperError
    from ..server.auth import load_or_create_token
    from ..settings import load_settings

    try:
        settings = load_settings(args.config)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(load_or_create_token(settings.data_path))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from ..engine.errors import MalwareSnipperError
    from ..server.app import start_services
    from ..settings import load_settings

    try:
        settings = load_settings(args.config)
        running = await start_services(settings, host=args.host, api_port=args.api_port,
                                       events_port=args.events_port)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"API and dashboard: {running.api_url}/", flush=True)
    print(f"event stream:      {running.events_url}", flush=True)
    history = ("PostgreSQL" if settings.store.backend == "postgres"
               else settings.store.path or settings.data_path / "history.sqlite3")
    print(f"history:           {history}", flush=True)
    if settings.events.backend == "redis":
        print(f"events via:        Redis Stream {settings.events.stream!r} as gateway {settings.gateway_name!r}",
              flush=True)
    print("token:             malwaresnipper token (sent as 'Authorization: Bearer <token>')", flush=True)
    print("ready", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await running.stop()
    return 0


def serve_command(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
