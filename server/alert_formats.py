"""What an alert says, in each sink's language: pure functions, no I/O (docs/alerts.md).

:func:`alert_from_event` turns a ``SCAN_COMPLETE`` event into the verdict summary every sink
starts from (the generic webhook body). The others are renderings of it: a Slack/Mattermost
incoming-webhook body, an RFC 5424 syslog message, an Elastic Common Schema document.

The URL, the title and every indicator title may come from a page: they are hostile. Each
rendering neutralises them for its own syntax (JSON escaping, RFC 5424 SD-PARAM escaping, Slack's
control characters) and none of them lets a line break through: a receiver that splits on lines
(a TCP syslog server without octet counting, a file shipper) still sees one alert as one record.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import quote, urlsplit

from .. import __version__

ALERT_SCHEMA_VERSION = 1
#: Indicators carried by an alert (the event lists them most severe first).
TOP_INDICATORS = 5
LEVEL_RANK = {"SUSPICIOUS": 1, "MALICIOUS": 2}
#: RFC 5424 severities: MALICIOUS is critical (2), SUSPICIOUS a warning (4).
SYSLOG_SEVERITY = {"MALICIOUS": 2, "SUSPICIOUS": 4}
#: The SD-ID of our structured data. 32473 is the private enterprise number IANA reserves for
#: documentation (RFC 5612): MalwareSnipper has none of its own.
SD_ID = "malwaresnipper@32473"
#: Datagram size RFC 5426 says every receiver should accept; stream transports allow more.
SYSLOG_MAX_UDP = 2048
SYSLOG_MAX_STREAM = 8192
ECS_VERSION = "8.11.0"
#: Elastic's detection-rule severities (low 21, medium 47, high 73, critical 99).
ECS_SEVERITY = {"SUSPICIOUS": 47, "MALICIOUS": 73}
BOM = "\ufeff"

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates (which
# a JSON event may carry as \\udXXX escapes and which no UTF-8 encoder accepts).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SCAN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def clean(value: Any, limit: int = 2048) -> str:
    """A page-derived string made printable: controls and line breaks become U+FFFD, cut to ``limit``."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return _UNSAFE.sub("\ufffd", text)


def dashboard_link(base: str, scan_id: str) -> str | None:
    """``<base>/#scan=<id>``: the dashboard opens that scan's detail (dashboard/app.js)."""
    if not base or not _SCAN_ID.match(scan_id):
        return None
    return f"{base.rstrip('/')}/#scan={quote(scan_id, safe='')}"


def alert_from_event(event: dict[str, Any], *, dashboard_base: str) -> dict[str, Any]:
    """The verdict summary of a ``SCAN_COMPLETE`` event: the generic webhook body.

    Every page-derived string is :func:`clean`-ed here once, so each rendering starts from text
    without controls; the renderings still escape it for their own syntax.
    """
    url = clean(event.get("url"), 4096)
    try:
        domain = (urlsplit(url).hostname or "").lower()
    except ValueError:
        domain = ""
    scan_id = str(event.get("scan_id") or "")
    indicators = [
        {
            "id": clean(ind.get("id"), 128),
            "title": clean(ind.get("title"), 300),
            "severity": clean(ind.get("severity"), 16),
            "category": clean(ind.get("category"), 64),
            "layer": clean(ind.get("layer"), 64),
        }
        for ind in (event.get("indicators") or [])[:TOP_INDICATORS]
        if isinstance(ind, dict)
    ]
    return {
        "type": "malwaresnipper.alert",
        "schema": ALERT_SCHEMA_VERSION,
        "alert_id": clean(scan_id, 128),
        "time": clean(event.get("ts"), 40),
        "scan_id": clean(scan_id, 128),
        "page_scan_id": clean(event["page_scan_id"], 128) if event.get("page_scan_id") else None,
        "gateway_id": clean(event.get("gateway_id"), 255),
        "source": str(event.get("method") or "").lower(),
        "url": url,
        "domain": domain,
        "title": clean(event["title"], 300) if event.get("title") else None,
        "level": str(event.get("threat_level") or ""),
        "risk_score": float(event.get("risk_score") or 0.0),
        "classification": clean(event.get("classification"), 64),
        "blocked": bool(event.get("blocked")),
        "complete": bool(event.get("complete", True)),
        "indicators": indicators,
        "indicator_count": len(event.get("indicators") or []),
        "dashboard_url": dashboard_link(dashboard_base, scan_id),
    }


def headline(alert: dict[str, Any], *, url_limit: int = 300) -> str:
    """One line for people: ``MALICIOUS (risk 87.5, cryptojacking), blocked: <url>: <titles>``."""
    what = f"{alert['level']} (risk {alert['risk_score']:g}, {alert['classification'] or 'unclassified'})"
    if alert["blocked"]:
        what += ", blocked"
    titles = "; ".join(i["title"] for i in alert["indicators"][:3])
    return f"{what}: {clean(alert['url'], url_limit)}" + (f": {titles}" if titles else "")


# -- Slack / Mattermost ---------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """Slack's three control characters (``<!channel>``, ``<url|label>`` are built from them)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    """Page text as inline code: no mentions, links or markup are read inside it."""
    return "`" + _slack_escape(text.replace("`", "'")) + "`"


def slack_body(alert: dict[str, Any]) -> dict[str, Any]:
    """An incoming-webhook body Slack and Mattermost both accept: ``text`` and nothing page-controlled
    outside code spans."""
    lines = [
        f"*MalwareSnipper: {alert['level']}* (risk {alert['risk_score']:g}, "
        f"{_slack_escape(alert['classification'] or 'unclassified')})"
        + (", *blocked*" if alert["blocked"] else "")
        + f" on {_slack_code(clean(alert['url'], 500))}",
    ]
    lines += [f"\u2022 {_slack_code(i['title'])} ({_slack_escape(i['severity'])})" for i in alert["indicators"]]
    if alert["dashboard_url"]:
        lines.append(f"<{_slack_escape(alert['dashboard_url'])}|Open scan {_slack_escape(alert['scan_id'])} in the dashboard>")
    return {"text": "\n".join(lines), "username": "MalwareSnipper"}


