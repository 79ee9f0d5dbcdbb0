"""Alert renderings (generic, Slack, RFC 5424, ECS) with hostile page strings, and [[alerts]] config."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers.alert_receivers import parse_rfc5424
from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.server.alert_formats import (
    SD_ID,
    SYSLOG_MAX_UDP,
    alert_from_event,
    ecs_document,
    octet_counted,
    slack_body,
    syslog_message,
)
from malwaresnipper.settings import AlertSettings, load_settings
from helpers.alerts import HOSTILE_URL, complete_event


def test_summary_keeps_the_verdict_and_cleans_page_strings() -> None:
    alert = alert_from_event(complete_event(), dashboard_base="http://127.0.0.1:5000")
    assert alert["level"] == "MALICIOUS" and alert["risk_score"] == 91.25 and alert["blocked"] is True
    assert alert["source"] == "proxy" and alert["gateway_id"] == "gw-1" and alert["domain"] == "evil.example"
    assert alert["url"] == HOSTILE_URL  # nothing to clean in it: printable text, kept as it was
    assert len(alert["indicators"]) == 5 and alert["indicator_count"] == 8
    assert alert["dashboard_url"] == "http://127.0.0.1:5000/#scan=0123456789abcdef00000001"
    for text in [alert["title"]] + [i["title"] for i in alert["indicators"]]:
        assert not re.search("[\r\n\u2028\ud800-\udfff]", text), text
        assert "\ufffd" in text  # the controls are replaced visibly, not silently removed
    json.dumps(alert).encode("utf-8")  # no lone surrogate left: every sink can encode it
    assert alert_from_event(complete_event(), dashboard_base="")["dashboard_url"] is None


def test_rfc5424_escapes_sd_params_and_never_breaks_the_line() -> None:
    alert = alert_from_event(complete_event(), dashboard_base="https://gw.example:5000/")
    raw = syslog_message(alert, facility=16, app_name="malwaresnipper", procid=4242)
    assert b"\n" not in raw and b"\r" not in raw and "\u2028".encode() not in raw
    msg = parse_rfc5424(raw)
    assert (msg["facility"], msg["severity"]) == (16, 2)  # local0, critical
    assert (msg["hostname"], msg["app"], msg["procid"], msg["msgid"]) == ("gw-1", "malwaresnipper", "4242", "MALICIOUS")
    assert msg["timestamp"] == "2026-11-26T12:00:00.123Z"
    params = dict(msg["sd"][SD_ID])
    assert params["url"] == HOSTILE_URL  # '"', '\\' and ']' came through their escapes intact
    assert params["title"] == alert["title"]
    assert params["scanId"] == alert["scan_id"] and params["blocked"] == "true" and params["risk"] == "91.25"
    assert params["link"] == "https://gw.example:5000/#scan=0123456789abcdef00000001"
    assert params["indicators"] == "js.rule0,js.rule1,js.rule2,js.rule3,js.rule4"
    assert msg["bom"] and "MALICIOUS (risk 91.25, cryptojacking), blocked" in msg["msg"]
    suspicious = alert_from_event(complete_event(threat_level="SUSPICIOUS"), dashboard_base="")
    assert parse_rfc5424(syslog_message(suspicious, facility=4, app_name="ms", procid=1))["severity"] == 4


def test_rfc5424_fits_a_udp_datagram_whatever_the_page_sends() -> None:
    long_url = "https://evil.example/" + "]" * 6000 + "\u00e9" * 3000
    alert = alert_from_event(complete_event(url=long_url, title="t" * 5000), dashboard_base="http://127.0.0.1:1")
    raw = syslog_message(alert, facility=16, app_name="malwaresnipper", procid=1, max_bytes=SYSLOG_MAX_UDP)
    assert len(raw) <= SYSLOG_MAX_UDP
    msg = parse_rfc5424(raw)  # still well-formed (no escape or character cut in half)
    assert dict(msg["sd"][SD_ID])["url"].startswith("https://evil.example/]]]")
    framed = octet_counted(raw)
    assert framed.startswith(f"{len(raw)} ".encode()) and framed.endswith(raw)


def test_slack_body_keeps_page_text_inert() -> None:
    body = slack_body(alert_from_event(complete_event(), dashboard_base="http://127.0.0.1:5000"))
    text = body["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text  # no mention, no link markup from the page
    # The only angle-bracket markup left is our own dashboard link.
    assert re.findall(r"<[^>]*>", text) == [("<http://127.0.0.1:5000/#scan=0123456789abcdef00000001|"
                                             "Open scan 0123456789abcdef00000001 in the dashboard>")]
    # Page text sits in code spans that it cannot close (its backticks are replaced).
    for line in text.splitlines():
        assert line.count("`") % 2 == 0
    outside_code = re.sub(r"`[^`]*`", "", text)
    assert "@channel" not in outside_code and "evil.example" not in outside_code
    assert text.count("\n") == 1 + 5  # headline, five indicators, link: page newlines never add lines


def test_ecs_document_field_names() -> None:
    alert = alert_from_event(complete_event(), dashboard_base="http://127.0.0.1:5000")
    doc = ecs_document(alert, observer_hostname="host-1")
    line = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    assert "\n" not in line and "\u2028" not in line
    back = json.loads(line)
    assert back["event"]["kind"] == "alert" and back["event"]["category"] == ["web", "intrusion_detection"]
    assert back["event"]["action"] == "url-blocked" and back["event"]["type"] == ["denied"]
    assert back["event"]["outcome"] == "success" and back["event"]["severity"] == 73
    assert back["event"]["url"] == "http://127.0.0.1:5000/#scan=0123456789abcdef00000001"
    assert back["@timestamp"] == "2026-11-26T12:00:00.123Z" and back["ecs"]["version"].startswith("8.")
    assert back["url"]["full"] == HOSTILE_URL and back["url"]["domain"] == "evil.example"
    assert back["url"]["scheme"] == "https"
    assert back["threat"]["indicator"]["url"]["full"] == HOSTILE_URL
    assert back["threat"]["indicator"]["type"] == "url"
    assert back["rule"]["id"] == "js.rule0" and back["rule"]["name"].startswith("Indicator 0: ")
    assert back["observer"] == {**back["observer"], "vendor": "MalwareSnipper", "type": "proxy", "name": "gw-1",
                                "hostname": "host-1"}
    assert back["malwaresnipper"]["scan_id"] == alert["scan_id"]
    flagged = ecs_document(alert_from_event(complete_event(blocked=False), dashboard_base=""))
    assert flagged["event"]["action"] == "url-flagged" and "url" not in flagged["event"]


# -- configuration -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(text)
    return path


def test_alert_tables_load_from_toml(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, """
[[alerts]]
kind = "webhook"
name = "chat"
url = "https://chat.example/hooks/abc"
secret_env = "CHAT_SECRET"
format = "slack"
min_level = "SUSPICIOUS"
sources = ["proxy"]

