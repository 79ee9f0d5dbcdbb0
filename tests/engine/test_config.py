"""Config: defaults with no file; unknown keys and wrong types name the key and the file."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path

import pytest

from malwaresnipper.cli.main import main
from malwaresnipper.engine import ConfigError, EngineConfig, load_engine_config
from malwaresnipper.settings import Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "malwaresnipper.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_work_without_a_file() -> None:
    config = load_engine_config(None)
    assert config == EngineConfig()
    assert config.thresholds.suspicious < config.thresholds.malicious


def test_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "[thresholds]\nsuspicious = 30\nmalicious = 80.5\n[layers]\nenabled = ['url']\n")
    config = load_engine_config(path)
    assert config.thresholds.suspicious == 30.0 and config.thresholds.malicious == 80.5
    assert config.layers.enabled == ["url"]
    assert config.resolve("lists/a.txt") == tmp_path / "lists/a.txt"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[thresholds]\nsuspicous = 30\n", "unknown key 'thresholds.suspicous'"),
        ("[thresholds]\nmalicious = 'high'\n", "thresholds.malicious: expected a number"),
        ("[limits]\nmax_scripts = 1.5\n", "limits.max_scripts: expected an integer"),
        ("[layers]\nenabled = 'url'\n", "layers.enabled: expected a list"),
        ("[layers]\nenabled = ['url', 'telepathy']\n", "unknown layer"),
        ("[thresholds]\nsuspicious = 90\nmalicious = 10\n", "suspicious <= malicious"),
        ("[reputation]\nallowlist_files = [1]\n", "reputation.allowlist_files[0]: expected a string"),
        ("this is = = not toml", "invalid TOML"),
    ],
)
def test_errors_name_key_and_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_engine_config(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_settings_file_nests_engine_and_checks_other_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine.thresholds]\nmalicious = 75\n[proxy]\nmode = 'block'\n")
    settings = load_settings(path)
    assert settings.engine.thresholds.malicious == 75.0
    assert settings.proxy.mode == "block"
    bad = write(tmp_path, "[proxy]\nmoad = 'block'\n")
    with pytest.raises(ConfigError, match="unknown key 'proxy.moad'"):
        load_settings(bad)


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[engine.thresholds]\nsuspicious = 35\n")
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, "[engine.thresholds]\nsuspicious = 'x'\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "engine.thresholds.suspicious" in capsys.readouterr().err


@pytest.mark.parametrize("text, where", [
    ("[proxy]\nmode = 'blok'\n", "[proxy] mode = 'blok' is not one of 'monitor', 'block'"),
    ("[store]\nbackend = 'mysql'\n", "[store] backend = 'mysql' is not one of 'sqlite', 'postgres'"),
    ("[events]\nbackend = 'kafka'\n", "[events] backend = 'kafka' is not one of 'memory', 'redis'"),
    ("[proxy]\nworkers = 0\n", "[proxy] workers must be >= 1"),
    ("[server]\napi_port = 70000\n", "[server] api_port must be a port number"),
])
def test_config_check_rejects_values_outside_their_set_as_run_would(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str) -> None:
    bad = write(tmp_path, text)
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert where in err and str(bad) in err
    with pytest.raises(ConfigError, match=re.escape(where)):  # what `run` loads
        load_settings(bad)


def test_documented_config_is_complete_and_valid(tmp_path: Path) -> None:
    """docs/configuration.md spells out every default: it must load and equal the defaults."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    path = write(tmp_path, block.group(1))
    settings = load_settings(path)
    defaults = load_settings(None)
    assert settings.engine.thresholds == defaults.engine.thresholds
    assert settings.engine.layers == defaults.engine.layers
    assert settings.engine.known_code == defaults.engine.known_code
    assert settings.engine.signatures == defaults.engine.signatures
    assert (settings.proxy, settings.server, settings.store, settings.events) == (
        defaults.proxy, defaults.server, defaults.store, defaults.events)
    # every setting is spelled out, section by section
    documented = tomllib.loads(block.group(1))
    missing: list[str] = []

    def walk(cls: type, table: dict, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            if typing.get_origin(hints[f.name]) is list and f"[[{prefix}{f.name}]]" in block.group(1):
                continue  # an array of tables (none by default) has its own section and test
            if f.name not in table:
                missing.append(prefix + f.name)
            elif dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], table[f.name], f"{prefix}{f.name}.")

    walk(Settings, documented, "")
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_internal_fields_cannot_be_set_from_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'source'"):
        load_settings(write(tmp_path, "source = 'elsewhere.toml'\n"))
    with pytest.raises(ConfigError, match="unknown key 'engine.base_dir'"):
        load_settings(write(tmp_path, "[engine]\nbase_dir = '/'\n"))
    with pytest.raises(ConfigError, match="unknown key 'engine.extra_layers'"):  # a file never makes us import code
        load_settings(write(tmp_path, "[engine]\nextra_layers = ['os:system']\n"))


def test_extra_layers_run_after_the_registered_ones_and_a_bad_path_is_a_clear_error() -> None:
    from helpers.layers import ON_CUE

    from malwaresnipper.engine import RiskEngine
    from malwaresnipper.engine.capture import Capture
    from malwaresnipper.engine.config import Layers

    engine = RiskEngine(EngineConfig(layers=Layers(enabled=["url"]), extra_layers=(ON_CUE,)))
    assert [layer.name for layer in engine.layers] == ["url", "on_cue"]
    verdict = engine.scan(Capture.build("https://fine.example/"))
    assert [result.layer for result in verdict.layers] == ["url", "on_cue"]
    for bad, why in (("helpers.layers:Nope", "cannot be imported"), ("no_such_module_x:Layer", "cannot be imported"),
                     ("helpers.layers:ON_CUE", "is not a layer class")):
        with pytest.raises(ConfigError, match=f"extra layer '{bad}' {why}"):
            RiskEngine(EngineConfig(extra_layers=(bad,)))