# -- RFC 5424 syslog ------------------------------------------------------------------------------


def _sd_escape(text: str) -> str:
    """RFC 5424 section 6.3.3: '"', '\\' and ']' are escaped with a backslash inside PARAM-VALUE."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(text: str, limit: int) -> str:
    """A HOSTNAME/APP-NAME/PROCID field: printable US-ASCII without spaces, or the NILVALUE '-'."""
    token = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return token or "-"


def syslog_message(alert: dict[str, Any], *, facility: int, app_name: str, procid: int | str,
                   max_bytes: int = SYSLOG_MAX_STREAM) -> bytes:
    """One RFC 5424 message (without transport framing), at most ``max_bytes`` long."""
    pri = facility * 8 + SYSLOG_SEVERITY.get(alert["level"], 5)
    header = " ".join([
        f"<{pri}>1", alert["time"] or "-", _header_token(alert["gateway_id"], 255),
        _header_token(app_name, 48), _header_token(str(procid), 128), _header_token(alert["level"], 32),
    ])
    for url_limit, title_limit in ((2048, 300), (512, 120), (128, 40)):
        params = [
            ("scanId", alert["scan_id"]),
            ("level", alert["level"]),
            ("risk", f"{alert['risk_score']:g}"),
            ("classification", alert["classification"]),
            ("blocked", "true" if alert["blocked"] else "false"),
            ("source", alert["source"]),
            ("gateway", alert["gateway_id"]),
            ("url", clean(alert["url"], url_limit)),
            ("domain", alert["domain"]),
            ("indicators", ",".join(i["id"] for i in alert["indicators"])),
        ]
        if alert["title"]:
            params.append(("title", clean(alert["title"], title_limit)))
        if alert["page_scan_id"]:
            params.append(("pageScanId", alert["page_scan_id"]))
        if alert["dashboard_url"]:
            params.append(("link", clean(alert["dashboard_url"], url_limit)))
        sd = f"[{SD_ID} " + " ".join(f'{name}="{_sd_escape(value)}"' for name, value in params) + "]"
        head = f"{header} {sd} ".encode()
        if len(head) + len(BOM.encode()) + 16 <= max_bytes:
            break
    room = max_bytes - len(head)
    msg = (BOM + headline(alert, url_limit=url_limit)).encode("utf-8")
    if len(msg) > room:
        msg = msg[:room].decode("utf-8", "ignore").encode("utf-8")  # never half a character
    return (head + msg)[:max_bytes]


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 (and RFC 5425) framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


# -- Elastic Common Schema ------------------------------------------------------------------------


def ecs_document(alert: dict[str, Any], *, observer_hostname: str | None = None) -> dict[str, Any]:
    """The alert as one ECS document, for Filebeat, Vector or a Splunk forwarder to pick up."""
    top = alert["indicators"][0] if alert["indicators"] else None
    url = _ecs_url(alert["url"], alert["domain"])
    event: dict[str, Any] = {
        "kind": "alert",
        "category": ["web", "intrusion_detection"],
        "type": ["denied"] if alert["blocked"] else ["info"],
        "action": "url-blocked" if alert["blocked"] else "url-flagged",
        "outcome": "success",
        "severity": ECS_SEVERITY.get(alert["level"], 21),
        "risk_score": alert["risk_score"],
        "module": "malwaresnipper",
        "dataset": "malwaresnipper.alert",
        "id": alert["alert_id"],
        "created": alert["time"],
    }
    if alert["dashboard_url"]:
        event["url"] = alert["dashboard_url"]
    doc: dict[str, Any] = {
        "@timestamp": alert["time"],
        "ecs": {"version": ECS_VERSION},
        "message": headline(alert),
        "event": event,
        "url": url,
        "threat": {
            "indicator": {
                "type": "url",
                "url": url,
                "description": alert["classification"],
                "provider": "MalwareSnipper",
                "confidence": "High" if alert["level"] == "MALICIOUS" else "Medium",
            },
        },
        "observer": {
            "vendor": "MalwareSnipper",
            "product": "MalwareSnipper",
            "type": "proxy",
            "name": alert["gateway_id"],
            "hostname": observer_hostname or socket.gethostname(),
            "version": __version__,
        },
        "tags": ["malwaresnipper", alert["level"].lower()],
        "malwaresnipper": {
            "scan_id": alert["scan_id"],
            "page_scan_id": alert["page_scan_id"],
            "level": alert["level"],
            "classification": alert["classification"],
            "blocked": alert["blocked"],
            "complete": alert["complete"],
            "source": alert["source"],
            "title": alert["title"],
            "indicators": alert["indicators"],
        },
    }
    if top is not None:
        doc["rule"] = {"id": top["id"], "name": top["title"], "category": top["category"],
                       "ruleset": top["layer"]}
    return doc


def _ecs_url(full: str, domain: str) -> dict[str, Any]:
    out: dict[str, Any] = {"full": full, "original": full}
    try:
        parts = urlsplit(full)
        port = parts.port
    except ValueError:
        return out
    if domain:
        out["domain"] = domain
    if parts.scheme:
        out["scheme"] = parts.scheme
    if parts.path:
        out["path"] = parts.path
    if parts.query:
        out["query"] = parts.query
    if port is not None:
        out["port"] = port
    return out
