"""The HTTP API (aiohttp) and the dashboard's static files; see docs/api.md.

Middleware order: security headers and JSON errors outermost, then the Host check (DNS
rebinding), then CORS/Origin, then the token and the rate limit (a bucket for the token's holders,
a small one per address for requests without it). A request is judged entirely before anything
is stored.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import mimetypes
import time
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from aiohttp import web

import malwaresnipper

from ..engine import lists as engine_lists
from .auth import HostPolicy, OriginPolicy, bearer_token, token_matches
from .captures import BadRequest, capture_from_body, parse_json_body
from .lookups import lookup as lookup_verdicts
from .service import ScanService
from .store import LIST_KINDS, LIST_NAMES, ScanFilter, StoreUnavailable
from .store_sql import MAX_COMMENT, REPORT_VERDICTS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self' ws://127.0.0.1:* ws://localhost:*; "
    "style-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"
)
DASHBOARD_DIR = Path(malwaresnipper.__file__).parent / "dashboard"
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
PUBLIC_PATHS = {"/api/v1/health"}
MAX_PAGE = 500
MAX_EXPORT_ROWS = 1_000_000
#: ``?full=1`` exports at most this many rows (each carries its whole verdict).
MAX_FULL_EXPORT_ROWS = 20_000
LEVEL_FILTERS = ("BENIGN", "SUSPICIOUS", "MALICIOUS", "UNKNOWN")
#: Requests per minute (and burst) for one address sending no valid token: enough for a person
#: trying curl, too few for a page's fetch() loop to matter, and never the token holders' bucket.
ANONYMOUS_PER_MINUTE = 30
#: A body still arriving after this long is refused (408): a slow sender holds no connection.
BODY_READ_TIMEOUT_S = 30.0


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}, **extra}, status=status)


class RateLimiter:
    """A token bucket per client address: ``per_minute`` requests, bursts up to the same."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        if self.capacity <= 0:
            return True
        now = time.monotonic()
        tokens, last = self.buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            return False
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > 10_000:
            self.buckets.clear()
        return True


