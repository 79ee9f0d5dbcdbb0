"""Rows and the store factory type shared by the store tests (the fixtures are in tests/server/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from malwaresnipper.server.store import NewScan, ScanResult, ScanStore


def new_scan(i: int, *, ts: float | None = None, method: str = "EXTENSION", domain: str = "a.example",
             gateway_id: str = "", title: str | None = None) -> NewScan:
    return NewScan(scan_id=f"s{i}", ts=ts if ts is not None else time.time(), url=f"https://{domain}/{i}",
                   domain=domain, title=title if title is not None else f"Title {i}", method=method,
                   content_hash=f"h{i}", gateway_id=gateway_id)


def result(i: int, level: str = "BENIGN", score: float = 5.0, indicators: list | None = None) -> ScanResult:
    return ScanResult(scan_id=f"s{i}", status="complete", risk_score=score, threat_level=level,
                      classification="benign" if level == "BENIGN" else "phishing", blocked=level == "MALICIOUS",
                      duration_ms=12.0, verdict={"risk_score": score, "threat_level": level},
                      indicators=indicators or [])


StoreFactory = Callable[..., Awaitable[ScanStore]]
