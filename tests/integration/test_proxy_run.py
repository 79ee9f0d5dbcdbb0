"""``malwaresnipper run`` (the whole gateway in one command) and ``malwaresnipper ca``."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from helpers.proxy import (
    DROPPER,
    ENGINE_TOML,
    REPO,
    SHIM,
    TOKEN,
    Client,
    Upstream,
    default_routes,
    free_port,
    make_self_signed,
    start_gateway,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CLI = [sys.executable, "-m", "malwaresnipper.cli.main"]


def test_ca_command_creates_the_ca_and_prints_its_fingerprints(tmp_path):
    out = subprocess.run([*CLI, "ca", "--confdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cert_path = tmp_path / "mitmproxy-ca-cert.pem"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"CA certificate: {cert_path}" in out.stdout
    assert ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)) in out.stdout
    assert base64.b64encode(hashlib.sha256(spki).digest()).decode() in out.stdout
    again = subprocess.run([*CLI, "ca", "--confdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert again.stdout == out.stdout  # existing CA reused, not regenerated


def test_run_starts_proxy_api_and_events_and_says_where(tmp_path):
    cert, key = make_self_signed(tmp_path)
    upstream = Upstream(default_routes(b"\0"))
    upstream.start(cert, key)
    proxy_port, api_port, events_port = free_port(), free_port(), free_port()
    (tmp_path / "malwaresnipper.toml").write_text(
        "[proxy]\nmode = 'block'\nworkers = 1\nblock_budget_ms = 10000\n" + ENGINE_TOML)
    env = dict(os.environ, MALWARESNIPPER_HOME=str(tmp_path / "home"), MALWARESNIPPER_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*CLI, "run", "--listen-port", str(proxy_port), "--api-port", str(api_port), "--events-port", str(events_port),
         "--confdir", str(tmp_path / "conf"), "--set", f"ssl_verify_upstream_trusted_ca={cert}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("Press Ctrl-C" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        out = "".join(lines)
        assert f"proxy            http://127.0.0.1:{proxy_port}" in out, out
        assert f"http://127.0.0.1:{api_port}/" in out and f"ws://127.0.0.1:{events_port}/" in out
        assert str(tmp_path / "conf" / "mitmproxy-ca-cert.pem") in out and "block mode" in out
        health = Client().get(f"http://127.0.0.1:{api_port}/api/v1/health", timeout=10).json()
        assert health["status"] == "ok"
        assert health["proxy"] == {"host": "127.0.0.1", "port": proxy_port}  # the dashboard's empty state shows it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("scan worker 0 ready" in line for line in lines):
            time.sleep(0.1)
        s = Client(f"127.0.0.1:{proxy_port}", tmp_path / "conf" / "mitmproxy-ca-cert.pem")
        r = s.get(upstream.url("/dropper.html", tls=True), timeout=30)
        assert r.status_code == 403 and "MalwareSnipper blocked this page" in r.text
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        upstream.stop()
    assert rc == 0, "".join(lines)
    assert (tmp_path / "home" / "history.sqlite3").exists()
    # Each record is printed once (mitmproxy's terminal log, no second handler), and per-connection
    # chatter only with -v.
    out = "".join(lines)
    assert sum("gateway ready" in line for line in lines) == 1, out
    assert sum("blocked page" in line and "dropper.html" in line for line in lines) == 1, out
    assert "client connect" not in out and "server connect" not in out, out


_PROBE = """
import json, os, sys
import malwaresnipper
json.dump({"package": malwaresnipper.__file__, "is_package": hasattr(malwaresnipper, "__path__"),
           "addon_on_path": any(os.path.abspath(p or os.curdir) == %r for p in sys.path)}, open(%r, "w"))
"""


def test_mitmdump_entry_loads_the_real_package_in_mitmdump_and_in_the_workers(tmp_path):
    """``mitmdump -s addon/mitmdump_entry.py``: mitmproxy puts ``addon/`` on ``sys.path``, and the
    entry file is named so that ``malwaresnipper`` is still the package, in mitmdump (a second
    script reports what it imported) and in the spawned scan worker (which could not unpickle its
    job, let alone call the engine, if the name resolved to anything but the package)."""
    imported = {alias.name for node in ast.walk(ast.parse(SHIM.read_text())) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names}
    assert SHIM.name != "malwaresnipper.py" and imported == {"Gateway"}  # no sys.path / sys.modules edits
    report = tmp_path / "probe.json"
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE % (str(SHIM.parent), str(report)))
    cert, key = make_self_signed(tmp_path)
    upstream = Upstream(default_routes(b""))
    upstream.start(cert, key)
    gw = start_gateway(tmp_path / "gw", cert, options=["malwaresnipper_mode=block", "malwaresnipper_budget_ms=20000"],
                       scripts=(probe,))
    try:
        seen = json.loads(report.read_text())
        assert seen["addon_on_path"] is True  # the situation the name guards against is real
        assert seen["is_package"] is True and Path(seen["package"]).resolve().parent == REPO.resolve()
        assert gw.worker_pids()
        url = upstream.url("/dropper.html")
        with gw.session() as s:
            r = s.get(url, timeout=60)
        assert r.status_code == 403 and DROPPER not in r.content
        assert gw.wait_for_scan(url)["threat_level"] == "MALICIOUS"
        assert "Traceback" not in gw.log() and "ModuleNotFoundError" not in gw.log()
    finally:
        gw.stop()
        upstream.stop()