SERVICE = web.AppKey("service", ScanService)
TOKEN = web.AppKey("token", str)
ORIGINS = web.AppKey("origins", OriginPolicy)
HOSTS = web.AppKey("hosts", HostPolicy)
#: One bucket for the callers holding the token (the extension, the dashboard, scripts).
TOKEN_LIMITER = web.AppKey("token_limiter", RateLimiter)
#: A small bucket per address for requests without a valid token.
ANONYMOUS_LIMITER = web.AppKey("anonymous_limiter", RateLimiter)
MAX_BODY = web.AppKey("max_body", int)


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for the API, security headers for everything, status counts for /metrics."""
    service = request.app[SERVICE]
    try:
        response = await handler(request)
    except BadRequest as exc:
        response = error(exc.status, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        # A chunked body (no Content-Length) hits the cap while it is read.
        response = error(413, "body_too_large", f"the body is larger than the {request.app[MAX_BODY]}-byte cap; "
                         "send less HTML or fewer scripts")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        message = {404: f"no such endpoint: {request.method} {request.path} (see /api/v1/openapi.json)",
                   405: f"{request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
        response = error(exc.status, code, message)
    except StoreUnavailable as exc:
        log.warning("API %s %s: %s", request.method, request.path, exc)
        response = error(503, "store_unavailable", f"the scan history is unreachable right now ({exc}); "
                         "retry shortly", retry_after_s=5)
        response.headers["Retry-After"] = "5"
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - never a traceback to a client
        log.exception("API handler failed for %s %s", request.method, request.path)
        response = error(500, "internal_error", "the gateway failed to answer; see its log")
    service.metrics.http[response.status] += 1
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not _is_api(request.path):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    else:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer only requests addressed to this gateway by a name it is configured for (DNS rebinding)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if sockname else 0
    host_headers = request.headers.getall("Host", [])
    host = host_headers[0] if len(host_headers) == 1 else None  # none or several: refused
    hosts = request.app[HOSTS]
    if not hosts.allows(host, port):
        return error(421, "unknown_host", f"this gateway does not answer to Host {(host or '')[:100]!r}; "
                     f"{hosts.hint(port)}")
    return await handler(request)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS headers for allowed origins only; a disallowed browser origin gets 403."""
    origin = request.headers.get("Origin")
    if not _is_api(request.path):
        return await handler(request)
    if origin is not None and not request.app[ORIGINS].allows(origin):
        return error(403, "forbidden_origin", f"origin {origin!r} is not allowed; add it to [server] allowed_origins")
    if request.method == "OPTIONS" and origin is not None:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The bearer token, then the rate limit, on every API path but health.

    Authenticating first keeps the buckets apart: any web page can make the browser send
    token-less requests to 127.0.0.1 (no-cors ``fetch()`` needs no permission), and those must
    never spend the requests of the extension, which calls from the same address.
    """
    if not _is_api(request.path) or request.path in PUBLIC_PATHS:
        return await handler(request)
    offered = bearer_token(request.headers.get("Authorization"))
    if token_matches(request.app[TOKEN], offered):
        if not request.app[TOKEN_LIMITER].allow("token"):
            return _rate_limited("too many requests with this token")
        return await handler(request)
    if not request.app[ANONYMOUS_LIMITER].allow(request.remote or "?"):
        return _rate_limited("too many requests without a valid token from this address")
    response = error(401, "unauthorized",
                     "send the gateway token as 'Authorization: Bearer <token>' (malwaresnipper token prints it)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="malwaresnipper"'
    return response


def _rate_limited(why: str) -> web.Response:
    response = error(429, "rate_limited", f"{why}; slow down and retry shortly")
    response.headers["Retry-After"] = "1"
    return response


# -- scans ----------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    cap = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > cap:
        raise BadRequest("body_too_large", f"the body is larger than the {cap}-byte cap; send less HTML or "
                         "fewer scripts", 413)
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            raw = await request.read()
    except TimeoutError:
        raise BadRequest("request_timeout", f"the body did not arrive within {BODY_READ_TIMEOUT_S:.0f} s; "
                         "send it at once", 408) from None
    return parse_json_body(raw)


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "").lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise BadRequest("invalid_parameter", f"?{name}= must be true or false")


async def post_scan(request: web.Request, *, legacy: bool = False) -> web.Response:
    service = request.app[SERVICE]
    wait = _flag(request, "wait")
    body = await _json_body(request)
    capture = capture_from_body(body, service.settings.engine.capture_limits(), legacy=legacy)
    job = await service.submit(capture, method="EXTENSION")
    if not wait:
        return web.json_response({"scan_id": job.scan_id, "status": "queued",
                                  "deduplicated": job.deduplicated}, status=202)
    budget = service.settings.proxy.scan_timeout_ms / 1000.0 + 1.0
    try:
        verdict = await job.verdict(timeout=budget)
    except TimeoutError:
        return web.json_response({"scan_id": job.scan_id, "status": "pending",
                                  "deduplicated": job.deduplicated}, status=202)
    except Exception as exc:  # noqa: BLE001 - the scan failed; the record says so too
        return error(503, "scan_failed", f"the scan could not complete: {exc}", scan_id=job.scan_id)
    return web.json_response({"scan_id": job.scan_id, "verdict": verdict.to_dict(),
                              "deduplicated": job.deduplicated})


async def post_scan_legacy(request: web.Request) -> web.Response:
    return await post_scan(request, legacy=True)


async def post_lookup(request: web.Request) -> web.Response:
    """Known verdicts of scripts (URL, sha256) and pages (URL): see server/lookups.py."""
    return web.json_response(await lookup_verdicts(request.app[SERVICE], await _json_body(request)))


def _time_param(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("invalid_parameter", f"?{name}= must be an ISO 8601 time or seconds since the epoch") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest("invalid_parameter", f"?{name}= must be an integer") from None
    if not lo <= number <= hi:
        raise BadRequest("invalid_parameter", f"?{name}= must be between {lo} and {hi}")
    return number


def scan_filter(request: web.Request) -> ScanFilter:
    level = request.query.get("level") or None
    if level is not None:
        level = level.upper()
        if level not in LEVEL_FILTERS:
            raise BadRequest("invalid_parameter", f"?level= must be one of {', '.join(LEVEL_FILTERS)}")
    source = request.query.get("source") or None
    method = None
    if source is not None:
        method = source.upper()
        if method not in ("PROXY", "EXTENSION"):
            raise BadRequest("invalid_parameter", "?source= must be proxy or extension")
    domain = (request.query.get("domain") or "").strip().lower().rstrip(".") or None
    return ScanFilter(level=level, method=method, domain=domain, since=_time_param(request, "since"),
                      until=_time_param(request, "until"), q=request.query.get("q") or None,
                      gateway=(request.query.get("gateway") or "").strip() or None)


async def list_scans(request: web.Request) -> web.Response:
    flt = scan_filter(request)
    limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    items, total = await request.app[SERVICE].store.list_scans(flt, limit, offset)
    return web.json_response({"items": items, "total": total, "limit": limit, "offset": offset})


async def get_scan(request: web.Request) -> web.Response:
    scan_id = request.match_info["scan_id"]
    record = await request.app[SERVICE].store.get_scan(scan_id)
    if record is None:
        return error(404, "not_found", f"no scan with id {scan_id[:64]!r}")
    return web.json_response(record)


# -- feedback: reports and overrides --------------------------------------------------------

#: Who may file a report through the API (the block page's reports come through the gateway).
API_REPORT_SOURCES = ("dashboard", "extension", "api")
#: What the extension may record through the API ("proceed once" is the gateway's own).
API_OVERRIDE_ACTIONS = ("proceed_anyway", "always_allow")


def _object_body(body: Any, example: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", f"the body must be a JSON object like {example}")
    return body


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or value not in choices:
        raise BadRequest("invalid_field", f"\"{name}\" must be one of {', '.join(choices)}")
    return value


async def post_report(request: web.Request) -> web.Response:
    """``POST /api/v1/scans/{id}/reports``: "this page is safe" / "this page is dangerous"."""
    scan_id = request.match_info["scan_id"]
    body = _object_body(await _json_body(request), '{"verdict": "safe", "comment": "our intranet"}')
    verdict = _choice(body, "verdict", REPORT_VERDICTS)
    source = _choice(body, "source", API_REPORT_SOURCES, "api")
    comment = body.get("comment", "")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise BadRequest("invalid_field", "\"comment\" must be a string")
    if len(comment) > MAX_COMMENT:
        raise BadRequest("invalid_field", f"\"comment\" is longer than {MAX_COMMENT} characters")
    item = await request.app[SERVICE].add_report(scan_id, verdict, source, comment.strip())
    if item is None:
        return error(404, "not_found", f"no scan with id {scan_id[:64]!r}")
    return web.json_response(item, status=201)


async def post_override(request: web.Request) -> web.Response:
    """``POST /api/v1/scans/{id}/overrides``: the extension's "Proceed anyway" / "Always allow"."""
    scan_id = request.match_info["scan_id"]
    body = _object_body(await _json_body(request), '{"action": "proceed_anyway"}')
    action = _choice(body, "action", API_OVERRIDE_ACTIONS)
    source = _choice(body, "source", ("extension",), "extension")
    item = await request.app[SERVICE].add_override(scan_id, action, source)
    if item is None:
        return error(404, "not_found", f"no scan with id {scan_id[:64]!r}")
    return web.json_response(item, status=201)


