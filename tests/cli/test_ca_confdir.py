"""Where the proxy's CA goes: ``--confdir``, else ``[proxy] confdir``, else ``<data_dir>/certs``.

One rule (``Settings.confdir_path``) for ``run`` and ``ca``; the source tree is never written to,
whether the package is a checkout or an install. The ``ca`` command creates a real CA (mitmproxy's
own code) where the rule says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from malwaresnipper.cli.main import main
from malwaresnipper.engine import ConfigError
from malwaresnipper.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir of our own and a working directory without a malwaresnipper.toml."""
    home = tmp_path / "home"
    monkeypatch.setenv("MALWARESNIPPER_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def _ca_path(capsys: pytest.CaptureFixture[str], *argv: str) -> Path:
    assert main(["ca", *argv]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("CA certificate: "))
    return Path(line.removeprefix("CA certificate: "))


def test_default_is_the_data_dir_and_never_the_source_tree(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (REPO / "certs").iterdir())
    assert Settings().confdir_path() == home / "certs"
    cert = _ca_path(capsys)
    assert cert == home / "certs" / "mitmproxy-ca-cert.pem" and cert.is_file()
    assert (home / "certs" / "mitmproxy-ca.pem").is_file()  # the private key sits beside it
    assert sorted(p.name for p in (REPO / "certs").iterdir()) == before


def test_data_dir_setting_moves_the_default(tmp_path: Path, home: Path) -> None:
    config = tmp_path / "conf" / "malwaresnipper.toml"
    config.parent.mkdir()
    config.write_text(f'data_dir = "{tmp_path / "elsewhere"}"\n')
    assert load_settings(config).confdir_path() == tmp_path / "elsewhere" / "certs"


def test_toml_value_is_relative_to_the_settings_file(tmp_path: Path, home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conf" / "malwaresnipper.toml"
    config.parent.mkdir()
    config.write_text('[proxy]\nconfdir = "ca-here"\n')
    assert load_settings(config).confdir_path() == tmp_path / "conf" / "ca-here"
    assert _ca_path(capsys, "--config", str(config)) == tmp_path / "conf" / "ca-here" / "mitmproxy-ca-cert.pem"
    assert not (home / "certs").exists() and not (Path.cwd() / "ca-here").exists()
    absolute = tmp_path / "abs"
    config.write_text(f'[proxy]\nconfdir = "{absolute}"\n')
    assert load_settings(config).confdir_path() == absolute


def test_command_line_wins_and_is_relative_to_the_working_directory(tmp_path: Path, home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conf" / "malwaresnipper.toml"
    config.parent.mkdir()
    config.write_text('[proxy]\nconfdir = "from-file"\n')
    cert = _ca_path(capsys, "--config", str(config), "--confdir", "from-flag")
    assert cert == Path.cwd() / "from-flag" / "mitmproxy-ca-cert.pem" and cert.is_file()
    assert not (tmp_path / "conf" / "from-file").exists()


def test_a_file_or_blank_value_is_a_clear_error(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    assert main(["ca", "--confdir", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "--confdir" in err and str(a_file) in err and "is not a folder" in err
    config = tmp_path / "malwaresnipper.toml"
    config.write_text(f'[proxy]\nconfdir = "{a_file}"\n')
    assert main(["run", "--config", str(config)]) == 2  # run refuses before it starts anything
    assert "[proxy] confdir" in capsys.readouterr().err
    config.write_text('[proxy]\nconfdir = "   "\n')
    with pytest.raises(ConfigError, match=r"\[proxy\] confdir = '   ' is not a folder path"):
        load_settings(config)
    assert main(["config", "check", str(config)]) == 2
