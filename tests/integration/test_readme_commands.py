"""The gateway started exactly as the README says, as a new user would: no flags, no config file,
an empty working directory, a fresh MALWARESNIPPER_HOME, the default ports. A page fetched
through the proxy must be scanned and recorded (both commands once started the proxy alone).

Also: options mean what the user set, and a gateway whose scan services cannot start says why
and stops (unless told to pass traffic unscanned).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.proxy import DROPPER, REPO, SHIM, Client, Upstream, default_routes, free_port, make_self_signed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CLI = [sys.executable, "-m", "malwaresnipper.cli.main"]
BIN = Path(sys.executable).parent  # the installed console scripts, as on the user's PATH
DEFAULT_PORTS = (8080, 5000, 8765)  # proxy, API + dashboard, events: what the README promises


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    cert, key = make_self_signed(tmp_path_factory.mktemp("upstream"))
    site = Upstream(default_routes(b"\0"))
    site.start(cert, key)
    yield site
    site.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_default_ports_free(timeout: float = 60.0) -> None:
    """The README's ports must be free for the README's command (another test's gateway may
    still be closing). Not a skip: CI has them free, and a busy port is a finding."""
    deadline = time.monotonic() + timeout
    while any(_listening(p) for p in DEFAULT_PORTS):
        assert time.monotonic() < deadline, f"something else listens on {DEFAULT_PORTS}; cannot test the README"
        time.sleep(0.5)


class Started:
    """A gateway subprocess with its output collected."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"exited ({self.process.returncode}) before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"{text!r} not printed within {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def newcomer_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALWARESNIPPER_")}
    env.update(MALWARESNIPPER_HOME=str(tmp_path / "home"), HOME=str(tmp_path / "user"), PYTHONUNBUFFERED="1")
    (tmp_path / "user").mkdir()
    return env


def api_get(home: Path, path: str, port: int = 5000) -> dict:
    token = (home / "token").read_text().strip()
    r = Client().get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def scanned_and_recorded(gateway: Started, home: Path, upstream: Upstream, proxy_port: int = 8080,
                         api_port: int = 5000) -> None:
    """Fetch a malicious page through the proxy; monitor mode passes it and records the verdict."""
    url = upstream.url(f"/dropper.html?new={time.monotonic_ns()}")
    r = Client(f"127.0.0.1:{proxy_port}").get(url, timeout=30)
    assert r.status_code == 200 and r.content == DROPPER  # monitor mode: never altered
    deadline = time.monotonic() + 60
    while True:
        items = api_get(home, "/api/v1/scans?limit=50", api_port)["items"]
        done = [i for i in items if i["url"] == url and i["status"] == "complete"]
        if done:
            assert done[0]["threat_level"] == "MALICIOUS" and done[0]["method"] == "PROXY"
            assert done[0]["blocked"] is False
            return
        assert time.monotonic() < deadline, f"the page was never recorded:\n{gateway.output}"
        time.sleep(0.3)


def test_malwaresnipper_run_with_no_flags_scans_and_records(tmp_path: Path, upstream: Upstream) -> None:
    wait_for_default_ports_free()
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = newcomer_env(tmp_path)
    gateway = Started([str(BIN / "malwaresnipper"), "run"], cwd, env)
    try:
        gateway.wait_for("Press Ctrl-C")
        out = gateway.output
        assert "monitor mode" in out and "--mode block" in out  # the default, and how to block
        assert "http://127.0.0.1:5000/" in out and "ws://127.0.0.1:8765/" in out and "NOT running" not in out
        gateway.wait_for("scan worker 0 ready", 60)
        health = Client().get("http://127.0.0.1:5000/api/v1/health", timeout=10).json()
        assert health["status"] == "ok" and health["proxy"] == {"host": "127.0.0.1", "port": 8080}
        scanned_and_recorded(gateway, tmp_path / "home", upstream)
    finally:
        rc = gateway.stop()
    assert rc == 0, gateway.output
    # every log line once (not once per handler), and no per-connection chatter by default
    assert sum("gateway ready (monitor mode)" in line for line in gateway.lines) == 1, gateway.output
    assert not any("client connect" in line for line in gateway.lines), gateway.output
    assert (tmp_path / "home" / "history.sqlite3").exists() and not any(cwd.iterdir())