async def stats(request: web.Request) -> web.Response:
    window = _int_param(request, "window_s", 86_400, 60, 366 * 86_400)
    bucket = _int_param(request, "bucket_s", 3_600, 10, 366 * 86_400)
    if window // bucket > 2000:
        raise BadRequest("invalid_parameter", "window_s / bucket_s must be at most 2000 buckets")
    return web.json_response(await request.app[SERVICE].stats(window, bucket))


async def health(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].health())


EXPORT_FIELDS = ("scan_id", "ts", "url", "domain", "title", "method", "status", "risk_score",
                 "threat_level", "classification", "blocked", "top_indicator")
#: The CSV columns of each row's feedback marker (JSON Lines rows carry ``feedback`` whole).
FEEDBACK_FIELDS = ("reports_safe", "reports_dangerous", "overrides")
#: Added by ``?full=1``: every indicator's id, and the whole verdict as JSON.
FULL_EXPORT_FIELDS = ("indicators", "verdict")


async def export(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "jsonl").lower()
    if fmt not in ("csv", "jsonl"):
        raise BadRequest("invalid_parameter", "?format= must be csv or jsonl")
    flt = scan_filter(request)
    full = _flag(request, "full")
    # A full verdict is some kilobytes: a full export holds fewer rows at once.
    cap = MAX_FULL_EXPORT_ROWS if full else MAX_EXPORT_ROWS
    limit = _int_param(request, "limit", cap, 1, cap)
    rows = await request.app[SERVICE].store.export_rows(flt, limit, full)
    fields = EXPORT_FIELDS + FULL_EXPORT_FIELDS if full else EXPORT_FIELDS
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
        "Content-Disposition": f'attachment; filename="malwaresnipper-scans-{stamp}.{fmt}"',
    })
    await response.prepare(request)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(fields + FEEDBACK_FIELDS)
        for i, row in enumerate(rows):
            marker = row.get("feedback") or {}
            writer.writerow([_csv_cell(row, f) for f in fields]
                            + [marker.get("safe", 0), marker.get("dangerous", 0), marker.get("overrides", 0)])
            if i % 500 == 499:
                await response.write(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()
        await response.write(buf.getvalue().encode())
    else:
        chunk: list[str] = []
        for row in rows:
            chunk.append(json.dumps(row, ensure_ascii=False))
            if len(chunk) >= 500:
                await response.write(("\n".join(chunk) + "\n").encode())
                chunk = []
        if chunk:
            await response.write(("\n".join(chunk) + "\n").encode())
    await response.write_eof()
    return response


#: First characters that make a spreadsheet read a cell as a formula (``|`` starts DDE in some).
FORMULA_STARTS = frozenset("=+-@|\u2212")


def _csv_cell(row: dict[str, Any], field: str) -> str:
    value = row.get(field)
    if field == "top_indicator":
        value = value["id"] if value else ""
    elif field == "indicators":  # the full export: every indicator's id, strongest first
        verdict = row.get("verdict") or {}
        value = " ".join(str(i.get("id", "")) for i in verdict.get("indicators", []))
    elif field == "verdict":
        value = json.dumps(value, ensure_ascii=False) if value is not None else ""
    text = "" if value is None else str(value)
    # Hostile titles/URLs must not become spreadsheet formulas.
    if field != "risk_score" and _may_start_formula(text):
        text = "'" + text
    return text


def _may_start_formula(text: str) -> bool:
    """True for a cell a spreadsheet might evaluate: one opening with a formula character, its
    full-width or small form (NFKC folds ``＝`` and ``﹦`` to ``=``), or with whitespace or a
    control character (spreadsheets skip some of those before looking for ``=``)."""
    if not text:
        return False
    first = text[0]
    return (unicodedata.normalize("NFKC", first)[:1] in FORMULA_STARTS
            or first.isspace() or unicodedata.category(first)[0] in "CZ")


# -- lists ----------------------------------------------------------------------------------


def _list_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in LIST_NAMES:
        raise BadRequest("not_found", f"no list {name!r}; use allow or block", 404)
    return name


async def get_list(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[SERVICE].list_items(_list_name(request))})


