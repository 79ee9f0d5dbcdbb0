"""A complete SCAN_COMPLETE event with hostile page strings, for the alert renderings and sinks."""

from __future__ import annotations

from typing import Any

HOSTILE_URL = 'https://evil.example/a]"b\\c?q=<!channel>|click&x=`y`'


HOSTILE_TITLE = 'Free "prizes"] \\ \r\n<!channel> @channel\u2028next line `x` \ud800'


def complete_event(**overrides: Any) -> dict[str, Any]:
    """A SCAN_COMPLETE event as the service publishes it (server/event_schema.json)."""
    event: dict[str, Any] = {
        "type": "event", "schema": 1, "seq": 7, "ts": "2026-11-26T12:00:00.123Z",
        "scan_id": "0123456789abcdef00000001", "url": HOSTILE_URL, "status": "SCAN_COMPLETE",
        "method": "PROXY", "progress": 100, "title": HOSTILE_TITLE, "gateway_id": "gw-1",
        "page_scan_id": None, "risk_score": 91.25, "threat_level": "MALICIOUS",
        "classification": "cryptojacking",
        "indicators": [
            {"id": f"js.rule{i}", "title": f"Indicator {i}: {HOSTILE_TITLE}", "severity": "HIGH", "layer": "javascript",
             "category": "cryptomining", "classification": "cryptojacking",
             "evidence": [{"snippet": "x", "location": "script", "offset": 1}]}
            for i in range(8)
        ],
        "layers": {}, "duration_ms": 12.5, "blocked": True, "error": None, "complete": True,
        "incomplete_reasons": [],
    }
    event.update(overrides)
    return event

