"""The ``--config`` / ``--layers`` options that the engine-running commands (scan, eval) share."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..engine.config import LAYER_NAMES
from ..engine.errors import ConfigError

if TYPE_CHECKING:
    from ..engine.config import EngineConfig
    from ..engine.engine import RiskEngine
    from ..settings import Settings


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    parser.add_argument("--layers", help=f"comma-separated layers to run, for ablations ({','.join(LAYER_NAMES)})")


def layers_from_args(args: argparse.Namespace) -> list[str] | None:
    """The ``--layers`` subset (None: the configured layers); unknown names are a ConfigError."""
    layers = [x.strip() for x in args.layers.split(",") if x.strip()] if args.layers else None
    unknown = [name for name in layers or () if name not in LAYER_NAMES]
    if unknown or layers == []:
        raise ConfigError(f"--layers: unknown layer(s) {unknown or args.layers!r}; known: {', '.join(LAYER_NAMES)}")
    return layers


def engine_settings_from_args(args: argparse.Namespace) -> tuple[EngineConfig, list[str] | None]:
    """The engine configuration and the ``--layers`` subset, without building an engine."""
    from ..settings import load_settings

    layers = layers_from_args(args)
    return load_settings(args.config).engine, layers


def engine_from_args(args: argparse.Namespace) -> tuple[Settings, RiskEngine]:
    """Settings and an engine for ``args``; raises MalwareSnipperError with a message for the user."""
    from ..engine.engine import RiskEngine
    from ..settings import load_settings

    layers = layers_from_args(args)
    settings = load_settings(args.config)
    return settings, RiskEngine(settings.engine, layers=layers)