def normalise_entry(entry: object, kind: object) -> tuple[str, str]:
    """``(entry in its normal form, kind)`` of a list entry a client sent, or BadRequest.

    The normal form is :func:`~malwaresnipper.engine.lists.normalise_entry`'s, the one the list
    service, the proxy's request-time checks and the engine match with."""
    if kind is None:
        kind = "domain"
    if not isinstance(kind, str) or kind not in LIST_KINDS:
        raise BadRequest("invalid_field", f"\"kind\" must be one of {', '.join(LIST_KINDS)}")
    if not isinstance(entry, str) or not entry.strip():
        raise BadRequest("missing_entry", "the body needs an \"entry\": a domain, a URL or a sha256")
    entry = entry.strip()
    if len(entry) > 2048:
        raise BadRequest("invalid_field", "\"entry\" is longer than 2048 characters")
    if kind == "url":
        from .captures import check_http_url

        entry = check_http_url(entry, "entry")  # a URL a browser would load, or invalid_url
    elif kind == "domain" and "." not in entry and entry.lower() != "localhost":
        raise BadRequest("invalid_field", f"{entry[:80]!r} is not a domain name (use kind \"url\" for URLs)")
    try:
        normal = engine_lists.normalise_entry(entry)
    except ValueError:
        normal = None
    if normal is None or normal.kind != kind:
        if kind == "sha256":
            raise BadRequest("invalid_field", "a sha256 entry is 64 hexadecimal characters")
        raise BadRequest("invalid_field", f"{entry[:80]!r} is not a {'URL' if kind == 'url' else 'domain name'}"
                         + (" (use kind \"url\" for URLs)" if kind == "domain" else ""))
    return normal.text, kind


