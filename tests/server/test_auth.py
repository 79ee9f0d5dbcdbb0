"""Token file, environment override, Origin policy, and the TLS rule for non-loopback hosts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from malwaresnipper.engine.errors import ConfigError
from malwaresnipper.server.auth import (
    HostPolicy,
    OriginPolicy,
    bearer_token,
    check_tls,
    load_or_create_token,
    token_matches,
)


def test_token_is_created_once_with_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALWARESNIPPER_TOKEN", raising=False)
    first = load_or_create_token(tmp_path / "home")
    path = tmp_path / "home" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40
    assert load_or_create_token(tmp_path / "home") == first
    monkeypatch.setenv("MALWARESNIPPER_TOKEN", "from-env")
    assert load_or_create_token(tmp_path / "home") == "from-env"
    assert path.read_text().strip() == first  # the env never overwrites the file


def test_token_checks() -> None:
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None
    assert token_matches("abc", "abc") and not token_matches("abc", "abd") and not token_matches("abc", None)
    assert not token_matches("", "")


def test_origin_policy() -> None:
    policy = OriginPolicy(5000, ["https://soc.example.org/"])
    assert policy.allows(None)  # not a browser cross-origin request
    assert policy.allows("http://127.0.0.1:5000") and policy.allows("http://localhost:5000/")
    assert policy.allows("chrome-extension://abcdefghijklmnopabcdefghijklmnop")
    assert policy.allows("https://soc.example.org")
    assert not policy.allows("http://127.0.0.1:5001")
    assert not policy.allows("https://evil.example") and not policy.allows("null")
    assert not policy.allows("chrome-extension://")
    policy.set_port(5001)
    assert policy.allows("http://127.0.0.1:5001") and not policy.allows("http://127.0.0.1:5000")


def test_non_loopback_needs_tls(tmp_path: Path) -> None:
    assert check_tls("127.0.0.1", "", "") is None
    assert check_tls("localhost", "", "") is None
    assert check_tls("::1", "", "") is None
    for host in ("0.0.0.0", "192.168.1.10", "gateway.example"):
        with pytest.raises(ConfigError, match="tls_cert and tls_key"):
            check_tls(host, "", "")
    with pytest.raises(ConfigError, match="together"):
        check_tls("0.0.0.0", "cert.pem", "")
    with pytest.raises(ConfigError, match="no such file"):
        check_tls("0.0.0.0", str(tmp_path / "missing.pem"), str(tmp_path / "missing.key"))


def test_host_policy_answers_only_configured_names() -> None:
    policy = HostPolicy("127.0.0.1", ["gateway.example.org", "proxy.example:8443"])
    for host in ("127.0.0.1:5000", "localhost:5000", "LOCALHOST.:5000", "[::1]:5000", "gateway.example.org",
                 "gateway.example.org:1", "proxy.example:8443"):
        assert policy.allows(host, 5000), host
    for host in ("evil.example:5000", "127.0.0.1:5001", "proxy.example", "proxy.example:5000", "", None,
                 "127.0.0.1", "a@127.0.0.1:5000", "127.0.0.1:5000/x", "[::1", "[::1]x", "127.0.0.1:\uff15000",
                 "127.0.0.1.evil.example:5000", "localhost:5000:1"):
        assert not policy.allows(host, 5000), host
    assert policy.allows("127.0.0.1", 80) and policy.allows("localhost", 443)
    # [server] host names the gateway too (the URL it prints), but only that, with the port.
    assert HostPolicy("gw.lan").allows("gw.lan:5000", 5000)
    assert HostPolicy("::1").allows("[::1]:5000", 5000)
    assert HostPolicy("0.0.0.0").allows("0.0.0.0:5000", 5000)
    assert not HostPolicy("0.0.0.0").allows("192.168.1.5:5000", 5000)
    assert not HostPolicy("gw.lan").allows("gw.lan:5001", 5000)
    with pytest.raises(ConfigError, match="allowed_hosts"):
        HostPolicy("127.0.0.1", ["http://gw.example/"])
