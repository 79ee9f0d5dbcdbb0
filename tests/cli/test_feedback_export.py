"""``malwaresnipper feedback export``: reports in a real SQLite history become URL corpus rows that
``train --data`` reads."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from malwaresnipper.cli.feedback import parse_since
from malwaresnipper.cli.main import main
from malwaresnipper.engine.training.corpus import load_corpus
from malwaresnipper.server.store import NewScan, SqliteScanStore


async def _history(data: Path, reports: list[tuple[str, str, str]]) -> None:
    """Scans of ``url``s and the reports on them: (scan id, url, verdict)."""
    store = SqliteScanStore(data / "history.sqlite3")
    await store.open()
    try:
        for scan_id, url, verdict in reports:
            if await store.get_scan(scan_id) is None:
                await store.insert_scan(NewScan(scan_id=scan_id, ts=time.time(), url=url, domain="", title=None,
                                                method="PROXY", content_hash=scan_id))
            await store.add_report(scan_id, verdict, "blockpage", "")
            await asyncio.sleep(0.002)  # distinct report times: the latest one wins
    finally:
        await store.close()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return path


def test_export_writes_url_corpus_rows_that_train_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_history(tmp_path / "data", [
        ("s1", "HTTPS://Intranet.Example.COM:443/login#top", "safe"),
        ("s2", "https://pay-verify.example.net/card", "dangerous"),
        ("s3", "https://shop.example.org/", "dangerous"),
        ("s3", "https://shop.example.org/", "safe"),  # corrected: the latest report wins
    ]))
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--config", str(_config(tmp_path)), "--out", str(out)]) == 0
    assert "wrote 3 rows (2 benign, 1 malicious)" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_scan = {r["scan_id"]: r for r in rows}
    assert by_scan["s1"]["url_norm"] == "https://intranet.example.com/login"
    assert (by_scan["s1"]["label"], by_scan["s1"]["host"], by_scan["s1"]["reg_domain"]) == (
        "benign", "intranet.example.com", "example.com")
    assert by_scan["s2"]["label"] == "malicious" and by_scan["s2"]["binary_label"] == "malicious"
    assert by_scan["s3"]["label"] == "benign"
    assert by_scan["s1"]["id"].startswith("url-") and len(by_scan["s1"]["sha256"]) == 64

    corpus = load_corpus(out)  # what `train --data` and `eval` read
    assert corpus.kind == "url"
    assert sorted((s.text, s.y) for s in corpus.samples) == [
        ("https://intranet.example.com/login", 0), ("https://pay-verify.example.net/card", 1),
        ("https://shop.example.org/", 0)]

    # --since in the future: nothing; to standard output
    assert main(["feedback", "export", "--config", str(_config(tmp_path)), "--since", str(time.time() + 60)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["feedback", "export", "--config", str(_config(tmp_path)), "--since", "1h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_train_takes_an_exported_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = [(f"b{i}", f"https://docs{i}.example{i}.org/guide/page{i}", "safe") for i in range(12)]
    reports += [(f"m{i}", f"http://secure-login{i}.verify-account{i}.xyz/wp/{i}/signin.php", "dangerous")
                for i in range(12)]
    asyncio.run(_history(tmp_path / "data", reports))
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--config", str(_config(tmp_path)), "--out", str(out)]) == 0
    models = tmp_path / "models"
    code = main(["train", "--data", str(out), "--out", str(models), "--kinds", "url", "--folds", "2", "--quiet"])
    assert code == 0, capsys.readouterr()
    manifest = json.loads((models / "manifest.json").read_text())
    assert list(manifest["models"]) == ["url"]
    assert (models / manifest["models"]["url"]["file"]).is_file()


def test_bad_since_and_missing_history_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_since("2026-01-01T00:00:00Z") == 1767225600.0
    assert main(["feedback", "export", "--config", str(_config(tmp_path))]) == 2
    assert "no history" in capsys.readouterr().err
    assert main(["feedback", "export", "--config", str(_config(tmp_path)), "--since", "last week"]) == 2


def test_export_reads_a_postgresql_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.postgres import fresh_database_sync

    from malwaresnipper.server.store_postgres import PostgresScanStore

    with fresh_database_sync() as dsn:
        async def fill() -> None:
            store = PostgresScanStore(dsn, gateway_id="gw-a")
            await store.open()
            try:
                await store.insert_scan(NewScan(scan_id="p1", ts=time.time(), url="https://pg.example.com/x",
                                                domain="pg.example.com", title=None, method="PROXY", content_hash="p"))
                await store.add_report("p1", "dangerous", "dashboard", "seen in the wild")
            finally:
                await store.close()

        asyncio.run(fill())
        config = tmp_path / "malwaresnipper.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[store]\nbackend = "postgres"\ndsn = "{dsn}"\n')
        assert main(["feedback", "export", "--config", str(config)]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["scan_id"], r["label"], r["url_norm"], r["comment"]) for r in rows] == [
            ("p1", "malicious", "https://pg.example.com/x", "seen in the wild")]
