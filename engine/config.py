"""Engine settings: TOML in, frozen validated dataclasses out.

Defaults work with no file at all. An unknown key or a value of the wrong type is a
:class:`ConfigError` that names the key and the file, because a typo in a security tool's config
must not silently fall back to a default. The generic :func:`from_mapping` is reused by the
gateway's settings (``malwaresnipper.settings``) for its own sections.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from .capture import CaptureLimits
from .errors import ConfigError

T = TypeVar("T")

LAYER_NAMES = ("url", "reputation", "javascript", "dom", "signatures", "ml")


@dataclass(frozen=True)
class Thresholds:
    """Risk scores at or above which a verdict is SUSPICIOUS or MALICIOUS."""

    suspicious: float = 40.0
    malicious: float = 70.0


@dataclass(frozen=True)
class Limits:
    """Size caps (characters) applied when captures are built, and the engine's time budget."""

    max_page_chars: int = 5_000_000
    max_script_chars: int = 5_000_000
    max_scripts: int = 200
    time_budget_ms: int = 1000


@dataclass(frozen=True)
class Layers:
    """Which layers run and how much each one counts in the risk score."""

    enabled: list[str] = field(default_factory=lambda: list(LAYER_NAMES))
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "url": 1.0,
            "reputation": 1.5,
            "javascript": 1.5,
            "dom": 1.0,
            "signatures": 1.5,
            "ml": 2.0,
        }
    )


@dataclass(frozen=True)
class Reputation:
    """List files (plain domain lists, hosts files, URLhaus-style CSV) and protected brands.

    Paths are relative to the config file. ``protected_brands_file`` adds to the bundled list of
    brand domains used for look-alike detection.
    """

    allowlist_files: list[str] = field(default_factory=list)
    blocklist_files: list[str] = field(default_factory=list)
    protected_brands_file: str = ""
    use_bundled_brands: bool = True


@dataclass(frozen=True)
class Signatures:
    """Signature rules: TOML rule files (the bundled default rules load unless switched off) and
    YARA rule files or folders of them (``engine/yara_rules.py``, docs/yara.md), relative to the
    config file."""

    rule_files: list[str] = field(default_factory=list)
    include_default_rules: bool = True
    yara_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ml:
    """Where the models and their manifest live ('' means the models shipped with the package)."""

    models_dir: str = ""


@dataclass(frozen=True)
class KnownCode:
    """Known library code: an unmodified copy skips the heavy analysis, foreign code in one is
    scanned alone (``engine/known_code``). ``files`` are databases made with
    ``malwaresnipper known-code build --files ...``, relative to the config file."""

    enabled: bool = True
    use_bundled: bool = True
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EngineConfig:
    """Everything the risk engine needs, with defaults that work out of the box."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    limits: Limits = field(default_factory=Limits)
    layers: Layers = field(default_factory=Layers)
    reputation: Reputation = field(default_factory=Reputation)
    signatures: Signatures = field(default_factory=Signatures)
    ml: Ml = field(default_factory=Ml)
    known_code: KnownCode = field(default_factory=KnownCode)
    #: Folder that relative paths in this config are resolved against (the config file's folder).
    base_dir: str = field(default="", metadata={"internal": True})
    #: Layers run after the registered ones, as ``"module:Class"`` import paths (imported where the
    #: engine is built, scan workers included). For tests (a layer that is slow or crashes on cue);
    #: internal, so a settings file can never make the gateway import code.
    extra_layers: tuple[str, ...] = field(default=(), metadata={"internal": True})

    def __post_init__(self) -> None:
        if not 0 <= self.thresholds.suspicious <= self.thresholds.malicious <= 100:
            raise ConfigError(
                "thresholds must satisfy 0 <= suspicious <= malicious <= 100, got "
                f"suspicious={self.thresholds.suspicious}, malicious={self.thresholds.malicious}"
            )
        unknown = [name for name in self.layers.enabled if name not in LAYER_NAMES]
        unknown += [name for name in self.layers.weights if name not in LAYER_NAMES]
        if unknown:
            raise ConfigError(f"unknown layer(s) {unknown}; known layers: {list(LAYER_NAMES)}")
        if any(w < 0 for w in self.layers.weights.values()):
            raise ConfigError("layer weights must be >= 0")

    def resolve(self, path: str) -> Path:
        """A path from this config, relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p

    def weight(self, layer: str) -> float:
        return float(self.layers.weights.get(layer, 1.0))

    def capture_limits(self) -> CaptureLimits:
        """The caps that :meth:`Capture.build` applies, from ``[limits]``."""
        return CaptureLimits(
            max_page_chars=self.limits.max_page_chars,
            max_script_chars=self.limits.max_script_chars,
            max_scripts=self.limits.max_scripts,
        )


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O and syntax errors into :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def load_engine_config(path: str | Path | None = None, *, section: str | None = None) -> EngineConfig:
    """Load an :class:`EngineConfig` from ``path`` (or return defaults when ``path`` is None).

    With ``section="engine"`` the engine's keys are read from ``[engine]`` of a larger file.
    """
    if path is None:
        return EngineConfig()
    data = read_toml(path)
    if section is not None:
        data = data.get(section, {})
    return from_mapping(
        EngineConfig, data, source=str(path), prefix=f"{section}." if section else "",
        defaults={"base_dir": str(Path(path).resolve().parent)},
    )


def from_mapping(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    source: str,
    prefix: str = "",
    defaults: Mapping[str, Any] | None = None,
) -> T:
    """Build dataclass ``cls`` from ``data``, checking every key and type.

    Errors read like ``config.toml: thresholds.malicious: expected a number, got 'high'``.
    Fields marked ``metadata={"internal": True}`` are filled by the loader, never by a file.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = dict(defaults or {})
    settable = {name for name, f in fields.items() if not f.metadata.get("internal")}
    for key, value in data.items():
        if key not in settable:
            known = ", ".join(sorted(settable))
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (known keys: {known})")
        kwargs[key] = _convert(hints[key], value, source=source, key=f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _convert(hint: Any, value: Any, *, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, source=source, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, source=source, key=key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return [_convert(args[0], v, source=source, key=f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a table, got {value!r}")
        return {
            str(k): _convert(args[1], v, source=source, key=f"{key}.{k}") for k, v in value.items()
        }
    raise ConfigError(f"{source}: {key}: unsupported setting type {hint!r}")  # pragma: no cover
