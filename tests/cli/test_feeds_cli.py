"""``malwaresnipper feeds update|status`` against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from malwaresnipper.cli.main import main
from malwaresnipper.server.feeds import FeedManager
from malwaresnipper.server.lists import ListService
from malwaresnipper.settings import load_settings


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over http://127.0.0.1 (answers If-Modified-Since with 304)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[[feeds]]\nname = "phish"\nformat = "openphish"\n'
                    f'source = "{base}/openphish.txt"\nallow_http_loopback = true\n')
    return path


def test_update_then_status(tmp_path: Path, served: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, base = served
    (root / "openphish.txt").write_text("https://phish.example/login\nhttps://phish.example/pay\n")
    config = _config(tmp_path, base)
    assert main(["feeds", "status", "--config", str(config)]) == 1  # no copy yet
    assert "no copy yet" in capsys.readouterr().out
    assert main(["feeds", "update", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "phish: 2 entries"
    assert (tmp_path / "data" / "feeds" / "phish.data").exists()
    assert main(["feeds", "update", "--config", str(config)]) == 0  # If-Modified-Since: 304
    assert capsys.readouterr().out.strip() == "phish: not modified (2 entries)"
    assert main(["feeds", "status", "--config", str(config), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["entries"] == 2 and row["stale"] is False and row["not_modified"] == 1

    (root / "openphish.txt").unlink()  # the source now answers 404
    assert main(["feeds", "update", "--config", str(config)]) == 1
    assert "phish: FAILED: HTTP 404" in capsys.readouterr().out
    assert main(["feeds", "status", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "HTTP 404" in out and " 2 " in out  # the saved copy's entries are still there


def test_update_refuses_unknown_names_and_missing_feeds(tmp_path: Path, served: tuple[Path, str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, served[1])
    assert main(["feeds", "update", "--config", str(config), "nope"]) == 2
    assert "no feed named nope" in capsys.readouterr().err
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["feeds", "status", "--config", str(empty)]) == 2
    assert "no [[feeds]]" in capsys.readouterr().err


async def test_a_running_gateway_adopts_the_copy_feeds_update_saved(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, base = served
    (root / "openphish.txt").write_text("https://phish.example/login\n")
    config = _config(tmp_path, base)
    lists = ListService()
    running = FeedManager.for_settings(load_settings(config), on_entries=lists.use_feeds)
    await running.start(refresh=False)
    try:
        await running.refresh("phish")
        assert lists.lookup("https://phish.example/pay").blocked is None
        grown = root / "openphish.txt"
        grown.write_text("https://phish.example/login\nhttps://phish.example/pay\n")
        later = time.time() + 5  # Last-Modified has one-second steps: make the change visible
        os.utime(grown, (later, later))
        assert await asyncio.to_thread(main, ["feeds", "update", "--config", str(config)]) == 0
        (root / "openphish.txt").unlink()  # the gateway's own download would fail now
        state = await running.refresh("phish")
        assert not state.last_error and state.in_force == "saved copy" and state.entries == 2
        hit = lists.lookup("https://phish.example/pay").blocked
        assert hit is not None and hit.hit.source == "feed phish"
    finally:
        await running.stop()