def test_mitmdump_with_the_addon_and_no_set_scans_and_records(tmp_path: Path, upstream: Upstream) -> None:
    wait_for_default_ports_free()
    cwd = tmp_path / "empty"
    cwd.mkdir()
    gateway = Started([str(BIN / "mitmdump"), "-s", str(SHIM)], cwd, newcomer_env(tmp_path))
    try:
        gateway.wait_for("gateway ready (monitor mode)")
        gateway.wait_for("scan worker 0 ready", 60)
        scanned_and_recorded(gateway, tmp_path / "home", upstream)
    finally:
        gateway.stop()


def test_run_options_mean_what_the_user_set_even_the_defaults(tmp_path: Path, upstream: Upstream) -> None:
    """The file says block with 1 worker; `--mode monitor` and `--set malwaresnipper_workers=2`
    (both the built-in defaults) must win."""
    (tmp_path / "malwaresnipper.toml").write_text("[proxy]\nmode = 'block'\nworkers = 1\n")
    proxy_port, api_port, events_port = free_port(), free_port(), free_port()
    env = newcomer_env(tmp_path)
    gateway = Started([*CLI, "run", "--mode", "monitor", "--listen-port", str(proxy_port), "--api-port",
                       str(api_port), "--events-port", str(events_port), "--confdir", str(tmp_path / "conf"),
                       "--set", "malwaresnipper_workers=2"], tmp_path, env)
    try:
        gateway.wait_for("Press Ctrl-C")
        assert "gateway (monitor mode" in gateway.output
        gateway.wait_for("scan worker 1 ready", 60)  # two workers, not the file's one
        scanned_and_recorded(gateway, tmp_path / "home", upstream, proxy_port, api_port)
    finally:
        gateway.stop()


@pytest.mark.parametrize("pass_unscanned", [False, True])
def test_run_says_why_scanning_cannot_start_and_stops_unless_told_to_pass_unscanned(
        tmp_path: Path, pass_unscanned: bool) -> None:
    proxy_port, events_port = free_port(), free_port()
    with socket.socket() as taken:  # the API port is taken (say, by another gateway)
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        api_port = taken.getsockname()[1]
        cmd = [*CLI, "run", "--listen-port", str(proxy_port), "--api-port", str(api_port), "--events-port",
               str(events_port), "--confdir", str(tmp_path / "conf")]
        gateway = Started(cmd + (["--pass-unscanned"] if pass_unscanned else []), tmp_path, newcomer_env(tmp_path))
        try:
            if pass_unscanned:
                gateway.wait_for("Press Ctrl-C")
                assert "traffic passes UNSCANNED (--pass-unscanned)" in gateway.output
                assert gateway.process.poll() is None
            else:
                rc = gateway.process.wait(timeout=90)
                assert rc != 0
        finally:
            gateway.stop()
    out = gateway.output
    banner = next(line for line in gateway.lines if "scan services    NOT running:" in line)
    assert f"127.0.0.1:{api_port}" in banner and "--api-port" in banner  # the reason, and the way out
    assert "see the errors above" not in out
    if not pass_unscanned:
        assert "The gateway stops" in out


def test_the_readme_quick_start_shows_block_mode_and_the_default() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    head = readme.split("## ", 1)[0] + readme.split("## Running the gateway", 1)[1].split("\n## ", 1)[0]
    assert "malwaresnipper run --mode block" in head or "scripts/run.sh --mode block" in head
    assert "monitor" in head and "default" in head
