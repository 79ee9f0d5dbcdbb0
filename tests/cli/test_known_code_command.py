"""`malwaresnipper known-code build|match`: a user's own library database, and looking scripts up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.known_code import EXFIL, acme_library
from malwaresnipper.cli.main import main


def test_build_from_files_then_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vendor = tmp_path / "vendor" / "acme"
    (vendor / "dist").mkdir(parents=True)
    (vendor / "dist" / "acme.js").write_text(acme_library(), encoding="utf-8")
    (vendor / "README.md").write_text("not code")
    out = tmp_path / "acme.known"
    assert main(["known-code", "build", "--files", str(vendor), "--library", "acme-widgets",
                 "--version", "1.4.2", "--out", str(out), "--quiet"]) == 0
    assert "1 files of 1 libraries" in capsys.readouterr().out
    copy = tmp_path / "site.js"
    copy.write_text("/* served by the shop */\n" + acme_library(banner=""), encoding="utf-8")
    skimmed = tmp_path / "skimmed.js"
    skimmed.write_text(acme_library() + EXFIL, encoding="utf-8")
    assert main(["known-code", "match", str(copy), str(skimmed), "--db", str(out), "--no-bundled"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["status"] == "unmodified" and lines[0]["description"] == "Acme Widgets v1.4.2 (unmodified)"
    assert lines[1]["status"] == "foreign" and lines[1]["description"].endswith("of foreign code appended")
    start, end = lines[1]["foreign"][0]
    assert EXFIL in skimmed.read_text()[start:end]


def test_build_without_library_files_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["known-code", "build", "--files", str(tmp_path / "empty"), "--out", str(tmp_path / "x.known")]) == 2
    assert "no library files" in capsys.readouterr().err


def test_match_with_a_broken_database_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.known"
    bad.write_bytes(b"garbage")
    script = tmp_path / "a.js"
    script.write_text("var a = 1;")
    assert main(["known-code", "match", str(script), "--db", str(bad)]) == 2
    assert "not a known-code database" in capsys.readouterr().err
