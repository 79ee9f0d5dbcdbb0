"""``malwaresnipper config check FILE``: validate a settings file without starting anything."""

from __future__ import annotations

import argparse
import sys

from ..engine.errors import MalwareSnipperError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="check a configuration file")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate FILE and exit 0 when it is valid")
    check.add_argument("file", help="a malwaresnipper.toml")
    check.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    from ..engine.engine import RiskEngine
    from ..settings import load_settings

    try:
        settings = load_settings(args.file)
        # Building the engine also compiles rule files and loads list files: their errors count.
        RiskEngine(settings.engine)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK")
    return 0
