"""Alert sinks against real local receivers: webhook (aiohttp), syslog over UDP, TCP and TLS, the
ECS file; the bus feed and its filters; and the whole gateway, a malicious capture in, an alert out."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers.alert_receivers import StreamSyslog, UdpSyslog, WebhookReceiver, parse_rfc5424, self_signed, wait_until
from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.server.alert_formats import SD_ID, alert_from_event
from malwaresnipper.server.alerts import (
    AlertDispatcher,
    AlertSink,
    FileSink,
    SyslogSink,
    WebhookSink,
    build_sink,
)
from malwaresnipper.server.app import start_services
from malwaresnipper.server.events import InMemoryEventBus
from malwaresnipper.server.store import SqliteScanStore
from malwaresnipper.settings import (
    AlertSettings,
    ProxySettings,
    ServerSettings,
    Settings,
)
from helpers.ports import free_port
from helpers.alerts import HOSTILE_TITLE, HOSTILE_URL, complete_event

SECRET = "test-secret-\u00e9"
FAST: dict[str, Any] = {"backoff_s": 0.05, "backoff_max_s": 0.2}


def alert(n: int = 1, **overrides: Any) -> dict[str, Any]:
    return alert_from_event(complete_event(scan_id=f"scan{n:04d}", **overrides), dashboard_base="http://127.0.0.1:5000")


def signature(body: bytes, secret: str = SECRET) -> str:
    """How a receiver checks an alert (docs/alerts.md): HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def started(config: AlertSettings, tmp_path: Path) -> AlertSink:
    sink = build_sink(config, Settings(data_dir=str(tmp_path)))
    await sink.start()
    return sink


def webhook(url: str, **kwargs: Any) -> AlertSettings:
    return AlertSettings(kind="webhook", url=url, secret=SECRET, **{**FAST, **kwargs})


# -- webhook -------------------------------------------------------------------------------------


