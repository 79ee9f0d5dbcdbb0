"""``malwaresnipper feeds update|status``: refresh the ``[[feeds]]`` now, or show how they stand.

``update`` downloads (or reads) each feed as the gateway does, with the saved copy's validators,
and saves a good copy under ``<data_dir>/feeds/``; a running gateway adopts it at the feed's next
refresh instead of downloading again, and a gateway starting later begins with it. ``status``
reads what the gateway and ``update`` recorded there. Both exit 1 when a feed has no good copy
or its last refresh failed (for monitoring), 2 on a settings error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from ..engine.errors import MalwareSnipperError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("feeds", help="refresh the threat feeds now, or show their status")
    actions = parser.add_subparsers(dest="feeds_command", metavar="ACTION", required=True)
    update = actions.add_parser("update", help="download every feed (or those named) now")
    update.add_argument("names", nargs="*", metavar="NAME", help="only these feeds")
    status = actions.add_parser("status", help="show each feed's copy, age and last error")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for action in (update, status):
        action.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    update.set_defaults(func=update_command)
    status.set_defaults(func=status_command)


def _manager(args: argparse.Namespace) -> Any:
    from ..server.feeds import FeedManager
    from ..settings import load_settings

    settings = load_settings(args.config)
    if not settings.feeds:
        raise MalwareSnipperError("no [[feeds]] in the settings (see docs/configuration.md)")
    return FeedManager.for_settings(settings)


def update_command(args: argparse.Namespace) -> int:
    try:
        manager = _manager(args)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.names) - set(manager.feeds))
    if unknown:
        print(f"error: no feed named {', '.join(unknown)} (configured: {', '.join(manager.feeds)})", file=sys.stderr)
        return 2

    async def run() -> list[Any]:
        await manager.start(refresh=False)
        try:
            names = args.names or list(manager.feeds)
            return list(await asyncio.gather(*(manager.refresh(name) for name in names)))
        finally:
            await manager.stop()

    failed = False
    for state in asyncio.run(run()):
        if state.last_error:
            failed = True
            print(f"{state.name}: FAILED: {state.last_error} ({_keeping(state.in_force)})")
        elif state.not_modified and state.checked_at >= state.fetched_at:
            print(f"{state.name}: not modified ({state.entries} entries)")
        else:
            print(f"{state.name}: {state.entries} entries")
    return 1 if failed else 0


def status_command(args: argparse.Namespace) -> int:
    from ..server.feeds import FeedState

    try:
        manager = _manager(args)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for feed in manager.feeds.values():
        feed.load_saved_state()
        state: FeedState = feed.state
        state.in_force = "saved copy" if state.sha256 else "none"
        rows.append(state.public())
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        now = time.time()
        print(f"{'FEED':<20} {'KIND':<6} {'FORMAT':<15} {'ENTRIES':>8} {'FETCHED':>10} {'CHECKED':>10}  PROBLEM")
        for row in rows:
            problem = row["last_error"] or ("no copy yet" if row["in_force"] == "none" else "")
            print(f"{row['name']:<20} {row['kind']:<6} {row['format']:<15} {row['entries']:>8} "
                  f"{_ago(now, row['fetched_at']):>10} {_ago(now, row['checked_at']):>10}  {problem}")
    return 1 if any(row["stale"] or row["in_force"] == "none" for row in rows) else 0


def _ago(now: float, when: float) -> str:
    if not when:
        return "never"
    seconds = max(0, int(now - when))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _keeping(in_force: str) -> str:
    return "no copy in force" if in_force == "none" else "the saved copy stays in force"
