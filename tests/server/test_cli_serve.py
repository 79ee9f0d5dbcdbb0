"""``malwaresnipper token`` and ``malwaresnipper serve`` refusing what it must refuse."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, MALWARESNIPPER_HOME=str(home), **env)
    full_env.pop("MALWARESNIPPER_TOKEN", None) if "MALWARESNIPPER_TOKEN" not in env else None
    return subprocess.run([sys.executable, "-m", "malwaresnipper.cli.main", *args], cwd=home,
                          env=full_env, capture_output=True, text=True, timeout=60)


def test_token_prints_the_stored_token_or_the_override(tmp_path: Path) -> None:
    first = run(["token"], tmp_path)
    assert first.returncode == 0
    token = first.stdout.strip()
    assert token == (tmp_path / "token").read_text().strip() and len(token) >= 40
    assert run(["token"], tmp_path).stdout.strip() == token
    assert run(["token"], tmp_path, MALWARESNIPPER_TOKEN="override").stdout.strip() == "override"


def test_serve_refuses_non_loopback_without_tls(tmp_path: Path) -> None:
    result = run(["serve", "--host", "0.0.0.0", "--api-port", "0", "--events-port", "0"], tmp_path)
    assert result.returncode == 2
    assert "tls_cert" in result.stderr and "127.0.0.1" in result.stderr


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(["serve", "--api-port", str(port), "--events-port", "0"], tmp_path)
    assert result.returncode == 2 and "cannot listen" in result.stderr