async def test_webhook_posts_a_signed_summary(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    sink = await started(webhook(receiver.url), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: receiver.received, message="the webhook POST")
        got = receiver.received[0]
        assert hmac.compare_digest(got.headers["X-MalwareSnipper-Signature"], signature(got.body))
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-MalwareSnipper-Alert-Id"] == "scan0001"
        body = json.loads(got.body)
        assert body["type"] == "malwaresnipper.alert" and body["scan_id"] == "scan0001"
        assert (body["level"], body["risk_score"], body["blocked"], body["source"]) == ("MALICIOUS", 91.25, True, "proxy")
        assert body["url"] == HOSTILE_URL and body["domain"] == "evil.example" and body["gateway_id"] == "gw-1"
        assert body["time"] == "2026-11-26T12:00:00.123Z" and body["classification"] == "cryptojacking"
        assert [i["id"] for i in body["indicators"]] == [f"js.rule{i}" for i in range(5)]
        assert all(i["title"].startswith(f"Indicator {n}: ") for n, i in enumerate(body["indicators"]))
        assert body["dashboard_url"] == "http://127.0.0.1:5000/#scan=scan0001"
        assert "\n" not in body["title"]
        # A body changed in transit no longer verifies.
        assert not hmac.compare_digest(got.headers["X-MalwareSnipper-Signature"], signature(got.body + b" "))
        assert (sink.delivered, sink.failed, sink.dead_letter, sink.dropped) == (1, 0, 0, 0)
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_retries_after_a_500(tmp_path: Path) -> None:
    async def first_fails(request: web.Request, n: int) -> web.StreamResponse | None:
        return web.Response(status=500) if n == 1 else None

    receiver = WebhookReceiver(first_fails)
    await receiver.start()
    sink = await started(webhook(receiver.url), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: sink.delivered == 1, message="delivery after the 500")
        assert receiver.hits == 2 and len(receiver.received) == 1
        assert (sink.failed, sink.dead_letter) == (1, 0)
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_waits_for_a_receiver_that_is_down_and_comes_back(tmp_path: Path) -> None:
    port = free_port()
    sink = await started(webhook(f"http://127.0.0.1:{port}/hook", retries=20), tmp_path)
    receiver = WebhookReceiver(port=port)
    try:
        sink.offer(alert(1))
        sink.offer(alert(2))
        await wait_until(lambda: sink.failed >= 3, message="failed attempts while the receiver is down")
        assert sink.delivered == 0
        await receiver.start()
        await wait_until(lambda: sink.delivered == 2, message="delivery once the receiver is back")
        assert [json.loads(r.body)["scan_id"] for r in receiver.received] == ["scan0001", "scan0002"]  # in order
        assert sink.dead_letter == 0
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_gives_up_after_its_retries_and_counts_a_dead_letter(tmp_path: Path) -> None:
    async def always_500(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=503)

    receiver = WebhookReceiver(always_500)
    await receiver.start()
    sink = await started(webhook(receiver.url, retries=2), tmp_path)
    try:
        sink.offer(alert(1))
        sink.offer(alert(2))
        await wait_until(lambda: sink.dead_letter == 2, message="two dead letters")
        assert receiver.hits == 6 and sink.failed == 6 and sink.delivered == 0  # 1 + 2 retries each
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_does_not_retry_a_client_error(tmp_path: Path) -> None:
    async def not_found(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=404)

    receiver = WebhookReceiver(not_found)
    await receiver.start()
    sink = await started(webhook(receiver.url), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: sink.dead_letter == 1, message="a dead letter")
        await asyncio.sleep(0.3)
        assert receiver.hits == 1 and sink.failed == 1
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_follows_no_redirect_to_another_host(tmp_path: Path) -> None:
    elsewhere = WebhookReceiver()
    await elsewhere.start()

    async def redirect(request: web.Request, n: int) -> web.StreamResponse | None:
        if request.path == "/hook":
            # Same port, another host name: a different origin, so not followed.
            raise web.HTTPPermanentRedirect(f"http://localhost:{elsewhere.port}/stolen")
        if request.path == "/moved":
            raise web.HTTPTemporaryRedirect("/hook-v2")  # same origin: followed, body and signature kept
        return None

    receiver = WebhookReceiver(redirect)
    await receiver.start()
    sink = await started(webhook(receiver.url), tmp_path)
    moved = await started(webhook(f"http://127.0.0.1:{receiver.port}/moved", name="moved"), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: sink.dead_letter == 1, message="the redirect refused")
        assert elsewhere.hits == 0 and receiver.hits == 1 and sink.failed == 1  # not retried either
        moved.offer(alert(2))
        await wait_until(lambda: moved.delivered == 1, message="the same-origin redirect followed")
        got = receiver.received[-1]
        assert got.path == "/hook-v2" and got.headers["X-MalwareSnipper-Signature"] == signature(got.body)
    finally:
        await sink.stop()
        await moved.stop()
        await receiver.stop()
        await elsewhere.stop()


async def test_webhook_queue_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def hold(request: web.Request, n: int) -> None:
        await release.wait()

    receiver = WebhookReceiver(hold)
    await receiver.start()
    sink = await started(webhook(receiver.url, queue_size=3), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: receiver.hits == 1, message="the first POST held by the receiver")
        started_at = time.perf_counter()
        for n in range(2, 9):
            sink.offer(alert(n))  # never waits, whatever the receiver does
        assert time.perf_counter() - started_at < 0.05
        assert len(sink.queue) == 3 and sink.dropped == 4
        release.set()
        await wait_until(lambda: sink.delivered == 4, message="the queue drained")
        assert [json.loads(r.body)["scan_id"] for r in receiver.received] == [
            "scan0001", "scan0006", "scan0007", "scan0008"]  # the oldest waiting ones were dropped
    finally:
        release.set()
        await sink.stop()
        await receiver.stop()


async def test_slack_format_for_a_chat_incoming_webhook(tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    sink = await started(webhook(receiver.url, format="slack"), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: receiver.received, message="the chat POST")
        got = receiver.received[0]
        body = json.loads(got.body)
        assert set(body) == {"text", "username"}
        assert "<!channel>" not in body["text"] and "&lt;!channel&gt;" in body["text"]
        assert "<http://127.0.0.1:5000/#scan=scan0001|" in body["text"]
        assert got.headers["X-MalwareSnipper-Signature"] == signature(got.body)
    finally:
        await sink.stop()
        await receiver.stop()


async def test_webhook_over_https_verifies_the_receiver(tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    trusted = await started(webhook(f"https://127.0.0.1:{port}/hook", ca_file=str(cert), name="trusted"), tmp_path)
    untrusted = await started(webhook(f"https://127.0.0.1:{port}/hook", name="untrusted", retries=0), tmp_path)
    try:
        trusted.offer(alert(1))
        untrusted.offer(alert(2))
        await wait_until(lambda: trusted.delivered == 1 and untrusted.dead_letter == 1, message="both outcomes")
        assert [json.loads(b)["scan_id"] for b in received] == ["scan0001"]  # the unverified one never sent
    finally:
        await trusted.stop()
        await untrusted.stop()
        await runner.cleanup()


async def test_webhook_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = AlertSettings(kind="webhook", url="https://chat.example/hook", secret_env="TEST_ALERT_SECRET")
    monkeypatch.delenv("TEST_ALERT_SECRET", raising=False)
    with pytest.raises(ConfigError, match="secret_env = 'TEST_ALERT_SECRET': that environment variable is not set"):
        build_sink(config, Settings(data_dir=str(tmp_path)))
    monkeypatch.setenv("TEST_ALERT_SECRET", "from-env")
    sink = build_sink(config, Settings(data_dir=str(tmp_path)))
    assert isinstance(sink, WebhookSink) and sink.sign(b"{}") == signature(b"{}", "from-env")


# -- syslog --------------------------------------------------------------------------------------


async def test_syslog_over_udp(tmp_path: Path) -> None:
    receiver = UdpSyslog()
    await receiver.start()
    sink = await started(AlertSettings(kind="syslog", host="127.0.0.1", port=receiver.port, **FAST), tmp_path)
    try:
        sink.offer(alert(1, title=HOSTILE_TITLE))
        sink.offer(alert(2, url="https://evil.example/" + "x" * 9000))
        await wait_until(lambda: len(receiver.datagrams) == 2, message="two datagrams")
        first, second = (parse_rfc5424(d) for d in receiver.datagrams)
        assert (first["facility"], first["severity"], first["app"], first["msgid"]) == (16, 2, "malwaresnipper", "MALICIOUS")
        params = dict(first["sd"][SD_ID])
        assert params["scanId"] == "scan0001" and params["url"] == HOSTILE_URL
        assert "\n" not in params["title"] and params["title"].startswith('Free "prizes"] \\ ')
        assert len(receiver.datagrams[1]) <= 2048 and dict(second["sd"][SD_ID])["scanId"] == "scan0002"
        assert sink.delivered == 2
    finally:
        await sink.stop()
        receiver.stop()


async def test_syslog_over_tcp_reconnects_when_the_receiver_comes_back(tmp_path: Path) -> None:
    receiver = StreamSyslog()
    await receiver.start()
    sink = await started(AlertSettings(kind="syslog", host="127.0.0.1", port=receiver.port, transport="tcp",
                                       retries=50, **FAST), tmp_path)
    assert isinstance(sink, SyslogSink)
    try:
        sink.offer(alert(1))
        sink.offer(alert(2))
        await wait_until(lambda: len(receiver.messages) == 2, message="two framed messages")
        assert [dict(parse_rfc5424(m)["sd"][SD_ID])["scanId"] for m in receiver.messages] == ["scan0001", "scan0002"]
        await receiver.stop()
        await wait_until(lambda: not sink.connected, message="the sink noticing the receiver went away")
        sink.offer(alert(3))
        await wait_until(lambda: sink.failed >= 2, message="connection attempts refused")
        await receiver.start()  # the same port
        await wait_until(lambda: len(receiver.messages) == 3, message="the message sent after the reconnect")
        assert dict(parse_rfc5424(receiver.messages[2])["sd"][SD_ID])["scanId"] == "scan0003"
        assert sink.connects == 2 and receiver.connections == 2 and sink.dead_letter == 0
    finally:
        await sink.stop()
        await receiver.stop()


async def test_syslog_over_tls_with_a_self_signed_receiver(tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    receiver = StreamSyslog(ssl_context=server_ctx)
    await receiver.start()
    trusted = await started(AlertSettings(kind="syslog", name="trusted", host="127.0.0.1", port=receiver.port,
                                          transport="tls", ca_file=str(cert), **FAST), tmp_path)
    untrusted = await started(AlertSettings(kind="syslog", name="untrusted", host="127.0.0.1", port=receiver.port,
                                            transport="tls", retries=0, **FAST), tmp_path)
    try:
        trusted.offer(alert(1))
        untrusted.offer(alert(2))
        await wait_until(lambda: len(receiver.messages) == 1 and untrusted.dead_letter == 1, message="both outcomes")
        parsed = parse_rfc5424(receiver.messages[0])
        assert dict(parsed["sd"][SD_ID])["scanId"] == "scan0001" and parsed["hostname"] == "gw-1"
        assert untrusted.delivered == 0  # a receiver whose certificate is not trusted gets nothing
    finally:
        await trusted.stop()
        await untrusted.stop()
        await receiver.stop()


# -- ECS file ------------------------------------------------------------------------------------


async def test_ecs_file_lines_private_and_rotation_friendly(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "alerts.ndjson"
    sink = await started(AlertSettings(kind="file", path=str(path), **FAST), tmp_path)
    assert isinstance(sink, FileSink)
    try:
        sink.offer(alert(1, title=HOSTILE_TITLE))
        sink.offer(alert(2, blocked=False))
        await wait_until(lambda: sink.delivered == 2, message="two lines")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and len(lines) == 3  # one line per alert, hostile title or not
        first, second = (json.loads(line) for line in lines[:2])
        assert first["event"]["kind"] == "alert" and first["event"]["action"] == "url-blocked"
        assert second["event"]["action"] == "url-flagged"
        assert first["url"]["full"] == HOSTILE_URL and first["url"]["domain"] == "evil.example"
        assert first["threat"]["indicator"]["url"]["full"] == HOSTILE_URL
        assert first["rule"]["id"] == "js.rule0" and first["observer"]["name"] == "gw-1"
        assert first["malwaresnipper"]["scan_id"] == "scan0001"
        # A rotator moves the file away: the next batch starts a new one.
        path.rename(path.with_suffix(".1"))
        sink.offer(alert(3))
        await wait_until(lambda: sink.delivered == 3, message="the line after rotation")
        assert [json.loads(line)["malwaresnipper"]["scan_id"] for line in path.read_text().splitlines()] == ["scan0003"]
        assert len(path.with_suffix(".1").read_text().splitlines()) == 2
    finally:
        await sink.stop()


async def test_ecs_file_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    path = tmp_path / "alerts.ndjson"
    os.symlink(target, path)
    sink = await started(AlertSettings(kind="file", path=str(path), retries=1, **FAST), tmp_path)
    try:
        sink.offer(alert(1))
        await wait_until(lambda: sink.dead_letter == 1, message="the dead letter")
        assert target.read_text() == "" and sink.failed == 2
    finally:
        await sink.stop()


def test_file_path_defaults_and_relative_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sink = build_sink(AlertSettings(kind="file"), Settings(data_dir=str(home)))
    assert isinstance(sink, FileSink) and sink.path == home / "alerts.ndjson"
    config_file = tmp_path / "etc" / "malwaresnipper.toml"
    relative = build_sink(AlertSettings(kind="file", path="alerts/a.ndjson"), Settings(source=str(config_file)))
    assert isinstance(relative, FileSink) and relative.path == (tmp_path / "etc" / "alerts" / "a.ndjson").resolve()


# -- the feed: bus -> filters -> sinks -----------------------------------------------------------


class Collect(AlertSink):
    """A sink that keeps what it is given (to test the feed's choices, not a delivery)."""

    def __init__(self, config: AlertSettings) -> None:
        super().__init__(config)
        self.got: list[dict[str, Any]] = []

    async def deliver(self, batch: list[dict[str, Any]]) -> None:
        self.got += batch


async def test_feed_filters_by_level_source_blocked_and_gateway(tmp_path: Path) -> None:
    store = SqliteScanStore(tmp_path / "h.sqlite3")
    await store.open()
    bus = InMemoryEventBus(store)
    await bus.start()
    everything = Collect(AlertSettings(kind="file", name="everything", min_level="SUSPICIOUS"))
    malicious = Collect(AlertSettings(kind="file", name="malicious"))
    blocked_proxy = Collect(AlertSettings(kind="file", name="blocked", blocked_only=True, sources=["proxy"]))
    dispatcher = AlertDispatcher([everything, malicious, blocked_proxy])
    await dispatcher.start(bus, gateway_id="gw-1")
    try:
        def publish(n: int, **fields: Any) -> None:
            event = complete_event(scan_id=f"s{n}", **fields)
            event.pop("seq")
            # The API refuses lone surrogates (server/captures.py) and the proxy decodes bytes, so
            # no event carries one; the renderings' own guard is tested in test_alert_formats.
            bus.publish(json.loads(json.dumps(event).replace("\\ud800", "")))

        bus.publish({"type": "event", "scan_id": "s0", "status": "SCAN_STARTED", "gateway_id": "gw-1"})
        publish(1, threat_level="BENIGN")
        publish(2, threat_level="UNKNOWN", error="timeout")
        publish(3, threat_level="SUSPICIOUS", blocked=False)
        publish(4, threat_level="MALICIOUS", blocked=False, method="EXTENSION")
        publish(5, threat_level="MALICIOUS", blocked=True)
        publish(6, threat_level="MALICIOUS", blocked=True, gateway_id="gw-2")  # another gateway's scan
        publish(7, threat_level="MALICIOUS", blocked=True, method="EXTENSION")
        publish(8, threat_level="SUSPICIOUS", title='"status":"SCAN_COMPLETE","threat_level":"BENIGN"')
        await bus.flush()
        await wait_until(lambda: len(everything.got) == 5, message="the alerts")
        await asyncio.sleep(0.05)
        assert [a["scan_id"] for a in everything.got] == ["s3", "s4", "s5", "s7", "s8"]
        assert [a["scan_id"] for a in malicious.got] == ["s4", "s5", "s7"]
        assert [a["scan_id"] for a in blocked_proxy.got] == ["s5"]
        assert dispatcher.alerts == 5
    finally:
        await dispatcher.stop()
        await bus.stop()
        await store.close()


# -- the whole gateway ---------------------------------------------------------------------------

MINER = ('var miner = new CoinHive.Anonymous("SITE_KEY", {throttle: 0.3}); miner.start();\n'
         "setInterval(function () { report(miner.getHashesPerSecond(), miner.getTotalHashes()); "
         "miner.setThrottle(0.1); }, 1000);\n")


def miner_capture(url: str) -> dict[str, Any]:
    return {"url": url, "title": "Free movies", "content_type": "text/html",
            "html": '<html><body><script src="https://coinhive.com/lib/coinhive.min.js"></script></body></html>',
            "scripts": [{"url": "https://coinhive.com/lib/coinhive.min.js", "text": MINER}]}


async def test_gateway_end_to_end_malicious_capture_to_alerts(tmp_path: Path) -> None:
    """The real ScanService and API: a cryptominer page submitted by the extension is alerted on
    the webhook, over syslog and in the ECS file; an ordinary page is not; a receiver that holds
    its request never delays a verdict."""
    release = asyncio.Event()

    async def hold_second(request: web.Request, n: int) -> None:
        if n == 2:
            await release.wait()

    receiver = WebhookReceiver(hold_second)
    await receiver.start()
    udp = UdpSyslog()
    await udp.start()
    ecs_path = tmp_path / "alerts.ndjson"
    settings = Settings(
        proxy=ProxySettings(workers=1), data_dir=str(tmp_path / "home"),
        server=ServerSettings(gateway_id="gw-test"),
        alerts=[
            webhook(receiver.url, name="hook"),
            AlertSettings(kind="syslog", host="127.0.0.1", port=udp.port, min_level="SUSPICIOUS"),
            AlertSettings(kind="file", path=str(ecs_path)),
        ],
    )
    running = await start_services(settings, api_port=0, events_port=0)
    headers = {"Authorization": f"Bearer {running.token}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async def scan(body: dict[str, Any]) -> dict[str, Any]:
                async with http.post(running.api_url + "/api/v1/scans?wait=true", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.json()

            benign = await scan({"url": "https://ordinary.example/", "title": "Hello",
                                 "html": "<html><body><p>Hello</p></body></html>"})
            assert benign["verdict"]["threat_level"] == "BENIGN"
            bad = await scan(miner_capture("https://free-movies.example/watch"))
            assert bad["verdict"]["threat_level"] == "MALICIOUS", bad["verdict"]
            await wait_until(lambda: receiver.received, timeout=20, message="the webhook alert")
            got = receiver.received[0]
            assert got.headers["X-MalwareSnipper-Signature"] == signature(got.body)
            body = json.loads(got.body)
            # The benign scan, published first, made no alert: the first alert is the miner's.
            assert body["scan_id"] == bad["scan_id"] and body["level"] == "MALICIOUS"
            assert body["source"] == "extension" and body["gateway_id"] == "gw-test" and body["blocked"] is False
            assert body["url"] == "https://free-movies.example/watch" and body["indicators"]
            assert body["dashboard_url"] == f"{running.api_url}/#scan={bad['scan_id']}"

            # The dashboard link points at a scan the API serves.
            async with http.get(running.api_url + f"/api/v1/scans/{bad['scan_id']}") as resp:
                assert resp.status == 200 and (await resp.json())["verdict"]["threat_level"] == "MALICIOUS"

            await wait_until(lambda: udp.datagrams, message="the syslog alert")
            params = dict(parse_rfc5424(udp.datagrams[0])["sd"][SD_ID])
            assert params["scanId"] == bad["scan_id"] and params["gateway"] == "gw-test"
            await wait_until(lambda: ecs_path.exists() and ecs_path.read_text(), message="the ECS line")
            doc = json.loads(ecs_path.read_text().splitlines()[0])
            assert doc["malwaresnipper"]["scan_id"] == bad["scan_id"] and doc["url"]["domain"] == "free-movies.example"

            # The receiver now holds the next alert's request: scans go on regardless.
            second = await scan(miner_capture("https://free-movies.example/other"))
            await wait_until(lambda: receiver.hits == 2, message="the held POST")
            t0 = time.perf_counter()
            third = await scan(miner_capture("https://free-movies.example/third"))
            assert third["verdict"]["threat_level"] == "MALICIOUS" and time.perf_counter() - t0 < 5
            assert len(receiver.received) == 1  # the held alert is still held
            release.set()
            await wait_until(lambda: len(receiver.received) == 3, message="the held alerts delivered")
            assert [json.loads(r.body)["scan_id"] for r in receiver.received] == [
                bad["scan_id"], second["scan_id"], third["scan_id"]]

            async with http.get(running.api_url + "/metrics") as resp:
                metrics = await resp.text()
            assert 'malwaresnipper_alerts_delivered_total{kind="webhook",sink="hook"} 3' in metrics
            assert 'malwaresnipper_alerts_dead_letter_total{kind="webhook",sink="hook"} 0' in metrics
            assert 'malwaresnipper_alerts_dropped_total{kind="file",sink="file"} 0' in metrics
            assert "# TYPE malwaresnipper_alerts_failed_total counter" in metrics
            assert "malwaresnipper_alert_feed_overflows_total 0" in metrics
    finally:
        release.set()
        await running.stop()
        await receiver.stop()
        udp.stop()


async def test_gateway_refuses_to_start_with_a_missing_webhook_secret(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ALERT_SECRET", raising=False)
    settings = Settings(data_dir=str(tmp_path / "home"), alerts=[
        AlertSettings(kind="webhook", url="https://chat.example/hook", secret_env="NOT_SET_ALERT_SECRET")])
    with pytest.raises(ConfigError, match="NOT_SET_ALERT_SECRET"):
        await start_services(settings, api_port=0, events_port=0)
    assert not (tmp_path / "home" / "history.sqlite3").exists()  # nothing was started


async def test_with_several_gateways_each_alerts_on_its_own_scans_once(shared_redis_stream: tuple[str, str]) -> None:
    """With the Redis bus every gateway reads every gateway's events; an alert goes out once."""
    from malwaresnipper.server.redis_bus import RedisEventBus

    url, stream = shared_redis_stream
    buses = {gw: RedisEventBus(url, gateway_id=gw, stream=stream) for gw in ("gw-a", "gw-b")}
    sinks = {gw: Collect(AlertSettings(kind="file", name=gw)) for gw in buses}
    dispatchers = {gw: AlertDispatcher([sinks[gw]]) for gw in buses}
    for gw, bus in buses.items():
        await bus.start()
        await dispatchers[gw].start(bus, gateway_id=gw)
    try:
        for i in range(3):
            for gw, bus in buses.items():
                event = complete_event(scan_id=f"{gw}-{i}", gateway_id=gw, title="t")
                event.pop("seq")
                event["indicators"] = []
                bus.publish(event)
        await wait_until(lambda: all(len(s.got) == 3 for s in sinks.values()), message="three alerts each")
        await asyncio.sleep(0.3)
        for gw, sink in sinks.items():
            assert [a["scan_id"] for a in sink.got] == [f"{gw}-{i}" for i in range(3)]
    finally:
        for gw, bus in buses.items():
            await dispatchers[gw].stop()
            await bus.stop()
