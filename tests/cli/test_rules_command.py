"""`malwaresnipper rules check FILE...`: TOML and YARA rule files checked as the gateway loads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from malwaresnipper.cli.main import main
from malwaresnipper.engine.rules import DEFAULT_RULES_FILE

TOML_RULES = """
[[rule]]
id = "acme_marker"
description = "Acme campaign marker"
severity = "medium"
target = "script"
patterns = ["acme-7781"]

[[rule]]
id = "acme_host"
description = "Acme drop host"
severity = "high"
target = "url"
patterns = ["drop.acme.test"]
"""
YARA_RULES = """
rule Acme_Skimmer : script
{
    meta:
        description = "Acme skimmer"
        severity = "high"
        strength = "behaviour"
    strings:
        $a = "acme-7781"
    condition:
        $a
}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["rules", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_files_of_both_kinds_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write(tmp_path / "acme.toml", TOML_RULES)
    yara = write(tmp_path / "acme.yar", YARA_RULES)
    code, out, err = check(capsys, str(toml), str(yara), str(DEFAULT_RULES_FILE))
    assert code == 0, err
    assert f"{toml}: OK (2 TOML rules)" in out
    assert f"{yara}: OK (1 YARA rules)" in out
    assert f"{DEFAULT_RULES_FILE}: OK (" in out  # the bundled file is not a duplicate of itself
    # a folder stands for every rule file under it
    code, out, _ = check(capsys, str(tmp_path))
    assert code == 0 and out.count(": OK (") == 2


def test_a_yara_file_that_does_not_compile_fails_with_file_line_and_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yar", YARA_RULES)
    bad = write(tmp_path / "bad.yar", 'rule A {\n  meta:\n    severity = "severe"\n  strings:\n    $a = "x"\n'
                                      "  condition:\n    $a and $missing\n}\n")
    code, out, err = check(capsys, str(good), str(bad))
    assert code == 2
    assert f"{good}: OK" in out and f"{bad}: OK" not in out
    assert f"{bad}:3:" in err and "'severity' must be one of info, low, medium, high, critical" in err
    syntax = write(tmp_path / "syntax.yara", 'rule B {\n  strings:\n    $a = "unterminated\n  condition: $a\n}\n')
    code, _, err = check(capsys, str(syntax))
    assert code == 2 and f"{syntax}:3:" in err and "error[" in err


def test_a_bad_toml_rule_fails_with_file_line_rule_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.toml", TOML_RULES.replace('severity = "high"', 'severity = "urgent"'))
    code, out, err = check(capsys, str(bad))
    assert code == 2 and out == ""
    assert str(bad) in err and "rule 'acme_host'" in err and "bad severity" in err and "(line 9)" in err
    broken = write(tmp_path / "broken.toml", "[[rule]\nid = 1\n")
    code, _, err = check(capsys, str(broken))
    assert code == 2 and "invalid TOML" in err and "line 1" in err


def test_toml_ids_are_checked_against_the_bundled_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clash = write(tmp_path / "clash.toml", TOML_RULES.replace("acme_marker", "miner_coinhive"))
    code, _, err = check(capsys, str(clash))
    assert code == 2 and "miner_coinhive" in err and "duplicate id" in err
    code, _, _ = check(capsys, "--no-default-rules", str(clash))
    assert code == 0


def test_yara_namespaces_are_checked_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path / "a" / "kits.yar", YARA_RULES)
    second = write(tmp_path / "b" / "kits.yar", YARA_RULES)
    code, out, err = check(capsys, str(first), str(second))
    assert code == 2 and out.count(": OK (") == 2  # each file is fine alone
    assert "namespace 'kits'" in err


def test_warnings_are_shown_without_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = write(tmp_path / "slow.yar", 'rule Slow : script {\n  strings:\n    $a = "x"\n  condition:\n    $a\n}\n')
    code, out, err = check(capsys, str(slow))
    assert code == 0 and "1 warnings" in out
    assert f"{slow}:3:" in err and "warning[slow_pattern]" in err


def test_what_is_not_a_rule_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = write(tmp_path / "notes.txt", "hello")
    code, _, err = check(capsys, str(notes), str(tmp_path / "missing.yar"))
    assert code == 2
    assert f"{notes}: not a rule file" in err and "missing.yar: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = check(capsys, str(tmp_path / "empty"))
    assert code == 2 and "no .toml, .yar or .yara files" in err


def test_config_check_and_findings_load_the_yara_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "rules" / "acme.yar", YARA_RULES)
    config = write(tmp_path / "malwaresnipper.toml", '[engine.signatures]\nyara_files = ["rules"]\n')
    assert main(["findings", "--json", "--config", str(config)]) == 0
    entries = {json.loads(line)["id"]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    acme = entries["signatures.yara.acme.Acme_Skimmer"]
    assert (acme["title"], acme["severity"], acme["strength"]) == ("Acme skimmer", "HIGH", "behaviour")
    assert main(["config", "check", str(config)]) == 0
    write(tmp_path / "rules" / "acme.yar", YARA_RULES.replace("$a\n}", "$b\n}"))
    assert main(["config", "check", str(config)]) == 2
    assert f"{tmp_path / 'rules' / 'acme.yar'}:11:9: error[E025]" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_the_installed_command_runs_the_check(tmp_path: Path) -> None:
    """The console script (a subprocess, as a user runs it) exits non-zero on a broken rule."""
    bad = write(tmp_path / "bad.yar", "rule X { condition: nonsense }\n")
    done = subprocess.run([sys.executable, "-m", "malwaresnipper.cli.main", "rules", "check", str(bad)], check=False,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 2 and f"{bad}:1:" in done.stderr
