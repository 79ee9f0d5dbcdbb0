"""``malwaresnipper feedback export [--out FILE] [--since WHEN]``: reports as labelled training rows.

Every "this page is safe" / "this page is dangerous" report (from the block page, the extension,
the dashboard or the API) becomes one row of the **URL corpus** format (docs/training.md and the
corpus README): ``label`` ``benign`` for "safe", ``malicious`` for "dangerous", the reported
page's ``url`` and ``url_norm``, ``host``, ``reg_domain`` and a ``split_group`` that keeps one
site in one fold. URL rows because the history keeps a page's address and verdict, never its
body: an HTML or JS row would need content the gateway did not store. ``train --data FILE``
reads the file as it reads the URL corpus.

One row per page address: when a page was reported more than once, the latest report wins (an
analyst's correction supersedes the first guess). The history is only read: on SQLite the file
is opened without migrating or marking anything, so a running gateway is not disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..engine.errors import MalwareSnipperError

#: "safe" / "dangerous" as corpus labels.
LABELS = {"safe": "benign", "dangerous": "malicious"}
_DURATION = re.compile(r"^(\d+)([smhd])$")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("feedback", help="export reports on verdicts as labelled training data")
    actions = parser.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write the reports as labelled JSON Lines (URL corpus format)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--out", help="output file (default: standard output)")
    export.add_argument("--since", help="only reports filed since: ISO 8601 time, epoch seconds, or 7d/12h/30m")
    export.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    export.set_defaults(func=export_command)


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``--since`` as epoch seconds: ``7d``/``12h``/``30m``/``45s`` ago, epoch seconds or ISO 8601."""
    if not text:
        return None
    now = time.time() if now is None else now
    duration = _DURATION.match(text.strip())
    if duration:
        return now - int(duration.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MalwareSnipperError(f"--since {text!r}: use an ISO 8601 time, epoch seconds or 7d/12h/30m") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def corpus_row(report: dict[str, Any]) -> dict[str, Any] | None:
    """One report as a URL corpus row (None for a report whose address is not http(s))."""
    from ..engine.lists import normalize_url
    from ..engine.psl import registrable_domain

    url = str(report["url"])
    url_norm = normalize_url(url)
    if not url_norm.startswith(("http://", "https://")):
        return None
    host = (url_norm.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]).strip("[]")
    reg_domain = registrable_domain(host) or host
    digest = hashlib.sha256(url_norm.encode("utf-8", "surrogatepass")).hexdigest()
    label = LABELS[report["verdict"]]
    return {
        "id": f"url-{digest[:16]}",
        "label": label,
        "binary_label": label,
        "source": f"malwaresnipper feedback ({report['source']})",
        "source_file": "feedback",
        "source_license": "unstated",
        "feed_date": report["ts"][:10],
        "sha256": digest,
        "url": url,
        "url_norm": url_norm,
        "host": host,
        "reg_domain": reg_domain,
        "split_group": hashlib.sha256(f"feedback:{reg_domain}".encode()).hexdigest()[:12],
        # what the report was about, for the analyst (train ignores these fields)
        "report_id": report["report_id"],
        "scan_id": report["scan_id"],
        "scan_threat_level": report.get("scan_threat_level"),
        "comment": report.get("comment", ""),
    }


def corpus_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``reports`` (oldest first), one per page address, the latest report winning."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        row = corpus_row(report)
        if row is not None:
            rows.pop(row["url_norm"], None)  # re-inserted: the order is the latest report's
            rows[row["url_norm"]] = row
    return list(rows.values())


def read_reports(settings: Any, since: float | None) -> list[dict[str, Any]]:
    """Every report filed since ``since``, oldest first, from the configured history."""
    from ..server import store_sql

    if settings.store.backend == "sqlite":
        from ..server.store import connect, run_program

        path = Path(settings.store.path).expanduser() if settings.store.path else settings.data_path / "history.sqlite3"
        if not path.is_file():
            raise MalwareSnipperError(f"no history at {path} (has the gateway run with this data directory?)")
        conn = connect(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < len(store_sql.SCHEMA):
                raise MalwareSnipperError(f"{path} is schema version {version}, from before reports were kept; "
                                          "start the gateway once to upgrade it")
            return run_program(conn, store_sql.feedback_reports(store_sql.SQLITE, since, 10_000_000))
        except sqlite3.Error as exc:
            raise MalwareSnipperError(f"cannot read {path}: {exc}") from None
        finally:
            conn.close()

    from ..server.store import open_store

    async def from_server() -> list[dict[str, Any]]:
        store = open_store(settings.store, settings.data_path)  # no gateway id: marks nothing interrupted
        await store.open()
        try:
            return await store.feedback_reports(since)
        finally:
            await store.close()

    return asyncio.run(from_server())


def export_command(args: argparse.Namespace) -> int:
    from ..settings import load_settings

    try:
        settings = load_settings(args.config)
        rows = corpus_rows(read_reports(settings, parse_since(args.since)))
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
        benign = sum(1 for r in rows if r["label"] == "benign")
        print(f"wrote {len(rows)} rows ({benign} benign, {len(rows) - benign} malicious) to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
