"""Reports and overrides through a real ``malwaresnipper serve``: good and bad input, the token and
Origin checks, unknown scans, the scan record, history, export, ``/metrics`` and the event stream."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from helpers.api import Gateway, small_page

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gw-feedback"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def _scan(gateway: Gateway, s: aiohttp.ClientSession, i: str) -> str:
    """A recorded scan (feedback needs the record, not its verdict: the 202 comes once it is stored)."""
    status, data = await gateway.call(s, "POST", "/api/v1/scans", small_page(i))
    assert status == 202, data
    return str(data["scan_id"])


async def _feedback_event(events: Any) -> dict[str, Any]:
    """The next feedback_changed message (the scan's own events may come in between)."""
    while True:
        message = await events.recv()
        if message["type"] == "feedback_changed":
            return message


async def test_a_report_and_an_override_are_recorded_shown_counted_and_announced(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        scan_id = await _scan(gateway, s, "fb-good")
        events = await gateway.events()
        try:
            status, report = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/reports",
                                                {"verdict": "dangerous", "comment": " skimmer on checkout ",
                                                 "source": "dashboard"})
            assert status == 201, report
            assert (report["verdict"], report["source"], report["comment"]) == (
                "dangerous", "dashboard", "skimmer on checkout")
            assert report["url"] == small_page("fb-good")["url"]
            assert await _feedback_event(events) == {"type": "feedback_changed", "scan_id": scan_id, "kind": "report"}
            status, override = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/overrides",
                                                  {"action": "proceed_anyway"})
            assert status == 201 and override["source"] == "extension", override
            assert await _feedback_event(events) == {"type": "feedback_changed", "scan_id": scan_id, "kind": "override"}
        finally:
            assert events.ws is not None
            await events.ws.close()

        status, record = await gateway.call(s, "GET", f"/api/v1/scans/{scan_id}")
        assert status == 200
        assert [r["report_id"] for r in record["reports"]] == [report["report_id"]]
        assert [o["action"] for o in record["overrides"]] == ["proceed_anyway"]

        status, page = await gateway.call(s, "GET", "/api/v1/scans?q=fb-good")
        assert page["items"][0]["feedback"] == {"safe": 0, "dangerous": 1, "overrides": 1}

        async with s.get(gateway.base_url + "/api/v1/export?format=csv&q=fb-good",
                         headers=gateway.headers()) as resp:
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
        assert [(r["scan_id"], r["reports_safe"], r["reports_dangerous"], r["overrides"]) for r in rows] == [
            (scan_id, "0", "1", "1")]
        async with s.get(gateway.base_url + "/api/v1/export?format=jsonl&q=fb-good",
                         headers=gateway.headers()) as resp:
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert lines[0]["feedback"] == {"safe": 0, "dangerous": 1, "overrides": 1}

        # the answers are what openapi.json says they are
        _, doc = await gateway.call(s, "GET", "/api/v1/openapi.json")
        assert {"/api/v1/scans/{scan_id}/reports", "/api/v1/scans/{scan_id}/overrides"} <= set(doc["paths"])
        for name, value in (("Report", report), ("Override", override), ("ScanRecord", record),
                            ("Summary", page["items"][0])):
            jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                             "components": doc["components"]}).validate(value)

        async with s.get(gateway.base_url + "/metrics", headers=gateway.headers()) as resp:
            text = await resp.text()
        assert 'malwaresnipper_reports_total{verdict="dangerous",source="dashboard"} 1' in text
        assert 'malwaresnipper_overrides_total{action="proceed_anyway",source="extension"} 1' in text


@pytest.mark.parametrize(("path", "body", "code"), [
    ("reports", {"verdict": "maybe"}, "invalid_field"),
    ("reports", {}, "invalid_field"),
    ("reports", {"verdict": "safe", "comment": 5}, "invalid_field"),
    ("reports", {"verdict": "safe", "comment": "x" * 1001}, "invalid_field"),
    ("reports", {"verdict": "safe", "source": "blockpage"}, "invalid_field"),
    ("reports", ["safe"], "invalid_body"),
    ("overrides", {"action": "proceed_once"}, "invalid_field"),
    ("overrides", {"action": "always_allow", "source": "gateway"}, "invalid_field"),
    ("overrides", {}, "invalid_field"),
])
async def test_bad_feedback_gets_a_json_400_and_records_nothing(gateway: Gateway, path: str, body: object,
                                                                code: str) -> None:
    async with aiohttp.ClientSession() as s:
        scan_id = await _scan(gateway, s, "fb-bad")
        status, data = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/{path}", body)
        assert status == 400 and data["error"]["code"] == code, data
        status, data = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/reports", data=b"{not json",
                                          headers={"Content-Type": "application/json"})
        assert status == 400, data
        _, record = await gateway.call(s, "GET", f"/api/v1/scans/{scan_id}")
        assert record["reports"] == [] and record["overrides"] == []


async def test_unknown_scan_missing_token_and_foreign_origin_are_refused(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        scan_id = await _scan(gateway, s, "fb-auth")
        status, data = await gateway.call(s, "POST", "/api/v1/scans/no-such-scan/reports", {"verdict": "safe"})
        assert status == 404 and data["error"]["code"] == "not_found"
        status, data = await gateway.call(s, "POST", "/api/v1/scans/no-such-scan/overrides",
                                          {"action": "always_allow"})
        assert status == 404 and data["error"]["code"] == "not_found"
        status, data = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/reports", {"verdict": "safe"},
                                          auth=False)
        assert status == 401 and data["error"]["code"] == "unauthorized"
        status, data = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/overrides",
                                          {"action": "always_allow"}, token="wrong")
        assert status == 401
        status, data = await gateway.call(s, "POST", f"/api/v1/scans/{scan_id}/reports", {"verdict": "safe"},
                                          headers={"Origin": "https://evil.example"})
        assert status == 403 and data["error"]["code"] == "forbidden_origin"
        _, record = await gateway.call(s, "GET", f"/api/v1/scans/{scan_id}")
        assert record["reports"] == [] and record["overrides"] == []
