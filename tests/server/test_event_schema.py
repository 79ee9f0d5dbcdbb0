"""server/event_schema.json is a valid JSON Schema and rejects what the docs say is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "server" / "event_schema.json").read_text())
V = jsonschema.Draft202012Validator(SCHEMA)

BASE = {"type": "event", "schema": 1, "seq": 7, "ts": "2026-11-26T12:00:00.123Z", "scan_id": "abc",
        "url": "https://a.example/", "method": "PROXY", "title": None}
COMPLETE = {**BASE, "status": "SCAN_COMPLETE", "progress": 100, "risk_score": 81.5, "threat_level": "MALICIOUS",
            "classification": "phishing", "blocked": True, "error": None, "duration_ms": 12.5,
            "layers": {"url": {"score": 50.0, "confidence": 1.0, "duration_ms": 0.2}},
            "indicators": [{"id": "url.ip_host", "title": "IP host", "severity": "HIGH", "layer": "url",
                            "category": "phishing", "classification": None,
                            "evidence": [{"snippet": "1.2.3.4", "location": "url", "offset": 8}]}]}


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("message", [
    {**BASE, "status": "SCAN_STARTED", "progress": 0},
    {**BASE, "status": "SCAN_STARTED", "progress": 0, "replay": True, "page_scan_id": "p1"},
    {**BASE, "status": "SCAN_UPDATE", "progress": 50, "layer": "javascript", "partial_score": 12.0},
    COMPLETE,
    {**COMPLETE, "threat_level": "UNKNOWN", "classification": "error", "error": "ScanTimeout: 5 s",
     "indicators": [], "layers": {}, "risk_score": 0.0},
    {**COMPLETE, "threat_level": "SUSPICIOUS", "complete": False,
     "incomplete_reasons": ["cut: page HTML of 9000000 characters"]},
    {**COMPLETE, "complete": True, "incomplete_reasons": []},
    {"type": "lists_changed"},
])
def test_documented_messages_pass(message: dict) -> None:
    V.validate(message)


@pytest.mark.parametrize("message", [
    {**BASE, "status": "SCAN_STARTED", "progress": 5},  # STARTED is progress 0
    {**BASE, "status": "SCAN_UPDATE", "progress": 50},  # no layer / partial_score
    {k: v for k, v in COMPLETE.items() if k != "risk_score"},
    {**COMPLETE, "threat_level": "EVIL"},
    {**COMPLETE, "surprise": 1},  # unknown fields are a schema change
    {**COMPLETE, "complete": "no"},
    {**COMPLETE, "incomplete_reasons": "cut"},
    {**COMPLETE, "seq": 0},
    {**COMPLETE, "ts": "yesterday"},
    {**COMPLETE, "method": "CLI"},
    {"type": "lists_changed", "seq": 3},
])
def test_wrong_messages_fail(message: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        V.validate(message)