async def post_list(request: web.Request) -> web.Response:
    name = _list_name(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object like {\"entry\": \"example.com\"}")
    entry, kind = normalise_entry(body.get("entry"), body.get("kind"))
    note = body.get("note") or ""
    if not isinstance(note, str):
        raise BadRequest("invalid_field", "\"note\" must be a string")
    item = await request.app[SERVICE].add_list_entry(name, entry, kind, note[:500])
    return web.json_response(item, status=201)


async def delete_list(request: web.Request) -> web.Response:
    name = _list_name(request)
    entry = request.query.get("entry", "").strip()
    if not entry:
        raise BadRequest("missing_entry", "say which entry to remove: DELETE ...?entry=example.com")
    removed = await request.app[SERVICE].remove_list_entry(name, entry)
    if removed is not None:
        return web.json_response({"removed": removed})
    return error(404, "not_found", f"{entry[:80]!r} is not on the {name} list")


# -- documents, metrics, dashboard ------------------------------------------------------------


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    text = request.app[SERVICE].metrics.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


PLACEHOLDER = (
    "<!doctype html><meta charset=utf-8><title>MalwareSnipper</title>"
    "<h1>MalwareSnipper gateway</h1><p>The dashboard is not installed in this build. "
    "The API is at /api/v1/ (see /api/v1/openapi.json).</p>"
)


async def index(request: web.Request) -> web.StreamResponse:
    page = DASHBOARD_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
    return web.Response(text=PLACEHOLDER, content_type="text/html")


async def dashboard_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    root = DASHBOARD_DIR.resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, ValueError):
        raise web.HTTPNotFound() from None
    if root not in target.parents or not target.is_file() or target.suffix == ".py":
        raise web.HTTPNotFound()
    ctype = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
             ".svg": "image/svg+xml", ".json": "application/json"}.get(target.suffix.lower())
    ctype = ctype or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return web.FileResponse(target, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})


def build_app(service: ScanService, *, token: str, origins: OriginPolicy, hosts: HostPolicy) -> web.Application:
    """The aiohttp application for ``service``."""
    settings = service.settings
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[errors_middleware, host_middleware, cors_middleware, auth_middleware],
    )
    per_minute = settings.server.rate_limit_per_minute
    app[SERVICE] = service
    app[TOKEN] = token
    app[ORIGINS] = origins
    app[HOSTS] = hosts
    app[TOKEN_LIMITER] = RateLimiter(per_minute)
    app[ANONYMOUS_LIMITER] = RateLimiter(min(per_minute, ANONYMOUS_PER_MINUTE))
    app[MAX_BODY] = settings.server.max_body_bytes
    r = app.router
    r.add_post("/api/v1/scans", post_scan)
    r.add_get("/api/v1/scans", list_scans)
    r.add_get("/api/v1/scans/{scan_id}", get_scan)
    r.add_post("/api/v1/scans/{scan_id}/reports", post_report)
    r.add_post("/api/v1/scans/{scan_id}/overrides", post_override)
    r.add_post("/api/v1/verdicts/lookup", post_lookup)
    r.add_post("/api/scan-realtime", post_scan_legacy)
    r.add_get("/api/v1/stats", stats)
    r.add_get("/api/v1/health", health)
    r.add_get("/api/v1/lists/{name}", get_list)
    r.add_post("/api/v1/lists/{name}", post_list)
    r.add_delete("/api/v1/lists/{name}", delete_list)
    r.add_get("/api/v1/export", export)
    r.add_get("/api/v1/openapi.json", openapi)
    r.add_get("/metrics", metrics)
    r.add_get("/", index)
    r.add_get("/dashboard/{path:.+}", dashboard_file)
    return app