[[alerts]]
kind = "syslog"
host = "siem.example"
transport = "tls"
blocked_only = true

[[alerts]]
kind = "file"
path = "alerts/malwaresnipper.ndjson"
"""))
    chat, siem, file = settings.alerts
    assert (chat.label, chat.format, chat.min_level, chat.sources) == ("chat", "slack", "SUSPICIOUS", ["proxy"])
    assert (siem.label, siem.syslog_port, siem.blocked_only) == ("syslog", 6514, True)
    assert file.path == "alerts/malwaresnipper.ndjson" and settings.source == str(tmp_path / "malwaresnipper.toml")
    assert "abc" not in repr(AlertSettings(kind="webhook", url="https://x.example/", secret="abc"))


@pytest.mark.parametrize("table, message", [
    ('kind = "webhook"\nurl = "ftp://chat.example/hook"\nsecret = "s"',
     "url = 'ftp://chat.example/hook' must be an http:// or https:// URL with a host"),
    ('kind = "webhook"\nurl = "file:///etc/passwd"\nsecret = "s"', "must be an http:// or https:// URL"),
    ('kind = "webhook"\nurl = "https://"\nsecret = "s"', "must be an http:// or https:// URL with a host"),
    ('kind = "webhook"\nurl = "https://chat.example:99999/"\nsecret = "s"', "is not a valid URL"),
    ('kind = "webhook"\nurl = "https://chat.example/"', "a webhook needs secret or secret_env"),
    ('kind = "webhook"\nurl = "https://chat.example/"\nsecret = "a"\nsecret_env = "B"', "not both"),
    ('kind = "pager"', "kind = 'pager' is not one of 'webhook', 'syslog', 'file'"),
    ('name = "x"', "kind is missing"),
    ('kind = "syslog"', "host is missing"),
    ('kind = "syslog"\nhost = "h"\ntransport = "relp"', "transport = 'relp' is not one of"),
    ('kind = "syslog"\nhost = "h"\nurl = "https://x.example/"', "url does not apply to kind 'syslog'"),
    ('kind = "file"\nhost = "h"', "host does not apply to kind 'file'"),
    ('kind = "file"\nmin_level = "BENIGN"', "min_level = 'BENIGN' is not one of 'SUSPICIOUS', 'MALICIOUS'"),
    ('kind = "file"\nsources = ["email"]', "sources = 'email' is not one of"),
    ('kind = "file"\nqueue_size = 0', "queue_size must be >= 1"),
    ('kind = "file"\ndashboard_url = "javascript:alert(1)"', "dashboard_url"),
    ('kind = "file"\nbogus = 1', "unknown key 'alerts[0].bogus'"),
])
def test_bad_alert_tables_are_clear_errors(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_settings(write(tmp_path, f"[[alerts]]\n{table}\n"))
    assert "malwaresnipper.toml" in str(info.value)


def test_two_sinks_need_two_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two \\[\\[alerts\\]\\] sinks are named 'file'"):
        load_settings(write(tmp_path, '[[alerts]]\nkind = "file"\n[[alerts]]\nkind = "file"\npath = "b.ndjson"\n'))


def test_config_check_reports_a_bad_webhook_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from malwaresnipper.cli.main import main

    bad = write(tmp_path, '[[alerts]]\nkind = "webhook"\nurl = "gopher://chat.example/"\nsecret = "s"\n')
    assert main(["config", "check", str(bad)]) == 2
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


def test_documented_alert_tables_are_complete_and_the_defaults() -> None:
    """docs/configuration.md spells out every [[alerts]] key; each documented value is the default."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    alert_blocks = [b for b in blocks if b.startswith("[[alerts]]")]
    assert alert_blocks, "docs/configuration.md has no [[alerts]] example"
    import tomllib

    documented: dict[str, Any] = {}
    for table in tomllib.loads(alert_blocks[0])["alerts"]:
        kind = table["kind"]
        settings = AlertSettings(**{k: v for k, v in table.items()})
        for key, value in table.items():
            if key not in ("kind", "url", "host", "secret_env"):  # the values a sink must be given
                assert getattr(settings, key) == getattr(_default(kind), key) == value, (kind, key)
        documented.update(table)
    from dataclasses import fields

    missing = {f.name for f in fields(AlertSettings)} - set(documented)
    assert not missing, f"undocumented [[alerts]] keys: {sorted(missing)}"


def _default(kind: str) -> AlertSettings:
    required = {"webhook": {"url": "https://x.example/", "secret_env": "X"}, "syslog": {"host": "h"}, "file": {}}
    return AlertSettings(kind=kind, **required[kind])  # type: ignore[arg-type]


def test_the_examples_in_docs_alerts_are_valid_settings(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
    examples = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.DOTALL) if b.startswith("[[alerts]]")]
    assert len(examples) >= 5
    kinds = set()
    for example in examples:
        settings = load_settings(write(tmp_path, example))
        kinds |= {a.kind for a in settings.alerts}
    assert kinds == {"webhook", "syslog", "file"}
