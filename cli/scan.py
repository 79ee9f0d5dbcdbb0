"""``malwaresnipper scan TARGET...``: scan local HTML/JS files or URLs (a URL is never fetched).

Exit codes follow clamscan: 0 when every target is BENIGN, 1 when any is SUSPICIOUS or
MALICIOUS, 2 when a target could not be scanned (missing file, not a URL, bad config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..engine.capture import Capture, Source
from ..engine.errors import MalwareSnipperError
from ..engine.verdict import ThreatLevel, Verdict
from .engine_args import add_engine_options, engine_from_args

HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
JS_SUFFIXES = {".js", ".mjs", ".cjs", ".jsx"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scan",
        help="scan .html/.js files or URLs (URLs are checked as text, never fetched)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="a .html/.htm/.js file or a URL")
    parser.add_argument("--json", action="store_true", help="print one JSON object per target")
    add_engine_options(parser)
    parser.set_defaults(func=scan_command)


def decode_file(data: bytes) -> str:
    """Decode a local file: BOM, then UTF-8, then Latin-1 (which never fails)."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def capture_for_target(target: str, limits) -> Capture:
    """A Capture for a file path or a URL. Raises MalwareSnipperError or OSError."""
    path = Path(target)
    if path.exists():
        if path.is_dir():
            raise MalwareSnipperError(f"{target}: is a directory")
        text = decode_file(path.read_bytes())
        url = path.resolve().as_uri()
        suffix = path.suffix.lower()
        if suffix in JS_SUFFIXES:
            return Capture.build(url, source=Source.CLI, scripts=[{"text": text, "url": url, "inline": False}],
                                 content_type="application/javascript", limits=limits)
        if suffix in HTML_SUFFIXES or text.lstrip()[:1] == "<":
            return Capture.build(url, source=Source.CLI, html=text, content_type="text/html", limits=limits)
        return Capture.build(url, source=Source.CLI, scripts=[{"text": text, "url": url, "inline": False}],
                             content_type="application/javascript", limits=limits)
    if ":" not in target:
        raise MalwareSnipperError(f"{target}: no such file, and not a URL")
    return Capture.build(target, source=Source.CLI, limits=limits)


def format_human(verdict: Verdict) -> str:
    lines = [f"{verdict.url}: {verdict.threat_level.value} (risk {verdict.risk_score:.1f}/100, {verdict.classification})"]
    for ind in verdict.indicators[:10]:
        where = ind.evidence[0].location if ind.evidence else ind.layer
        lines.append(f"  [{ind.severity.name:<8}] {ind.title} ({ind.id}; {where})")
    if len(verdict.indicators) > 10:
        lines.append(f"  … and {len(verdict.indicators) - 10} more indicators (use --json)")
    return "\n".join(lines)


def verdict_json(verdict: Verdict) -> dict:
    return verdict.to_dict()


def scan_command(args: argparse.Namespace) -> int:
    try:
        settings, engine = engine_from_args(args)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worst = 0
    for target in args.targets:
        try:
            capture = capture_for_target(target, settings.engine.capture_limits())
        except (MalwareSnipperError, OSError) as exc:
            if args.json:
                print(json.dumps({"target": target, "error": str(exc)}))
            else:
                print(f"{target}: ERROR {exc}", file=sys.stderr)
            worst = 2
            continue
        verdict = engine.scan(capture)
        if args.json:
            out = verdict_json(verdict)
            out["target"] = target
            print(json.dumps(out))
        else:
            print(format_human(verdict))
        if verdict.threat_level is not ThreatLevel.BENIGN and worst < 2:
            worst = 1
    return worst
